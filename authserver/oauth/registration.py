"""Dynamic client registration (RFC 7591), client management (RFC 7592), and what a client may
register: the redirect-URI policy and the client metadata this server supports (which the RFC 8414
document publishes and Authlib's claims enforce, from the same constants)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets as _secrets
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

from authlib.common.urls import is_valid_url
from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2.requests import FlaskJsonPayload
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, JsonPayload, JsonRequest
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint
from flask import current_app, g, has_app_context
from flask import request as flask_request
from joserfc.errors import ClaimError
from werkzeug.datastructures import EnvironHeaders
from werkzeug.wsgi import get_current_url

from .. import audit, scopes, store
from ..models import Client
from ..models.clients import LOOPBACK_HOSTS
from ..secrets import (
    CLIENT_SECRET_PREFIX,
    REGISTRATION_TOKEN_PREFIX,
    hash_secret,
    new_credential,
    sha256_hex,
)
from .credentials import bearer_token
from .errors import RegistrationClosedError, safe_description
from .fetch import FetchError, FetchPolicy, check_url
from .grants import TOKEN_ENDPOINT_AUTH_METHODS, AuthorizationCodeGrant, RefreshTokenGrant

#: The method proven with the client's own key (RFC 7523 §2.2), offered only when enabled.
KEY_METHOD = "private_key_jwt"
#: Methods with no client secret: public clients, and clients proving themselves with their key.
SECRETLESS_METHODS = ("none", KEY_METHOD)
#: What a client may register (and what the metadata document advertises).
GRANT_TYPES = [AuthorizationCodeGrant.GRANT_TYPE, RefreshTokenGrant.GRANT_TYPE]
RESPONSE_TYPES = sorted(AuthorizationCodeGrant.RESPONSE_TYPES)

# Schemes that can never be a redirect target: script execution or local resources.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "about", "blob", "filesystem"})
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*$")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")

_STRING_MEMBERS = (
    "client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri",
    "software_id", "software_version", "scope", "token_endpoint_auth_method",
)
_STRING_LIST_MEMBERS = ("redirect_uris", "grant_types", "response_types", "contacts")


def token_endpoint_auth_methods() -> list[str]:
    """The token endpoint authentication methods in force: private_key_jwt only where enabled."""
    enabled = current_app.config["PRIVATE_KEY_JWT_ENABLED"]
    return [m for m in TOKEN_ENDPOINT_AUTH_METHODS if enabled or m != KEY_METHOD]


def supported_client_metadata() -> dict:
    """What a client may register here, in RFC 8414's names: the metadata document publishes these
    members and registration enforces them (through Authlib's claims options)."""
    return {
        "response_types_supported": list(RESPONSE_TYPES),
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": token_endpoint_auth_methods(),
        "scopes_supported": scopes.all_names(),
    }


def redirect_uri_problem(uri) -> str | None:
    """Why `uri` may not be registered as a redirect URI, or None if it may.

    https anywhere; http only on loopback (RFC 8252 §7.3, any port matches later); private-use
    schemes for native apps (RFC 8252 §7.1); never script/local schemes, fragments (RFC 6749
    §3.1.2), user information, wildcards, whitespace or control characters."""
    if not isinstance(uri, str) or not uri:
        return "Each redirect URI must be a non-empty string."
    if len(uri) > 2000:
        return "A redirect URI is too long."
    if _SPACE_OR_CONTROL.search(uri):
        return "A redirect URI must not contain spaces or control characters."
    if "#" in uri:
        return "A redirect URI must not contain a fragment."
    if "*" in uri:
        return "A redirect URI must not contain wildcards."
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "A redirect URI is not a valid URI."
    scheme = parts.scheme.lower()
    if not scheme or not _SCHEME.match(parts.scheme):
        return "A redirect URI must be an absolute URI."
    if scheme in FORBIDDEN_SCHEMES:
        return f"The {scheme}: scheme is not allowed for redirect URIs."
    if "@" in parts.netloc:
        return "A redirect URI must not contain user information."
    if scheme == "https":
        if not parts.hostname:
            return "An https redirect URI needs a host."
        if _denied_host(parts.hostname):
            return "This redirect host is not allowed on this server."
        return None
    if scheme == "http":
        if parts.hostname not in LOOPBACK_HOSTS:
            return "http redirect URIs are only allowed on loopback (127.0.0.1, [::1], localhost); use https."
        return None
    if scheme in ("ws", "wss", "ftp"):
        return f"The {scheme}: scheme is not allowed for redirect URIs."
    # A private-use scheme for a native app (RFC 8252 §7.1).
    return None


def _denied_host(hostname: str) -> bool:
    if not has_app_context():
        return False
    host = hostname.lower().rstrip(".")
    for denied in current_app.config["REDIRECT_HOST_DENYLIST"]:
        denied = denied.lower().strip(".")
        if host == denied or host.endswith("." + denied):
            return True
    return False


#: Most redirect URIs a client may list (registration or metadata document).
MAX_REDIRECT_URIS = 20


def redirect_uris_problem(uris) -> str | None:
    """What is wrong with a client's list of redirect URIs (already checked to be strings)."""
    if not uris:
        return "At least one redirect URI is required."
    if len(uris) > MAX_REDIRECT_URIS:
        return f"Too many redirect URIs (at most {MAX_REDIRECT_URIS})."
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem:
            return f"{uri[:200]}: {problem}"
    return None


def dedupe_key(metadata: dict) -> str:
    """Digest of a public client's whole registered metadata: only an identical registration is
    answered with an existing client, so a registrant never gets metadata it did not send."""
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


_GRANT_TYPES_RULE = "grant_types must include authorization_code and may add refresh_token only."
#: Our words for a member Authlib's claims refuse (its own messages only name the member).
_REFUSALS = {
    "grant_types": _GRANT_TYPES_RULE,
    "response_types": "response_types may only contain code.",
    "jwks": "'jwks' must be a JWK Set of public keys, and not sent with jwks_uri.",
    **{member: f"'{member}' must be an absolute URL without a fragment or user name."
       for member in ("client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri")},
}


def type_problem(metadata: dict) -> str | None:
    """Which member of `metadata` is not of the type RFC 7591 §2 gives it, or None."""
    for key in _STRING_MEMBERS:
        if key in metadata and not isinstance(metadata[key], str):
            return f"'{key}' must be a string."
    for key in _STRING_LIST_MEMBERS:
        if key in metadata and (not isinstance(metadata[key], list)
                                or not all(isinstance(v, str) for v in metadata[key])):
            return f"'{key}' must be an array of strings."
    if "jwks" in metadata:
        if not isinstance(metadata["jwks"], dict):
            return "'jwks' must be a JSON object."
        if not isinstance(metadata["jwks"].get("keys"), list):
            return "'jwks' must have a 'keys' array."
    return None


class ClientMetadata(ClientMetadataClaims):
    """RFC 7591 §2 client metadata, validated by Authlib's claims against what this server supports
    (supported_client_metadata, as claims options), with our rules where Authlib has a hook for
    them: the member types, the redirect-URI policy (Authlib's URL check would refuse the
    private-use schemes native apps need), authorization_code always, and private_key_jwt's keys."""

    @classmethod
    def get_claims_options(cls, metadata):
        """Authlib's options from the server metadata, but for scope: a registered scope limits
        nothing later (a client may ask for any scope at authorization), so it refuses nothing."""
        options = super().get_claims_options(metadata)
        options.pop("scope", None)
        return options

    def validate(self, now=None, leeway=0):
        """The types first (Authlib's checks assume them), then Authlib's; refusals in our words."""
        self.validate_types()
        try:
            super().validate(now, leeway)
        except ClaimError as error:
            raise InvalidClientMetadataError(self.refusal(error.claim)) from None

    def refusal(self, member: str) -> str:
        """Why `member` was refused, for the error_description."""
        if member == "token_endpoint_auth_method":
            supported = self.params["token_endpoint_auth_methods_supported"]
            return f"token_endpoint_auth_method must be one of: {', '.join(supported)}."
        return _REFUSALS.get(member, f"'{member}' is not valid.")

    def validate_types(self):
        """Each member of the type RFC 7591 §2 gives it, before any other check reads it."""
        problem = type_problem(self)
        if problem:
            raise InvalidClientMetadataError(problem)

    def validate_redirect_uris(self):
        """RFC 7591 §2: at least one redirect URI, each allowed by redirect_uri_problem."""
        problem = redirect_uris_problem(self.get("redirect_uris"))
        if problem:
            raise InvalidRedirectURIError(safe_description(problem))

    def validate_token_endpoint_auth_method(self):
        """RFC 7591 §2 (client_secret_basic when omitted); private_key_jwt (RFC 7523 §2.2) needs
        exactly one of jwks and jwks_uri."""
        super().validate_token_endpoint_auth_method()
        if self["token_endpoint_auth_method"] == KEY_METHOD and ("jwks" in self) == ("jwks_uri" in self):
            raise InvalidClientMetadataError("private_key_jwt needs exactly one of jwks and jwks_uri.")

    def validate_grant_types(self):
        """RFC 7591 §2.1: every client uses the authorization code (the options check the rest)."""
        if AuthorizationCodeGrant.GRANT_TYPE not in self.get("grant_types", GRANT_TYPES):
            raise InvalidClientMetadataError(_GRANT_TYPES_RULE)

    def validate_jwks_uri(self):
        """A jwks_uri we will fetch (private_key_jwt) must pass the fetch policy now."""
        if self.get("token_endpoint_auth_method") != KEY_METHOD or "jwks_uri" not in self:
            return super().validate_jwks_uri()
        try:
            check_url(self["jwks_uri"], FetchPolicy.from_config(current_app.config))
        except FetchError as error:
            raise InvalidClientMetadataError(f"jwks_uri: {error}") from None


#: Members the lean path leaves to the claims: key material (private_key_jwt's keys, fetched or
#: checked by the claims) and a software statement.
_NOT_PLAIN = ("jwks", "jwks_uri", "software_statement")
#: URL members Authlib's claims check with is_valid_url (absolute, a host, no fragment, no user).
_URL_MEMBERS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")
_RESPONSE_TYPE_SETS = [set(item.split()) for item in RESPONSE_TYPES]


def plain_client_metadata(data: dict) -> dict | None:
    """The metadata ClientMetadata's claims register for `data` (a request that passed
    check_request) when it is plain, worked out directly; None for anything else: key material,
    or anything the claims refuse (they then decide, and say why).

    The same rules as the claims (Authlib's ClientMetadataClaims with the options of
    get_claims_options, and ours above: type_problem, redirect_uris_problem, authorization_code
    always), without their machinery: the server metadata, options made of closures, a claims
    registry and fifteen validate_ hooks cost several times the rules on the endpoint hosted AI
    clients call on every connection. tests/oauth/test_registration_lean.py holds the two to the
    same answers on generated metadata."""
    if any(member in data for member in _NOT_PLAIN) or type_problem(data):
        return None
    # token_endpoint_auth_method: one of those in force when sent (client_secret_basic if not).
    if "token_endpoint_auth_method" in data:
        method = data["token_endpoint_auth_method"]
        if method == KEY_METHOD or method not in token_endpoint_auth_methods():
            return None
    # grant_types: supported ones, authorization_code among them.
    if "grant_types" in data:
        grant_types = data["grant_types"]
        if not set(grant_types).issubset(GRANT_TYPES) or AuthorizationCodeGrant.GRANT_TYPE not in grant_types:
            return None
    # response_types: each (a space-separated set) supported; an empty list is the default, code.
    if not all(set(item.split()) in _RESPONSE_TYPE_SETS for item in data.get("response_types", ())):
        return None
    if redirect_uris_problem(data.get("redirect_uris")):
        return None
    if any(data.get(member) and not is_valid_url(data[member], fragments_allowed=False)
           for member in _URL_MEMBERS):
        return None
    # The registered members in the claims' order (get_registered_claims), with their default
    # token_endpoint_auth_method (RFC 7591 §2).
    metadata = {}
    for member in ClientMetadata.REGISTERED_CLAIMS:
        if member in data:
            metadata[member] = data[member]
        elif member == "token_endpoint_auth_method":
            metadata[member] = "client_secret_basic"
    return metadata


class MetadataValidation:
    """Validation shared by registration and update (RFC 7591 §2): the request as a whole here,
    its members by the ClientMetadata claims."""

    def get_server_metadata(self):
        return supported_client_metadata()

    def check_request(self, data, body: bytes) -> None:
        """A JSON object of a sane size and text, before any member is read."""
        if len(body) > current_app.config["REGISTRATION_MAX_BYTES"]:
            raise InvalidClientMetadataError("The client metadata is too large.")
        if not isinstance(data, dict) or not data:
            raise InvalidClientMetadataError("The request body must be a JSON object of client metadata.")
        try:
            encoded = json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidClientMetadataError("The client metadata contains invalid Unicode.") from None
        if b"\\u0000" in encoded or b"\x00" in encoded:
            raise InvalidClientMetadataError("The client metadata must not contain NUL characters.")

    def extract_client_metadata(self, request):
        self.check_request(request.payload.data, request.body)
        metadata = self.plain_metadata(request.payload.data)
        if metadata is None:
            metadata = super().extract_client_metadata(request)
        metadata.setdefault("grant_types", ["authorization_code"])
        metadata.setdefault("response_types", ["code"])
        return {k: v for k, v in metadata.items() if v is not None}

    def plain_metadata(self, data: dict) -> dict | None:
        """The registered metadata worked out without the claims, or None: the claims decide."""
        return None


class RegistrationRequest(JsonRequest):
    """Authlib's Flask JSON request, with everything the registration endpoints read: the body
    (for its size), where it came from (for the audit trail), the metadata. The request URL is
    built only if read: nothing on the registration path reads it, and building it (host, path and
    IRI decoding) is a noticeable share of a registration, the one endpoint hosted AI clients call
    on every connection."""

    def __init__(self, request):
        self._request = request
        self.method = request.method
        self.headers = request.headers
        self.payload = FlaskJsonPayload(request)
        self.remote_addr = request.remote_addr
        self.request_id = g.get("request_id")

    @property
    def uri(self) -> str:
        return self._request.url

    @property
    def body(self) -> bytes:
        return self._request.get_data(cache=True)


class _ParsedPayload(JsonPayload):
    def __init__(self, data):
        self._data = data

    @property
    def data(self):
        return self._data


class WSGIRegistrationRequest(RegistrationRequest):
    """The same request read straight from the WSGI environ and its body, for the lane
    (fastlane.py), which registers without a Flask request context: pushing and popping one (the
    Request object, its URL adapter, the teardown) was about a fifth of a registration's CPU, and
    nothing here needs it. `data` is the body parsed as Flask's get_json parses it (app.json)."""

    def __init__(self, environ, body: bytes, data, request_id: str):
        self._environ = environ
        self.method = environ["REQUEST_METHOD"]
        self.headers = EnvironHeaders(environ)
        self.payload = _ParsedPayload(data)
        self.remote_addr = environ.get("REMOTE_ADDR")  # what Flask's request.remote_addr reads
        self.request_id = request_id
        self._body = body

    @property
    def uri(self) -> str:
        return get_current_url(self._environ)

    @property
    def body(self) -> bytes:
        return self._body


class ClientRegistration(MetadataValidation, ClientRegistrationEndpoint):
    """RFC 7591 §3 at /oauth/register. Open by default; REGISTRATION_MODE=closed refuses it."""

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[ClientMetadata])

    def create_endpoint_request(self, request):
        return RegistrationRequest(flask_request)

    def plain_metadata(self, data: dict) -> dict | None:
        """A plain registration's metadata without Authlib's claims machinery (plain_client_metadata)."""
        return plain_client_metadata(data)

    def authenticate_token(self, request):
        mode = current_app.config["REGISTRATION_MODE"]
        if mode == "open":
            return True
        if mode == "token":
            token = bearer_token(request.headers.get("Authorization"))
            digest = hashlib.sha256(token.encode()).hexdigest() if token else ""
            allowed = current_app.config["REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES"]
            # Compare against every configured digest, in constant time each.
            if digest and any(hmac.compare_digest(digest, h) for h in allowed):
                return True
            raise InvalidTokenError("An initial access token is required to register a client.")
        raise RegistrationClosedError("Dynamic client registration is disabled on this server.")

    def create_registration_response(self, request):
        """RFC 7591 §3.1-3.2. Authlib's version, minus its second authenticate_token and a second
        pass over the body: the metadata is validated once, its digest computed once; and the
        write is one call to the store (one statement on PostgreSQL, store.register_client).

        An identical public client (hosted AI clients register again and again from the same few
        addresses) is answered with the existing one, no new row. A client that several parties
        were handed is managed by none of them: otherwise its first registrant could add a
        redirect URI of its own, or delete it, under everybody else's grants. When it left
        deduplication meanwhile (managed or deleted), a new client is registered instead."""
        request.credential = self.authenticate_token(request)
        metadata = self.extract_client_metadata(request)
        public = metadata["token_endpoint_auth_method"] == "none"
        key = dedupe_key(metadata) if public else None
        info = self.generate_client_info(request)
        registration_token = new_credential(REGISTRATION_TOKEN_PREFIX)
        secret = info.get("client_secret")
        values = {
            "client_id": info["client_id"],
            "client_secret_hash": hash_secret(secret) if secret else None,
            "registration_access_token_hash": sha256_hex(registration_token),
            "client_metadata": metadata,
            "registration": "dynamic",
            "client_id_issued_at": info["client_id_issued_at"],
            "dedupe_key": None if secret else key,  # secretless clients: deduplicated by their whole metadata
        }
        # The new client as its rules read it (Client's own accessors), with no model instance:
        # nothing here adds it to a session, and building one costs more than the rest.
        client = SimpleNamespace(client_id=values["client_id"], client_metadata=metadata)
        # From the request itself, not from Flask's (the lane has none); no one acts for another
        # at this endpoint (audit.attribute is the admin API's).
        origin = {"ip": request.remote_addr, "request_id": request.request_id}
        reused = audit.event_values("client.reused", **origin)
        registered = audit.event_values("client.registered", **origin, client=client,
                                        client_name=Client.client_name.fget(client),
                                        redirect_uris=Client.redirect_uris.fget(client))
        existing = store.register_client(values, key, reused, registered)
        if existing is not None:
            audit.logged({**reused, "client_id": existing.client_id})
            body = {"client_id": existing.client_id, "client_id_issued_at": existing.client_id_issued_at,
                    **existing.client_metadata}
            return 201, body, default_json_headers
        audit.logged(registered)
        request.registration_access_token = registration_token
        body = {**metadata, **info, **self.generate_client_registration_info(client, request)}
        if info["client_secret"] is None:
            del body["client_secret"], body["client_secret_expires_at"]
        return 201, {k: v for k, v in body.items() if v is not None}, default_json_headers

    def generate_client_id(self, request) -> str:
        return _secrets.token_urlsafe(24)

    def generate_client_secret(self, request) -> str | None:
        if request.payload.data.get("token_endpoint_auth_method") in SECRETLESS_METHODS:
            return None
        return new_credential(CLIENT_SECRET_PREFIX)

    def generate_client_registration_info(self, client, request) -> dict:
        return {
            "registration_client_uri": registration_client_uri(client),
            "registration_access_token": request.registration_access_token,
        }


def registration_client_uri(client: Client) -> str:
    return f"{current_app.config['ISSUER']}/oauth/register/{client.client_id}"


class RegistrationToken:
    """The registration access token presented to the RFC 7592 endpoint."""

    def __init__(self, client: Client, value: str):
        self.client = client
        self.value = value

    def check_client(self, client) -> bool:
        return client is not None and client.id == self.client.id


class ClientConfiguration(MetadataValidation, ClientConfigurationEndpoint):
    """RFC 7592 GET/PUT/DELETE at the registration_client_uri, with the registration token."""

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[ClientMetadata])

    def create_endpoint_request(self, request):
        return RegistrationRequest(flask_request)

    def authenticate_token(self, request):
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise InvalidClientError(status_code=401, description="Send the registration access token as a Bearer token.")
        client = store.get_client_by_registration_token(sha256_hex(token))
        if client is None:
            raise _token_no_longer_valid()
        return RegistrationToken(client, token)

    def authenticate_client(self, request):
        client_id = urlsplit(request.uri).path.rstrip("/").rsplit("/", 1)[-1]
        return store.get_client(client_id)

    def revoke_access_token(self, *args):
        """Nothing to do: an unknown client has no registration token left to revoke."""

    def check_permission(self, client, request) -> bool:
        return client.registration == "dynamic"

    def introspect_client(self, client: Client) -> dict:
        info = {"client_id": client.client_id, "client_id_issued_at": client.client_id_issued_at}
        if client.client_secret_hash:
            info["client_secret_expires_at"] = 0
        return {**info, **client.client_metadata}

    def generate_client_registration_info(self, client, request) -> dict:
        return {
            "registration_client_uri": registration_client_uri(client),
            "registration_access_token": request.credential.value,
        }

    def create_update_client_response(self, client, request):
        if not isinstance(request.payload.data, dict):
            raise InvalidClientMetadataError("The request body must be a JSON object of client metadata.")
        if "client_secret" in request.payload.data and not client.client_secret_hash:
            raise InvalidRequestError("This client has no secret.")
        return super().create_update_client_response(client, request)

    def update_client(self, client: Client, client_metadata: dict, request) -> Client:
        """RFC 7592 §2.2: the new metadata replaces the old; the auth method may not change
        between public and confidential (a secret can't be issued or taken back here)."""
        old_secret = client.token_endpoint_auth_method not in SECRETLESS_METHODS
        new_secret = client_metadata.get("token_endpoint_auth_method") not in SECRETLESS_METHODS
        if old_secret != new_secret:
            raise InvalidClientMetadataError(
                "token_endpoint_auth_method cannot change between a secret method and one without a secret."
            )
        # Conditional on the token still being valid: an identical registration may have handed
        # this client to someone else since the token was checked.
        issued_at = client.client_id_issued_at or int(time.time())
        if not store.update_managed_client(client, sha256_hex(request.credential.value), client_metadata, issued_at):
            raise _token_no_longer_valid()
        audit.record("client.updated", client=client, redirect_uris=client.redirect_uris)
        return client

    def delete_client(self, client: Client, request) -> None:
        if not store.delete_managed_client(client, sha256_hex(request.credential.value)):
            raise _token_no_longer_valid()
        audit.record("client.deleted", client=client)


def _token_no_longer_valid() -> InvalidClientError:
    return InvalidClientError(status_code=401, description="The registration access token is not valid.")
