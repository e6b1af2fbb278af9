"""Token revocation (RFC 7009) for public and confidential clients."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint

from .. import store
from ..secrets import sha256_hex
from .grants import TOKEN_ENDPOINT_AUTH_METHODS


def required_token(form) -> str:
    """RFC 7009 §2.1, whose parameters RFC 7662 §2.1 reuses for introspection: `token` is
    required. An unknown token_type_hint is ignored, since both let the server search every type."""
    token = form.get("token")
    if not token:
        raise InvalidRequestError("The 'token' parameter is required.")
    return token


class Revocation(RevocationEndpoint):
    """Always 200 for a well-formed, authenticated request: unknown tokens and tokens of other
    clients are ignored without saying so. A refresh token revokes its whole grant."""

    CLIENT_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS

    def check_params(self, request, client):
        required_token(request.form)

    def query_token(self, token_string, token_type_hint):
        digest = sha256_hex(token_string)
        lookups = [("access_token", store.get_token_by_access_hash), ("refresh_token", store.get_token_by_refresh_hash)]
        if token_type_hint == "refresh_token":
            lookups.reverse()
        for kind, lookup in lookups:
            token = lookup(digest)
            if token is not None:
                token.matched_as = kind
                return token
        return None

    def authenticate_token(self, request, client):
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is None or not token.check_client(client):
            return None
        return token

    def revoke_token(self, token, request):
        if token.matched_as == "refresh_token":
            # RFC 7009 §2.1: revoking a refresh token also invalidates the access tokens of the
            # same grant; we end the grant itself, which is what "disconnect" means to a user.
            store.revoke_grant(token.grant, reason="client_revoked_refresh_token")
        else:
            store.revoke_access_token(token)
