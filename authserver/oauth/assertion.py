"""private_key_jwt client authentication (RFC 7523 §2.2, OpenID Connect Core §9), with PyJWT.

The client signs a short-lived JWT with its private key; we verify it with a public key from the
client's `jwks` or `jwks_uri` (fetched with the SSRF-safe fetcher and cached like a metadata
document). Only RS256 and ES256 are accepted, which also shuts out `alg: none` and the HS256
"public key as HMAC secret" confusion. Each (client_id, jti) is accepted once, across instances:
the unique index on `used_assertions` makes the second insert fail wherever it happens.

Why not Authlib's `rfc7523.JWTBearerClientAssertion` (1.9): two of our rules fit its hooks (jti
once through `validate_jti`, audiences through `get_audiences`), the others do not. It checks the
client's registered method only after the key is resolved (a jwks_uri fetched) and the jti spent,
where we refuse a client that does not use private_key_jwt before any of that; its
`resolve_client_public_key(client)` sees no JOSE header, so it cannot choose the key by kid and alg
or refuse an ambiguous JWKS; it decodes with joserfc's recommended algorithms (HS256 among them), not
RS256/ES256 only; and it has no lifetime limit. Holding these would mean overriding `__call__`,
`process_assertion_claims` and `verify_claims`, every method with logic in it: a subclass in name
only, on a second JOSE library. This function is registered through Authlib's own seam for client
authentication methods instead (`register_client_auth_method`).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import jwt
from authlib.oauth2.rfc6749 import InvalidClientError
from flask import current_app

from .. import store
from ..models import UsedAssertion
from ..secrets import sha256_hex
from .errors import safe_description
from .fetch import FetchError

METHOD = "private_key_jwt"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS = ["RS256", "ES256"]
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
#: Clock skew tolerated on exp/iat/nbf, in seconds.
LEEWAY = 30


def _refuse(description: str) -> InvalidClientError:
    return InvalidClientError(status_code=401, description=safe_description(f"Client assertion refused: {description}"))


def _client_keys(client) -> list[dict]:
    metadata = client.client_metadata
    jwks = metadata.get("jwks")
    if jwks is None and metadata.get("jwks_uri"):
        from .cimd import get_document

        try:
            jwks = get_document(metadata["jwks_uri"], "jwks")
        except FetchError as error:
            raise _refuse(f"the client's jwks_uri could not be fetched: {error}") from None
    keys = (jwks or {}).get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise _refuse("the client has no public keys (jwks or jwks_uri)")
    return [k for k in keys if isinstance(k, dict)]


def _public_key(keys: list[dict], header: dict):
    alg, kid = header.get("alg"), header.get("kid")
    candidates = [k for k in keys if k.get("kty") == _KEY_TYPES[alg] and k.get("use", "sig") == "sig"
                  and k.get("alg", alg) == alg and (kid is None or k.get("kid") == kid)]
    if not candidates:
        raise _refuse("no key in the client's JWKS matches the assertion's kid and alg")
    if len(candidates) > 1 and kid is None:
        raise _refuse("the client's JWKS has several keys: the assertion must name one with kid")
    try:
        return jwt.PyJWK.from_dict(candidates[0], algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        # Not quoting the error: it repeats the key's members, which the document's author wrote.
        raise _refuse("the client's key (in its JWKS) is not usable for its alg") from None


def _remember_jti(client_id: str, jti: str, exp: int) -> None:
    # Kept until the assertion can no longer verify, exp + LEEWAY (exp is accepted with clock
    # skew): a record purged at exp would let the same assertion be replayed inside the leeway.
    expires = datetime.fromtimestamp(exp + LEEWAY, timezone.utc).replace(tzinfo=None)
    if not store.add_unless_present(UsedAssertion(key_hash=sha256_hex(f"{client_id}\0{jti}"), expires_at=expires)):
        raise _refuse("this assertion (jti) was already used")


def authenticate_private_key_jwt(query_client, request):
    """Authlib client-authentication method: the client, or None when no assertion was sent."""
    form = request.form
    assertion = form.get("client_assertion")
    if not assertion or form.get("client_assertion_type") != ASSERTION_TYPE:
        return None
    if not current_app.config["PRIVATE_KEY_JWT_ENABLED"]:
        raise _refuse("this server does not accept private_key_jwt")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _refuse("it is not a well-formed JWT") from None
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise _refuse(f"alg must be one of {', '.join(SIGNING_ALGORITHMS)}, not {json.dumps(header.get('alg'))}")
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or not client_id:
        raise _refuse("iss (the client_id) is missing")
    if form.get("client_id") not in (None, client_id):
        raise _refuse("iss does not match the client_id parameter")
    client = query_client(client_id)
    if client is None:
        raise InvalidClientError(status_code=401, description="The client does not exist on this server.")
    if client.token_endpoint_auth_method != METHOD:
        raise _refuse(f"this client authenticates with {client.token_endpoint_auth_method}, not private_key_jwt")

    key = _public_key(_client_keys(client), header)
    issuer = current_app.config["ISSUER"]
    try:
        claims = jwt.decode(
            assertion, key, algorithms=[header["alg"]], audience=[f"{issuer}/oauth/token", issuer],
            issuer=client_id, leeway=LEEWAY, options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise _refuse("it has expired") from None
    except jwt.InvalidAudienceError:
        raise _refuse(f"aud must be the token endpoint ({issuer}/oauth/token) or the issuer") from None
    except jwt.InvalidSignatureError:
        raise _refuse("the signature does not verify with the client's key") from None
    except jwt.PyJWTError as error:
        raise _refuse(str(error)) from None
    if claims["sub"] != client_id:
        raise _refuse("sub must equal iss (the client_id)")
    now = int(time.time())
    limit = int(current_app.config["CLIENT_ASSERTION_MAX_LIFETIME"])
    exp = int(claims["exp"])
    if exp - now > limit + LEEWAY or ("iat" in claims and exp - int(claims["iat"]) > limit):
        raise _refuse(f"it lives too long (at most {limit} seconds)")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 256:
        raise _refuse("jti must be a non-empty string")
    _remember_jti(client_id, claims["jti"], exp)
    return client
