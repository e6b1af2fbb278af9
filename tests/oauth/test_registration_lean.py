"""The lean path of registration's metadata validation (registration.plain_client_metadata) against
the reference, Authlib's claims with our rules (ClientMetadata): on any metadata, registration
answers exactly as the claims alone would (the same registered metadata, in the same order, or the
same error), and the registrations hosted AI clients send are taken by the lean path."""

from __future__ import annotations

import json

import pytest
from authlib.oauth2.rfc6749 import OAuth2Error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authserver.oauth.registration import (
    ClientMetadata,
    ClientRegistration,
    WSGIRegistrationRequest,
    plain_client_metadata,
)

from .support import REDIRECT_URI

PROPERTY = settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


class ClaimsOnly(ClientRegistration):
    """The reference: registration with every request's metadata decided by the claims."""

    def plain_metadata(self, data):
        return None


def _answer(endpoint, data) -> tuple:
    body = json.dumps(data).encode()
    environ = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json"}
    try:
        metadata = endpoint.extract_client_metadata(WSGIRegistrationRequest(environ, body, data, "test"))
    except OAuth2Error as error:
        return "refused", error.error, error.description
    return "registered", list(metadata.items())  # the order counts: the response echoes it


def _same_answer(data) -> None:
    lean, reference = ClientRegistration(), ClaimsOnly()
    assert _answer(lean, data) == _answer(reference, data), data


URIS = [
    REDIRECT_URI, "http://127.0.0.1:6274/oauth/callback", "http://localhost/cb", "http://[::1]:33418/cb",
    "https://chatgpt.com/connector_platform_oauth_redirect", "https://claude.ai/api/mcp/auth_callback",
    "cursor://anysphere.cursor-retrieval/oauth/callback", "com.example.app:/oauth2redirect",
    "https://app.example.com/cb#frag", "https://user@app.example.com/cb", "http://app.example.com/cb",
    "javascript:alert(1)", "data:text/html,x", "https://", "https://app.example.com:99999/cb",
    "https://evil.example/cb", "https://sub.evil.example/cb", "https://app.example.com/*", "relative/path",
    "https://app.example.com/a b", "", "https://app.example.com/cb?x=1", "HTTPS://APP.EXAMPLE.COM/cb",
    "ws://127.0.0.1/cb", "https://app.example.com/\x00",
]
WORDS = [
    "none", "client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt", "",
    "authorization_code", "refresh_token", "implicit", "client_credentials", "code", "token", "code token",
    " code ", "code code", "id_token", "crm.objects.contacts.read", "offline_access", "x", "Claude", "ChatGPT",
    "mailto:ops@example.com",
]
STRINGS = st.one_of(st.sampled_from(URIS), st.sampled_from(WORDS), st.text(max_size=6))
SCALARS = st.one_of(STRINGS, st.none(), st.integers(-1, 2), st.booleans(), st.floats(allow_nan=False, width=16))
VALUES = st.one_of(
    SCALARS,
    st.lists(STRINGS, max_size=3),
    st.lists(SCALARS, max_size=2),
    st.sampled_from([{}, {"keys": []}, {"keys": "x"}, {"keys": [{"kty": "oct", "k": "x"}]}, []]),
)
MEMBERS = [*ClientMetadata.REGISTERED_CLAIMS, "software_statement", "application_type", "extra", "client_id"]
_URI = st.sampled_from(URIS)
_LIST = {
    "redirect_uris": URIS,
    "grant_types": ["authorization_code", "refresh_token", "implicit"],
    "response_types": ["code", "token", "code token", " code ", "code code", ""],
    "contacts": ["ops@example.com", "", "mailto:ops@example.com"],
}
_ONE = {
    "token_endpoint_auth_method": st.sampled_from(
        ["none", "client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt", "", "NONE"]),
    **{member: _URI for member in ("client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri")},
    "jwks": st.sampled_from([{}, {"keys": []}, {"keys": "x"}, {"keys": [{"kty": "oct", "k": "x"}]},
                             {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "d": "d"}]}]),
    "scope": st.sampled_from(["", "crm.objects.contacts.read", "openid unknown", "offline_access"]),
}


def _member_value(member: str):
    """Values a member is likely to be refused or accepted on, and anything else now and then."""
    if member in _LIST:
        likely = st.lists(st.sampled_from(_LIST[member]), max_size=2)
    else:
        likely = _ONE.get(member, STRINGS)
    return st.one_of(likely, likely, likely, VALUES)


#: The registrations seen from hosted AI clients and the MCP SDKs (trimmed to the members that count).
USUAL = [
    {"client_name": "ChatGPT", "redirect_uris": ["https://chatgpt.com/connector_platform_oauth_redirect"],
     "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
     "token_endpoint_auth_method": "none"},
    {"client_name": "Claude", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
     "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
     "token_endpoint_auth_method": "none", "scope": "crm.objects.contacts.read offline_access"},
    {"client_name": "MCP Inspector", "redirect_uris": ["http://localhost:6274/oauth/callback"],
     "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
     "token_endpoint_auth_method": "none", "client_uri": "https://github.com/modelcontextprotocol/inspector",
     "application_type": "native"},
    {"client_name": "MCP CLI Proxy", "redirect_uris": ["http://127.0.0.1:33418/oauth/callback"],
     "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
     "response_types": ["code"], "software_id": "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d", "software_version": "0.1.18"},
    {"client_name": "Cursor", "redirect_uris": ["cursor://anysphere.cursor-retrieval/oauth/callback"]},
    {"client_name": "A web app", "redirect_uris": ["https://app.example.com/cb"], "contacts": ["ops@example.com"],
     "logo_uri": "https://app.example.com/logo.png", "tos_uri": "https://app.example.com/tos",
     "policy_uri": "https://app.example.com/privacy"},
]


@pytest.mark.parametrize("data", USUAL, ids=lambda d: d["client_name"])
def test_the_usual_registrations_take_the_lean_path_to_the_same_metadata(app, data):
    with app.app_context():
        assert plain_client_metadata(data) is not None
        _same_answer(data)


#: One rule at a time: each member's edge values, on a usual registration.
EDGES = [
    *({"grant_types": value} for value in (["refresh_token"], [], ["authorization_code", "implicit"],
                                           ["authorization_code", "authorization_code"], "authorization_code")),
    *({"response_types": value} for value in ([], ["token"], [" code "], ["code code"], ["code", "token"], [""],
                                              "code")),
    *({"token_endpoint_auth_method": value} for value in ("", "NONE", "private_key_jwt", "client_secret_post",
                                                          "client_secret_jwt", None, ["none"])),
    {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example.com/jwks"},
    {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}},
    *({member: value} for member in ("client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri")
      for value in ("", "https://app.example.com/x#f", "https://u@app.example.com/", "/relative", "https://",
                    "custom:thing", None, 1)),
    *({"redirect_uris": value} for value in ([], None, "https://app.example.com/cb", ["https://evil.example/cb"],
                                             ["http://app.example.com/cb"], [REDIRECT_URI, 1])),
    *({"contacts": value} for value in ([], "ops@example.com", [None], ["ops@example.com", ""])),
    *({member: value} for member in ("client_name", "scope", "software_id", "software_version")
      for value in ("", None, 1, ["x"])),
    {"jwks": {"keys": []}}, {"jwks": {}}, {"software_statement": "e30.e30.sig"}, {"extra": None},
    {"application_type": "web"}, {"client_id": "chosen-by-me"}, {"client_secret": "chosen-by-me"},
]


@pytest.mark.app_config(REDIRECT_HOST_DENYLIST=["evil.example"])
@pytest.mark.parametrize("usual", [USUAL[0], USUAL[4]], ids=["all members", "few members"])
@pytest.mark.parametrize("edge", EDGES, ids=lambda edge: repr(edge)[:60])
def test_the_lean_path_answers_as_the_claims_at_each_edge(app, usual, edge):
    with app.app_context():
        _same_answer({**usual, **edge})


@st.composite
def metadata(draw):
    """A usual registration with a few members changed, dropped or added."""
    data = dict(draw(st.sampled_from(USUAL)))
    for member in draw(st.lists(st.sampled_from(MEMBERS), max_size=2)):
        data.pop(member, None)
    for member in draw(st.lists(st.sampled_from(MEMBERS), max_size=3)):
        data[member] = draw(_member_value(member))
    return data


@pytest.mark.app_config(REDIRECT_HOST_DENYLIST=["evil.example"])
@PROPERTY
@given(data=metadata())
def test_the_lean_path_answers_as_the_claims(app, data):
    with app.app_context():
        _same_answer(data)


@pytest.mark.app_config(PRIVATE_KEY_JWT_ENABLED=False)
@PROPERTY
@given(data=metadata())
def test_the_lean_path_answers_as_the_claims_without_private_key_jwt(app, data):
    with app.app_context():
        _same_answer(data)


@PROPERTY
@given(data=st.dictionaries(st.sampled_from(MEMBERS), VALUES, max_size=6))
def test_the_lean_path_answers_as_the_claims_on_any_members(app, data):
    with app.app_context():
        _same_answer(data)
