"""Token and code generation, lifetimes, and the envelope of the replay answer.

An access token is opaque (a prefixed random credential, introspected) or, for a resource server
whose token format is `jwt`, an RFC 9068 JWT signed with the current signing key (authserver/keys.py)
that the resource server can verify locally. Either is stored the same way: as the SHA-256 of the
token, whose random `jti` makes each JWT unique, so introspection, revocation and an identical
retry find a JWT's row exactly as an opaque token's.

An identical retry of a code redemption or refresh (a client that lost the response, or refreshes
from two places at once) gets the same answer within a short grace window: the answer is kept on
the consumed code or rotated token row (its `replay` column). It is AES-256-GCM encrypted under a
key derived (HKDF-SHA256) from the presented credential and the request's other parameters, so
only a holder of that credential sending the same request can read it, and a database dump
reveals nothing.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app, g
from joserfc import jwt

from .. import keys
from ..resources import JWT
from ..secrets import ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, new_credential, sha256_hex
from ..timeutil import to_epoch, utcnow

#: RFC 9068 §2.1: the `typ` header of a JWT access token.
JWT_TYPE = "at+jwt"


class IssuingFor:
    """Authorization-grant extension: before a token response is created (never for a replayed
    one), note the code or refresh token being exchanged, whose audience, token format, hub, user
    and auth_time the token generator reads (Authlib's generator seam is given none of them)."""

    def __call__(self, grant):
        grant.register_hook("before_create_token_response", self.note_source)

    @staticmethod
    def note_source(grant):
        request = grant.request
        g.authserver_token_source = request.refresh_token or request.authorization_code


def generate_bearer_token(
    grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True
) -> dict:
    """Authlib's token-generator seam: an opaque 256-bit token with a recognisable prefix, or an
    RFC 9068 JWT for a resource server whose token format is `jwt` (its own, shorter lifetime);
    the refresh token is always opaque."""
    return new_token(g.get("authserver_token_source"), client, scope, expires_in, include_refresh_token)


def new_token(source, client, scope: str | None, expires_in: int | None, include_refresh_token: bool) -> dict:
    """The token response for the code or refresh token `source` (see generate_bearer_token)."""
    if source is not None and source.token_format == JWT:
        lifetime = int(current_app.config["JWT_ACCESS_TOKEN_LIFETIME"])
        access_token = jwt_access_token(source, client, scope or "", lifetime)
    else:
        lifetime = int(expires_in or current_app.config["ACCESS_TOKEN_LIFETIME"])
        access_token = new_credential(ACCESS_TOKEN_PREFIX)
    token = {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope or ""}
    if include_refresh_token:
        token["refresh_token"] = new_credential(REFRESH_TOKEN_PREFIX)
    return token


def stored_values(token: dict, *, grant_id: int, code_id: int | None, parent_id: int | None, client_pk: int,
                  authorized_scope: str, auth_time: datetime | None) -> dict:
    """The row of a token pair (store.save_token's columns): SHA-256 hashes of both tokens (of a
    JWT access token too), its validity, and its family's grant, code, authorized scope (the
    ceiling of every refresh, RFC 6749 §6) and auth_time."""
    now, access_expires_at = validity(token)
    refresh = token.get("refresh_token")
    return {
        "grant_id": grant_id, "code_id": code_id, "parent_id": parent_id, "client_pk": client_pk,
        "access_token_hash": sha256_hex(token["access_token"]),
        "refresh_token_hash": sha256_hex(refresh) if refresh else None,
        "scope": token["scope"], "authorized_scope": authorized_scope, "issued_at": now,
        "access_expires_at": access_expires_at, "auth_time": auth_time,
        "refresh_expires_at": (
            now + timedelta(seconds=int(current_app.config["REFRESH_TOKEN_LIFETIME"])) if refresh else None
        ),
    }


def jwt_access_token(source, client, scope: str, lifetime: int) -> str:
    """RFC 9068 §2: a JWT access token for the grant behind `source` (an exchanged code or refresh
    token), with the same four facts introspection answers (client_id, hub_id, user_id, scope)
    and its audience, the resource (RFC 8707)."""
    signer = keys.signing_key()
    now = to_epoch(utcnow())
    claims = {
        "iss": current_app.config["ISSUER"],
        "sub": str(source.user_id),
        "aud": source.resource_uri,
        "client_id": client.client_id,
        "scope": scope,
        "hub_id": source.hub_public_id,
        "user_id": source.user_id,
        "iat": now,
        "exp": now + lifetime,
        "jti": new_credential("", 16),
    }
    if source.auth_time is not None:
        claims["auth_time"] = to_epoch(source.auth_time)
    return jwt.encode({"typ": JWT_TYPE, "alg": signer.alg, "kid": signer.kid}, claims, signer.private,
                      algorithms=[signer.alg])


def validity(token: dict) -> tuple[datetime, datetime]:
    """(issued at, access token expiry) of a token response as stored on its row: a JWT's own
    `iat` and `exp`, so that introspection answers exactly what the token says."""
    access_token = token["access_token"]
    if not access_token.startswith(ACCESS_TOKEN_PREFIX):
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        epoch = datetime(1970, 1, 1)
        return epoch + timedelta(seconds=claims["iat"]), epoch + timedelta(seconds=claims["exp"])
    now = utcnow()
    return now, now + timedelta(seconds=token["expires_in"])


#: HKDF's `info` for the replay envelope's key.
_REPLAY_INFO = b"authserver replay-cache v1"
#: HKDF-Extract's salt when none is given: HashLen zero bytes (RFC 5869 §2.2).
_NO_SALT = bytes(32)


def _derive_key(credential: str, context: list[str]) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the credential and the request's context, 32 bytes, no salt:
    Extract then one block of Expand, with the standard library's HMAC (the same bytes as
    cryptography's HKDF, which costs several times as much to set up, on every refresh)."""
    material = "\x00".join([credential, *context]).encode("utf-8", "surrogatepass")
    prk = hmac.digest(_NO_SALT, material, "sha256")
    return hmac.digest(prk, _REPLAY_INFO + b"\x01", "sha256")


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
