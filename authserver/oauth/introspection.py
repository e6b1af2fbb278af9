"""Token introspection (RFC 7662) for resource servers, answered from one indexed query."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import current_app

from .. import accounts, limits, resources
from ..metrics import INTROSPECTIONS
from ..secrets import sha256_hex
from ..timeutil import to_epoch, utcnow
from .errors import RateLimitedError

INACTIVE = {"active": False}


class Introspection(IntrospectionEndpoint):
    """Callers authenticate as a registered resource server; a resource server only learns about
    access tokens whose audience is itself. Everything else is exactly {"active": false}."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_endpoint_client(self, request):
        credential_id, secret = extract_basic_authorization(request.headers)
        used_basic = bool(credential_id)
        if not used_basic:
            credential_id = request.form.get("client_id")
            secret = request.form.get("client_secret")
        resource = resources.authenticate(credential_id, secret)
        if resource is None:
            limits.note_client_auth_failure()  # counted against the caller's address
            # RFC 7662 §2.1 / RFC 6749 §5.2: 401 with a Basic challenge.
            raise InvalidClientError(
                status_code=401, description="Authenticate with the resource server's credentials."
            )
        # Counted only once the credential is proven, so nobody else can spend its budget.
        retry_after = limits.hit("INTROSPECTION_RATE_LIMIT", "introspect-resource", resource.credential_id)
        if retry_after is not None:
            raise RateLimitedError(retry_after)
        request.client = resource
        return resource

    def check_params(self, request, client):
        if not request.form.get("token"):
            raise InvalidRequestError("The 'token' parameter is required.")
        # Unknown token_type_hint values are ignored (RFC 7662 §2.1 lets the server search all).

    def query_token(self, token_string, token_type_hint):
        # Only access tokens are introspectable: a resource server has no business with refresh
        # tokens, and answering for them would let a leaked refresh token pass as a bearer.
        from .. import store

        return store.get_token_for_introspection(sha256_hex(token_string))

    def check_permission(self, row, resource, request) -> bool:
        # Audience check: a resource server learns only about tokens issued for itself.
        grant = row[1]
        return grant.resource_id == resource.id

    def create_introspection_payload(self, row):
        payload = self._payload(row)
        INTROSPECTIONS.labels("active" if payload["active"] else "inactive").inc()
        return payload

    def _payload(self, row):
        if not row:
            return dict(INACTIVE)
        token, grant, user, hub, membership, client_id, audience = row
        now = utcnow()
        if token.is_revoked() or grant.revoked_at is not None or token.access_expires_at <= now:
            return dict(INACTIVE)
        allowed = accounts.membership_permissions(user, membership)
        scope = [s for s in token.scope.split() if s in allowed]
        if not scope:
            return dict(INACTIVE)
        return {
            "active": True,
            "client_id": client_id,
            "hub_id": hub.public_id,
            "user_id": user.id,
            "sub": str(user.id),
            "scope": " ".join(scope),
            "aud": audience,
            "iss": current_app.config["ISSUER"],
            "exp": to_epoch(token.access_expires_at),
            "iat": to_epoch(token.issued_at),
            "token_type": "Bearer",
        }
