"""Credentials in the Authorization header, read one way everywhere: HTTP Basic client credentials
(RFC 6749 §2.3.1) and Bearer tokens (RFC 6750 §2.1)."""

from __future__ import annotations

import base64
from urllib.parse import unquote


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """The (id, secret) of Basic credentials, decoded as Authlib decodes them for client
    authentication; None when the header carries no Basic credentials. ValueError when it does but
    they are not base64 of UTF-8 `id:secret` (RFC 6749 §2.3.1), on which Authlib would fail deep
    inside client authentication."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")  # binascii.Error, UnicodeDecodeError
    credential_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ValueError("Basic credentials without a ':' between id and secret")
    return unquote(credential_id), unquote(secret)


def bearer_token(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (RFC 6750 §2.1), or None."""
    scheme, _, value = (authorization or "").partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token else None
