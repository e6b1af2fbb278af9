"""One rule each, wherever it applies: whether a program or a person is on the other end (RFC 6749
JSON errors or an HTML page), decided once for every endpoint of the URL map; repeated parameters
refused once, before any endpoint runs; the token parameter and Authorization-header credentials
read one way by every endpoint and by the WSGI lane."""

from __future__ import annotations

import base64
from urllib.parse import quote, urlencode

import pytest
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from authserver import web
from authserver.oauth.credentials import basic_credentials, bearer_token

from .support import (
    PKCE,
    REDIRECT_URI,
    assert_error_page,
    assert_oauth_error,
    assert_redirect_error,
    authorize_params,
)

FORM = "application/x-www-form-urlencoded"
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

#: The rule's answer for the endpoints everyone knows, so that the rule itself cannot drift.
KNOWN = {
    "oauth.token": True,
    "oauth.introspect": True,
    "oauth.revoke": True,
    "oauth.register": True,
    "oauth.client_configuration": True,
    "well_known.authorization_server_metadata": True,
    "authorize.authorize": False,
    "auth.login": False,
    "auth.index": False,
    "account.apps": False,
    "account.revoke": False,
    "admin_api.list_users": True,
    "admin_api.update_member": True,
}


def _concrete_paths(app):
    """(endpoint, path, methods) for every rule of the URL map, its variables filled in."""
    adapter = app.url_map.bind("auth.test")
    for rule in app.url_map.iter_rules():
        path = adapter.build(rule.endpoint, {name: 1 for name in rule.arguments})
        yield rule.endpoint, path, rule.methods


def _is_machine(app, path, method, headers=None):
    """The one rule's verdict for this request (web.answers_in_json)."""
    with app.test_request_context(path, method=method, base_url="https://auth.test", headers=headers):
        return web.answers_in_json()


def _assert_answered_to(response, machine: bool, what):
    assert 400 <= response.status_code < 500, (what, response.status_code)
    if machine:
        assert response.mimetype == "application/json", what
        body = response.get_json()
        assert isinstance(body["error"], str) and isinstance(body["error_description"], str), (what, body)
        assert response.headers["Cache-Control"] == "no-store", what
    else:
        assert response.mimetype == "text/html", what
        assert "Location" not in response.headers, what


# --- who is on the other end -----------------------------------------------------------------------
def test_the_rule_knows_the_endpoints_everyone_knows(app):
    verdicts = {endpoint: _is_machine(app, path, min(methods - {"OPTIONS", "HEAD"}))
                for endpoint, path, methods in _concrete_paths(app)}
    assert {endpoint: verdicts[endpoint] for endpoint in KNOWN} == KNOWN


def test_every_endpoint_answers_its_errors_as_the_rule_says(app, client):
    """For every rule of the URL map (a new endpoint is covered by being added): a request every
    endpoint refuses before it runs (a NUL in the query) and a method it does not take (405) are
    answered in RFC 6749 JSON to programs and with a page to people, as the one rule decides."""
    adapter = app.url_map.bind("auth.test")
    for endpoint, path, methods in _concrete_paths(app):
        method = "GET" if "GET" in methods else min(methods - {"OPTIONS", "HEAD"})
        machine = _is_machine(app, path, method)
        refused = client.open(path + "?x=a%00b", method=method)
        _assert_answered_to(refused, machine, (endpoint, method, "NUL"))
        assert refused.status_code == 400, endpoint
        # A method no endpoint at this path takes.
        other = next(m for m in ("PATCH", "PUT", "TRACE") if m not in adapter.allowed_methods(path))
        not_allowed = client.open(path, method=other)
        _assert_answered_to(not_allowed, machine, (endpoint, other))
        assert not_allowed.status_code == 405, endpoint
        # A program that asks for JSON gets JSON wherever it is (mcp-remote probing a page's path).
        wants_json = {"Accept": "application/json"}
        assert _is_machine(app, path, method, wants_json), endpoint
        _assert_answered_to(client.open(path + "?x=a%00b", method=method, headers=wants_json), True,
                            (endpoint, method, "NUL", "Accept: application/json"))
        _assert_answered_to(client.open(path, method=other, headers=wants_json), True,
                            (endpoint, other, "Accept: application/json"))


@pytest.mark.parametrize(("path", "machine"), [
    ("/.well-known/openid-configuration", True),
    ("/oauth/no-such-endpoint", True),
    ("/oauth/token/extra", True),
    ("/no-such-page", False),
    ("/account/no-such-page", False),
])
def test_a_path_that_routes_nowhere_is_answered_by_the_prefix_it_is_under(app, client, path, machine):
    assert _is_machine(app, path, "GET") is machine
    response = client.get(path)
    assert response.status_code == 404
    _assert_answered_to(response, machine, path)


def test_an_oauth_error_raised_out_of_a_machine_view_is_rfc6749_json(client):
    """Authlib's errors are formatted by the one error handler (errors.py), not per blueprint."""
    body = assert_oauth_error(client.post("/oauth/revoke", data={"client_id": "nobody", "token": "x"}),
                              "invalid_client", 400)
    assert body["error_description"]


# --- repeated parameters -----------------------------------------------------------------------------
PARAMETER_NAMES = st.sampled_from(["token", "token_type_hint", "grant_type", "code", "refresh_token", "client_id",
                                   "client_secret", "resource", "scope", "redirect_uri", "code_verifier",
                                   "client_name"]) | st.from_regex(r"[a-z][a-z_]{0,19}", fullmatch=True)
VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


def _form_endpoints(app):
    """Every OAuth machine endpoint that takes parameters in a body, with such a method. (The
    admin API takes JSON objects only: a form body is refused whole, tests/admin.)"""
    for endpoint, path, methods in _concrete_paths(app):
        for method in ("POST", "PUT"):
            if method in methods and _is_machine(app, path, method) and endpoint.split(".")[0] in web.OAUTH_BLUEPRINTS:
                yield endpoint, path, method


@pytest.mark.app_config(RATELIMIT_ENABLED=False)
def test_every_machine_endpoint_refuses_a_repeated_parameter_the_same_way(app, client, world):
    """Any parameter, any values, any machine endpoint: the same RFC 6749 invalid_request."""
    endpoints = list(_form_endpoints(app))
    assert {e for e, _, _ in endpoints} >= {"oauth.token", "oauth.introspect", "oauth.revoke", "oauth.register"}

    @PROPERTY
    @given(name=PARAMETER_NAMES, first=VALUES, second=VALUES, extra=st.dictionaries(PARAMETER_NAMES, VALUES, max_size=3))
    def check(name, first, second, extra):
        pairs = [(k, v) for k, v in extra.items() if k != name] + [(name, first), (name, second)]
        for endpoint, path, method in endpoints:
            response = client.open(path, method=method, data=urlencode(pairs), content_type=FORM,
                                   headers=world.mcp_auth if endpoint == "oauth.introspect" else {})
            body = assert_oauth_error(response, "invalid_request", 400)
            assert body == {"error": "invalid_request", "error_description": f"Parameter '{name}' is repeated."}, endpoint

    check()


def test_a_repeated_parameter_is_refused_before_the_endpoint_does_anything(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "client_id": client_id, "code_verifier": pkce.verifier}
    refused = flow.client.post("/oauth/token", data=MultiDict([*exchange.items(), ("note", "a"), ("note", "b")]))
    assert_oauth_error(refused, "invalid_request")
    tokens = flow.exchange(client_id, code, pkce).get_json()  # the code was not spent
    revoke = MultiDict([("token", tokens["access_token"]), ("client_id", client_id), ("note", "a"), ("note", "a")])
    assert_oauth_error(flow.client.post("/oauth/revoke", data=revoke), "invalid_request")
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True  # not revoked


#: Repeated in an authorization request, these are never redirected (Authlib's own rule).
NEVER_REDIRECTED = ("response_type", "client_id", "redirect_uri", "scope", "state")
AUTHORIZATION_NAMES = st.sampled_from([*NEVER_REDIRECTED, "code_challenge", "code_challenge_method", "resource", "hub",
                                       "prompt", "nonce", "response_mode"]) | st.from_regex(r"x_[a-z]{1,10}", fullmatch=True)


def test_a_repeated_authorization_parameter_is_an_authorization_error(flow, register, world):
    """Redirected with state and iss to the verified redirect URI (RFC 8707's invalid_target for a
    resource), except the parameters the redirect itself depends on, which get a page; never a
    consent page."""
    client_id = register()["client_id"]

    @PROPERTY
    @given(name=AUTHORIZATION_NAMES, second=VALUES)
    def check(name, second):
        params = authorize_params(client_id, PKCE())
        query = MultiDict([*params.items(), (name, params.get(name, "x")), (name, second)])
        response = flow.client.get("/oauth/authorize", query_string=query)
        if name in NEVER_REDIRECTED:
            assert_error_page(response)
            assert f"Parameter &#39;{name}&#39; is repeated." in response.get_data(as_text=True)
        else:
            error = assert_redirect_error(response, "invalid_target" if name == "resource" else "invalid_request",
                                          params["state"], world.issuer)
            if name != "resource":
                assert error["error_description"] == f"Parameter '{name}' is repeated."

    check()


@pytest.mark.parametrize("overrides", [{"client_id": "no-such-client"},
                                       {"redirect_uri": "https://evil.example/callback"}],
                         ids=["unknown client", "unregistered redirect uri"])
def test_a_repeated_authorization_parameter_is_never_redirected_to_an_unverified_uri(flow, register, overrides):
    params = authorize_params(register()["client_id"], PKCE(), **overrides)
    query = MultiDict([*params.items(), ("code_challenge", params["code_challenge"])])
    assert_error_page(flow.client.get("/oauth/authorize", query_string=query))


def test_the_consent_forms_own_fields_are_not_authorization_parameters(flow, register):
    """The consent form sends one `scope` field per toggle: only the query is the OAuth request."""
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = flow.decide(params, scopes=params["scope"].split())
    assert len(params["scope"].split()) > 1
    assert response.status_code == 302 and "code=" in response.headers["Location"]


# --- one reading of the token parameter and of the Authorization header -------------------------------
@pytest.mark.parametrize("body", ["", "token=", "token_type_hint=access_token"])
@pytest.mark.parametrize("path", ["/oauth/introspect", "/oauth/revoke"])
def test_introspection_and_revocation_require_the_token_alike(client, world, register, path, body):
    client_id = register()["client_id"]
    headers = world.mcp_auth if path == "/oauth/introspect" else {}
    form = body + ("" if path == "/oauth/introspect" else f"&client_id={client_id}")
    refused = assert_oauth_error(client.post(path, data=form, content_type=FORM, headers=headers), "invalid_request")
    assert refused["error_description"] == "The 'token' parameter is required."


CREDENTIAL_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)


@settings(max_examples=200, derandomize=True)
@given(credential_id=CREDENTIAL_TEXT, secret=CREDENTIAL_TEXT, quoted=st.booleans())
def test_basic_credentials_are_decoded_as_authlib_decodes_them(credential_id, secret, quoted):
    """Our reading (the views' 401, introspection, the lane) agrees with Authlib's, which
    authenticates clients at the token and revocation endpoints, on every well-formed header."""
    encode = quote if quoted else str
    raw = f"{encode(credential_id)}:{encode(secret)}"
    header = "Basic " + base64.b64encode(raw.encode()).decode()
    ours = basic_credentials(header)
    assert ours == extract_basic_authorization({"Authorization": header})
    if quoted:
        assert ours == (credential_id, secret)


@pytest.mark.parametrize("header", ["Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                                    "Basic " + base64.b64encode(b"\xff\xfe:x").decode()])
def test_malformed_basic_credentials_are_refused_everywhere(client, header):
    with pytest.raises(ValueError):
        basic_credentials(header)
    for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
        response = client.post(path, data={"token": "x", "grant_type": "refresh_token"}, headers={"Authorization": header})
        assert_oauth_error(response, "invalid_client", 401)


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"),
    ("Bearer", None), ("Bearer   ", None), ("Basic abc", None), ("", None), (None, None),
])
def test_bearer_tokens_are_read_one_way(header, token):
    assert bearer_token(header) == token


@pytest.mark.app_config(RATELIMIT_ENABLED=False)
def test_the_lane_reads_a_callers_credentials_as_the_view_does(app, flow, register, world):
    """Basic credentials, or else the form's, whatever other scheme the header names."""
    from werkzeug.test import Client as WSGIClient

    token = flow.tokens(register()["client_id"])["access_token"]
    credential_id, secret = basic_credentials(world.mcp_auth["Authorization"])
    lane, flask = WSGIClient(app.wsgi_app), WSGIClient(app.wsgi_app.wsgi_app)
    in_form = {"token": token, "client_id": credential_id, "client_secret": secret}
    for headers, form in [(world.mcp_auth, {"token": token}), ({}, in_form), ({"Authorization": "Bearer x"}, in_form),
                          ({"Authorization": "Bearer x"}, {"token": token})]:
        answers = [c.post("/oauth/introspect", data=form, headers=headers) for c in (lane, flask)]
        assert answers[0].status_code == answers[1].status_code, headers
        assert answers[0].get_json() == answers[1].get_json(), headers
        assert (answers[0].status_code == 200) is ("client_secret" in form or "Basic" in str(headers)), headers
