"""Token introspection (RFC 7662) for resource servers, answered from one indexed query.

Introspection sits on the path of every MCP tool call, so it is answered by a lean path rather than
Authlib's generic endpoint pipeline (which builds two request objects, parses the form twice and
loads five ORM entities inside a transaction). The rules are the same ones, each named below:
callers authenticate as a registered resource server (RFC 7662 §2.1), a resource server only
learns about access tokens whose audience is itself, and everything else is exactly
{"active": false} (§2.2).
"""

from __future__ import annotations

import json

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import current_app

from .. import accounts, changes, limits, resources, store
from ..extensions import db
from ..metrics import INTROSPECTIONS
from ..secrets import sha256_hex
from ..timeutil import to_epoch, utcnow
from .credentials import basic_credentials
from .errors import RateLimitedError
from .revocation import required_token

INACTIVE = {"active": False}
_INACTIVE_BODY = json.dumps(INACTIVE).encode()
_ACTIVE_COUNT, _INACTIVE_COUNT = INTROSPECTIONS.labels("active"), INTROSPECTIONS.labels("inactive")
#: RFC 7662 §2.2 answers are credentials-bearing: never cached by anyone.
HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


class Introspection(IntrospectionEndpoint):
    """The RFC 7662 endpoint: what it accepts (advertised in the metadata) and how it answers."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def __call__(self, request):
        return self.respond(request)

    def respond(self, request) -> tuple[bytes, int, dict]:
        """A Flask response tuple (JSON body, status, headers) for a form-encoded introspection
        request (its parameters, each sent once, checked before: views/oauth.py)."""
        resource = self.authenticate_resource_server(request)
        return self.answer(resource, required_token(request.form)), 200, HEADERS

    def answer(self, caller, token: str) -> bytes:
        """The JSON answer about `token` for an authenticated resource server (the view and the
        WSGI lane both end here). Unknown token_type_hint values are ignored (RFC 7662 §2.1 lets
        the server search all). Only access tokens are introspectable: a resource server has no
        business with refresh tokens, and answering for them would let a leaked refresh token pass
        as a bearer. The audience check is part of the query: another resource server's token
        finds no row."""
        token_hash = sha256_hex(token)
        # A repeated question is answered from the row this worker read moments ago, when nothing
        # it depends on has changed since (changes.py: at most INTROSPECTION_CACHE_SECONDS old);
        # the answer is computed afresh from the row, and only rows of active answers are kept.
        cache = changes.cache(current_app, db.engine)
        row = cache.get(token_hash, caller.id) if cache is not None else None
        if row is not None:
            payload = self.payload(row, caller.uri)
        else:
            generation = cache.generation if cache is not None else None
            row = store.get_introspection_row(token_hash, caller.id)
            payload = self.payload(row, caller.uri)
            if cache is not None and payload is not INACTIVE:
                cache.put(token_hash, caller.id, row, generation)
        if payload is INACTIVE:
            _INACTIVE_COUNT.inc()
            return _INACTIVE_BODY
        _ACTIVE_COUNT.inc()
        return json.dumps(payload).encode()

    def authenticate_resource_server(self, request):
        """RFC 7662 §2.1: the caller is a resource server."""
        try:
            return authenticate_caller(*caller_credentials(request.headers.get("Authorization"), request.form))
        except InvalidClientError:
            limits.note_client_auth_failure()  # counted against the caller's address
            raise

    @staticmethod
    def payload(row, audience: str) -> dict:
        """The RFC 7662 answer for a row of store.get_introspection_row (None: no such token),
        read for the resource server whose URI is `audience`."""
        if row is None:
            return INACTIVE
        if row.revoked_at is not None or row.access_revoked_at is not None or row.grant_revoked_at is not None:
            return INACTIVE
        if row.access_expires_at <= utcnow():
            return INACTIVE
        # Live permissions: the token never says more than the user may do in the hub right now.
        allowed = accounts.permissions_from(row.user_disabled, row.role, row.granted, row.denied)
        scope = [s for s in row.scope.split() if s in allowed]
        if not scope:
            return INACTIVE
        return {
            "active": True,
            "client_id": row.client_id,
            "hub_id": row.hub_public_id,
            "user_id": row.user_id,
            "sub": str(row.user_id),
            "scope": " ".join(scope),
            "aud": audience,
            "iss": current_app.config["ISSUER"],
            "exp": to_epoch(row.access_expires_at),
            "iat": to_epoch(row.issued_at),
            "token_type": "Bearer",
        }


def caller_credentials(authorization: str | None, form) -> tuple[str | None, str | None]:
    """A resource server's (credential id, secret): by HTTP Basic, else in the form (RFC 7662 §2.1
    leaves the method open; these are client_secret_basic and client_secret_post). Malformed Basic
    credentials are none at all (views/oauth.py answers them with 401 first)."""
    try:
        credential_id, secret = basic_credentials(authorization) or (None, None)
    except ValueError:
        return None, None
    if not credential_id:
        return form.get("client_id"), form.get("client_secret")
    return credential_id, secret


def authenticate_caller(credential_id: str | None, secret: str | None) -> resources.Caller:
    """The resource server these credentials prove, counted against its own rate limit."""
    resource = resources.authenticate(credential_id, secret)
    if resource is None:
        # RFC 7662 §2.1 / RFC 6749 §5.2: 401 with a Basic challenge.
        raise InvalidClientError(status_code=401, description="Authenticate with the resource server's credentials.")
    # Counted only once the credential is proven, so nobody else can spend its budget.
    retry_after = limits.hit(*limits.INTROSPECTION_PER_RESOURCE, resource.credential_id)
    if retry_after is not None:
        raise RateLimitedError(retry_after)
    return resource
