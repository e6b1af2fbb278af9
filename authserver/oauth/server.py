"""The Authlib AuthorizationServer with our storage, policy, grants, extensions and endpoints."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlparse, urlunparse

from authlib.common.urls import add_params_to_uri, url_encode
from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidScopeError, OAuth2Error, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app
from flask import request as flask_request
from flask_limiter.util import get_remote_address

from .. import limits, scopes, store
from . import assertion, cimd
from .errors import InvalidTargetError, RateLimitedError, RepeatedParameterError, safe_description
from .grants import AuthorizationCodeGrant, RefreshTokenGrant
from .introspection import Introspection
from .pkce import S256CodeChallenge
from .registration import ClientConfiguration, ClientRegistration
from .resource import ResourceIndicator
from .revocation import Revocation
from .tokens import IssuingFor, generate_bearer_token, stored_values

#: Authorization parameters whose repetition is answered with a page, never redirected: Authlib
#: refuses these before it has verified anything (validate_no_multiple_request_parameter), since
#: the client, its redirect URI or what is sent back to it would be ambiguous.
NEVER_REDIRECTED = ("response_type", "client_id", "redirect_uri", "scope", "state")

#: Plain descriptions for errors raised without one.
DEFAULT_DESCRIPTIONS = {
    "unsupported_grant_type": "grant_type must be authorization_code or refresh_token.",
    "invalid_client": "Client authentication failed.",
    "invalid_grant": "The authorization code or refresh token is invalid, expired, revoked or already used.",
    "invalid_request": "The request is missing a required parameter or has an invalid one.",
    "invalid_scope": "A requested scope is unknown or not allowed for this client.",
    "unauthorized_client": "This client is not allowed to use this grant type or response type.",
    "unsupported_response_type": "response_type must be code.",
    "unsupported_token_type": "The token type is not supported.",
    "access_denied": "The person declined the request.",
}


def refuse_repeated_parameters(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 §3.1, §3.2: no parameter may be sent more than once, whatever its value. The
    parameters as a dict, or RepeatedParameterError before any endpoint runs: for every machine
    endpoint (views/oauth.py and the WSGI lane's form), and the authorization endpoint
    (get_consent_grant)."""
    parameters = dict(pairs)
    if len(parameters) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedParameterError(key)
            seen.add(key)
    return parameters


def count_token_client(environ, client_id: str, auth_method: str, address: str) -> None:
    """Count a token request against the client it authenticated (with the caller's address for a
    public client, whose id is only a claim), once per request whether the WSGI lane or the view
    counts it; RateLimitedError when the limit is reached."""
    if environ.get(limits.CLIENT_COUNTED):
        return
    key = [client_id]
    if auth_method == "none":
        key.append(address)
    retry_after = limits.hit("TOKEN_RATE_LIMIT", "token-client", *key)
    if retry_after is not None:
        raise RateLimitedError(retry_after)
    environ[limits.CLIENT_COUNTED] = True  # counted once, lane or view


class Payload(OAuth2Payload):
    """OAuth parameters from exactly one source. Parameters sent without a value are treated as
    omitted (OAuth 2.1 §3.1)."""

    def __init__(self, source):
        # One pass over the MultiDict's lists: `data` is each key's first value (MultiDict.items()),
        # `datalist` its non-empty values.
        self._data, self._datalist = data, datalist = {}, {}
        for key, values in source.lists():
            if values[0] != "":
                data[key] = values[0]
            kept = [v for v in values if v != ""]
            if kept:
                datalist[key] = kept

    @property
    def data(self):
        return self._data

    @property
    def datalist(self):
        return self._datalist


class OAuthRequest(FlaskOAuth2Request):
    """Authlib's Flask request, except that the full request URL is built only if read: werkzeug
    rebuilds and IRI-decodes it (a noticeable share of a token request), nothing on our paths
    reads it, and the https check Authlib makes on it needs only the scheme and host."""

    def __init__(self, request):
        OAuth2Request.__init__(self, request.method, f"{request.scheme}://{request.host}/")
        # Set here rather than passed: Authlib's `headers or {}` would count the WSGI environ.
        self.headers = request.headers
        self._request = request

    @property
    def uri(self) -> str:
        return self._request.url

    @uri.setter
    def uri(self, value: str) -> None:
        """Authlib's constructor sets it from the scheme and host it checks; the URL is read live."""


def _oauth_request(source) -> OAuthRequest:
    """An OAuth request whose parameters are read from `source` (the form or the query) alone."""
    oauth_request = OAuthRequest(flask_request)
    oauth_request.payload = Payload(source)
    return oauth_request


class Issuer(IssuerParameter):
    """RFC 9207: `iss` on every authorization response, success and error."""

    def get_issuer(self) -> str:
        return current_app.config["ISSUER"]

    def add_issuer_parameter(self, authorization_server, response):
        """Authlib's hook, minus decoding and encoding again the query it adds `iss` to (a
        noticeable share of a consent POST): with_issuer."""
        if response.location:
            response.location = with_issuer(response.location, self.get_issuer())


def with_issuer(location: str, issuer: str) -> str:
    """`location` with `iss` added to its query, exactly as Authlib's add_params_to_uri adds it
    (tests/oauth/test_authorization_response.py compares them). Authlib parses the query and
    encodes it again; a query with no fragment beside it was itself encoded by add_params_to_uri
    (an authorization response or error put its parameters there), and encoding what parsing an
    encoded query gives yields it unchanged, so `iss` is appended to it as it is. With a fragment
    (a fragment response mode: the query is the redirect URI's own), Authlib's function is used."""
    scheme, netloc, path, params, query, fragment = urlparse(location)
    if fragment or not query:
        return add_params_to_uri(location, {"iss": issuer})
    return urlunparse((scheme, netloc, path, params, f"{query}&{_encoded_issuer(issuer)}", fragment))


@lru_cache(maxsize=8)
def _encoded_issuer(issuer: str) -> str:
    return url_encode([("iss", issuer)])


class AuthorizationServer(FlaskAuthorizationServer):
    def __init__(self):
        super().__init__()
        self.issuer = Issuer()
        self.register_extension(self.issuer)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(), ResourceIndicator(), IssuingFor()])
        self.register_grant(RefreshTokenGrant, [IssuingFor()])
        self.register_endpoint(ClientRegistration)
        self.register_endpoint(ClientConfiguration)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_client_auth_method(assertion.METHOD, assertion.authenticate_private_key_jwt)

    def load_config(self, config):
        self.register_token_generator("default", generate_bearer_token)

    def get_endpoint(self, name: str):
        """The registered endpoint object (for views that call a lean path on it directly)."""
        return self._endpoints[name][0]

    def query_client(self, client_id):
        """A registered client, or for an https URL client_id its metadata document's client."""
        if isinstance(client_id, str) and cimd.is_url_client_id(client_id):
            return cimd.load_client(client_id)
        return store.get_client(client_id)

    def authenticate_client(self, request, methods, endpoint="token"):
        """RFC 6749 §2.3 client authentication (token and revocation endpoints), counted for rate
        limits only by what it proves: a failure against the caller's address, a token request
        against the client it authenticated (with the address when nothing was proven: a public
        client's id is only a claim). A name merely sent never spends anyone's budget."""
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            limits.note_client_auth_failure()
            raise
        if endpoint == "token":
            count_token_client(flask_request.environ, client.client_id, request.auth_method, get_remote_address())
        return client

    def token_grant_extensions(self, grant_type: str) -> tuple[type, list]:
        """The grant class registered for `grant_type` and its extensions."""
        for grant_cls, extensions in self._token_grants:
            if grant_cls.GRANT_TYPE == grant_type:
                return grant_cls, list(extensions or [])
        raise LookupError(grant_type)

    def create_oauth2_request(self, request):
        """Every endpoint but the authorization endpoint reads the form body only, never the query
        string (the authorization request is built by get_consent_grant); a request already built
        is used as it is."""
        if isinstance(request, OAuth2Request):
            return request
        return _oauth_request(flask_request.form)

    def get_consent_grant(self, request=None, end_user=None):
        """RFC 6749 §4.1.1: the authorization request is the current request's URL query alone (as
        in Authlib's Flask integration, the argument is not read), so that the consent form's own
        fields never mix in; each of its parameters is sent once (§3.1), checked before anything
        else. The view hands the grant's request on to create_authorization_response."""
        args = flask_request.args
        request = _oauth_request(args)
        try:
            refuse_repeated_parameters(list(args.items(multi=True)))
        except RepeatedParameterError as error:
            raise self._repeated_authorization_parameter(request, error) from None
        return super().get_consent_grant(request, end_user)

    def _repeated_authorization_parameter(self, request, error: RepeatedParameterError) -> OAuth2Error:
        """A repeated authorization parameter, answered as any other authorization error: redirected
        with `state` to the client's verified redirect URI, else shown as a page (RFC 6749
        §4.1.2.1). Several resources are RFC 8707 §2's invalid_target: each token has one audience."""
        refused: OAuth2Error = error
        if error.parameter == "resource":
            refused = InvalidTargetError("Send one resource per request.")
        refused.state = request.payload.state
        if error.parameter not in NEVER_REDIRECTED:
            refused.redirect_uri = self._verified_redirect_uri(request)
        return refused

    def _verified_redirect_uri(self, request) -> str | None:
        """The redirect URI an error may be sent to, verified against the client as Authlib
        verifies it before redirecting an error of its own; None when there is none."""
        try:
            client = self.query_client(request.payload.client_id) if request.payload.client_id else None
            if client is None:
                return None
            return AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)
        except OAuth2Error:
            return None

    def validate_requested_scope(self, scope):
        """RFC 6749 §3.3: unknown scopes are `invalid_scope`; offline_access is accepted and ignored."""
        if not scope:
            return
        known = scopes.catalog()
        unknown = [s for s in scope.split() if s not in known and s not in scopes.IGNORED_SCOPES]
        if unknown:
            raise InvalidScopeError(safe_description(f"Unknown scope: {' '.join(unknown)}."))

    def save_token(self, token: dict, request) -> None:
        """Store the token pair as SHA-256 hashes (of a JWT access token too), stamped with the
        grant, its code lineage, the scope that code authorized (the ceiling of every refresh, RFC
        6749 §6) and when the person approved it (a JWT's auth_time)."""
        if request.payload.grant_type == RefreshTokenGrant.GRANT_TYPE:
            previous = request.refresh_token
            code_id, parent_id, authorized = previous.code_id, previous.id, previous.get_authorized_scope()
            grant_id, auth_time = previous.grant_id, previous.auth_time
        else:
            code = request.authorization_code
            grant_id, code_id, parent_id, authorized = code.grant_id, code.id, None, code.scope
            auth_time = code.auth_time
        store.save_token(**stored_values(token, grant_id=grant_id, code_id=code_id, parent_id=parent_id,
                                         client_pk=request.client.id, authorized_scope=authorized,
                                         auth_time=auth_time))

    def handle_error_response(self, request, error):
        """Every error says what went wrong: Authlib leaves some without a description."""
        if not error.description:
            error.description = DEFAULT_DESCRIPTIONS.get(error.error, "The request is not valid.")
        return super().handle_error_response(request, error)

    def authorization_error_response(self, error):
        """Redirect an authorization error to the client with `iss`, but only when Authlib has
        verified the client and redirect URI (it sets error.redirect_uri only then); None means
        the caller must render an error page instead (never redirect to an unverified URI)."""
        if not error.redirect_uri:
            return None
        response = self.handle_error_response(None, error)
        self.issuer.add_issuer_parameter(self, response)
        return response


server = AuthorizationServer()


def init_oauth(app: Flask) -> None:
    """Bind the OAuth server to the app (its endpoints' blueprints are registered by create_app:
    the protocol core knows nothing of the views)."""
    server.init_app(app)
    app.extensions["authserver.oauth"] = server
