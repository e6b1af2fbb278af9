"""Token and code generation, lifetimes, and the envelope of the replay answer.

An identical retry of a code redemption or refresh (a client that lost the response, or refreshes
from two places at once) gets the same answer within a short grace window: the answer is kept on
the consumed code or rotated token row (its `replay` column). It is AES-256-GCM encrypted under a
key derived (HKDF-SHA256) from the presented credential and the request's other parameters, so
only a holder of that credential sending the same request can read it, and a database dump
reveals nothing.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from ..secrets import ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, new_credential


def generate_bearer_token(
    grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True
) -> dict:
    """Authlib's token-generator seam: opaque 256-bit tokens with recognisable prefixes."""
    token = {
        "access_token": new_credential(ACCESS_TOKEN_PREFIX),
        "token_type": "Bearer",
        "expires_in": int(expires_in or current_app.config["ACCESS_TOKEN_LIFETIME"]),
        "scope": scope or "",
    }
    if include_refresh_token:
        token["refresh_token"] = new_credential(REFRESH_TOKEN_PREFIX)
    return token


def _derive_key(credential: str, context: list[str]) -> bytes:
    material = "\x00".join([credential, *context]).encode("utf-8", "surrogatepass")
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"authserver replay-cache v1"
    ).derive(material)


def seal(credential: str, context: list[str], payload: dict) -> bytes:
    """Encrypt a token response under a key derived from the credential and request context."""
    nonce = os.urandom(12)
    data = json.dumps(payload, separators=(",", ":")).encode()
    return nonce + AESGCM(_derive_key(credential, context)).encrypt(nonce, data, None)


def unseal(credential: str, context: list[str], blob: bytes) -> dict | None:
    """The sealed response if this credential and context match, else None."""
    if not blob or len(blob) < 13:
        return None
    try:
        data = AESGCM(_derive_key(credential, context)).decrypt(blob[:12], bytes(blob[12:]), None)
    except InvalidTag:
        return None
    return json.loads(data)
