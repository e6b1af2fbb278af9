"""RFC 8707 resource indicators: validate `resource`, resolve default scopes, bind the audience."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError

from .. import resources
from ..scopes import IGNORED_SCOPES
from .errors import InvalidTargetError


def requested_resource(datalist) -> str | None:
    """The request's `resource` parameter, if sent. One at most: a repeated parameter is refused
    before any endpoint runs (oauth/server.py refuse_repeated_parameters), so each token has a
    single audience."""
    values = datalist.get("resource")
    return values[0] if values else None


def resolve_resource(datalist):
    """The ResourceServer named by the request's `resource` (or the default one)."""
    uri = requested_resource(datalist)
    if uri:
        resource = resources.get_by_uri(uri)
        if resource is None:
            raise InvalidTargetError("The resource is not a resource server known to this authorization server.")
        return resource
    resource = resources.get_default()
    if resource is None:
        raise InvalidTargetError("The resource parameter is required (RFC 8707).")
    return resource


class ResourceIndicator:
    """Authorization-grant extension: sets ``request.resource`` and narrows ``request.scope`` to
    the scopes that resource accepts (its default scopes when the request has no `scope`)."""

    def __call__(self, grant):
        grant.register_hook("after_validate_authorization_request_payload", self.validate_resource)
        grant.register_hook("after_validate_token_request", self.validate_token_resource)

    def validate_resource(self, grant, redirect_uri):
        request = grant.request
        resource = resolve_resource(request.payload.datalist)
        request.resource = resource
        client = request.client
        if request.payload.scope:
            requested = [s for s in request.scope.split() if s not in IGNORED_SCOPES]
        else:
            # No scope: the resource's defaults (ChatGPT reconnects without one).
            requested = client.get_allowed_scope(resource.default_scopes).split()
        accepted = resource.scope_set
        scopes = [s for s in requested if s in accepted]
        if not scopes:
            raise InvalidScopeError("None of the requested scopes is available for this resource.")
        request.scope = " ".join(scopes)

    def validate_token_resource(self, grant, result=None):
        check_code_resource(grant.request.payload.datalist, grant.request.authorization_code)


def check_code_resource(datalist, code) -> None:
    """At the token endpoint `resource` is optional but, if sent, must name the audience already
    bound to the code."""
    uri = requested_resource(datalist)
    if not uri:
        return
    if code is None or not names_audience(uri, code.resource_uri):
        raise InvalidTargetError("The resource does not match the one the code was issued for.")


def check_refresh_resource(datalist, token) -> None:
    """At refresh, a `resource` parameter must name the token's own audience."""
    uri = requested_resource(datalist)
    if not uri:
        return
    if not names_audience(uri, token.resource_uri):
        raise InvalidTargetError("The resource does not match the one the refresh token was issued for.")


def names_audience(value: str, audience: str) -> bool:
    """Whether a `resource` parameter names this (canonical) audience: canonical forms compared,
    no lookup (the code or token was read with its audience)."""
    try:
        return resources.canonicalize(value) == audience
    except resources.ResourceError:
        return False
