"""Parametrized tables of bad authorization and token requests, each with its exact error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from werkzeug.datastructures import MultiDict

from authserver.extensions import db
from authserver.models import AuthorizationCode
from authserver.timeutil import utcnow

from .support import (
    PKCE,
    REDIRECT_URI,
    RESOURCE,
    assert_error_page,
    assert_oauth_error,
    assert_redirect_error,
    authorize_params,
)

# --- authorization endpoint: errors that must NOT be redirected (unverified client/redirect) ---
PAGE_CASES = {
    "unknown client": {"client_id": "no-such-client"},
    "missing client_id": {"client_id": None},
    "unregistered redirect uri": {"redirect_uri": "https://evil.example/callback"},
    "redirect uri with extra path": {"redirect_uri": REDIRECT_URI + "/evil"},
    "redirect uri prefix": {"redirect_uri": "http://127.0.0.1:7777/call"},
    "redirect uri with fragment": {"redirect_uri": REDIRECT_URI + "#x"},
    "redirect uri encoded path": {"redirect_uri": "http://127.0.0.1:7777/%63allback"},
    "redirect uri path traversal": {"redirect_uri": "http://127.0.0.1:7777/callback/../evil"},
    "redirect uri other loopback path": {"redirect_uri": "http://localhost:7777/other"},
}


@pytest.mark.parametrize("overrides", PAGE_CASES.values(), ids=PAGE_CASES.keys())
def test_authorization_error_is_a_page_not_a_redirect(flow, register, overrides):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), **overrides)
    response = flow.client.get("/oauth/authorize", query_string=params)
    assert_error_page(response)


# --- authorization endpoint: errors redirected to the verified redirect URI with state and iss ---
REDIRECT_CASES = {
    "response_type token": ({"response_type": "token"}, "unsupported_response_type"),
    "missing response_type": ({"response_type": None}, "unsupported_response_type"),
    "missing code_challenge": ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    "plain pkce": ({"code_challenge_method": "plain"}, "invalid_request"),
    "challenge without method": ({"code_challenge_method": None}, "invalid_request"),
    "malformed challenge": ({"code_challenge": "short"}, "invalid_request"),
    "unknown resource": ({"resource": "https://unknown.example/mcp"}, "invalid_target"),
    "resource with fragment": ({"resource": RESOURCE + "#frag"}, "invalid_target"),
    "relative resource": ({"resource": "/mcp"}, "invalid_target"),
    "unknown scope": ({"scope": "crm.objects.contacts.read admin.everything"}, "invalid_scope"),
}


@pytest.mark.parametrize(("overrides", "error"), REDIRECT_CASES.values(), ids=REDIRECT_CASES.keys())
def test_authorization_error_redirects_with_state_and_iss(flow, register, world, overrides, error):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), **overrides)
    response = flow.client.get("/oauth/authorize", query_string=params)
    assert_redirect_error(response, error, params["state"], world.issuer)


@pytest.mark.parametrize("parameter", ["code_challenge", "resource"])
def test_duplicated_authorization_parameter_redirects(flow, register, world, parameter):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    query = MultiDict(list(params.items()) + [(parameter, params[parameter])])
    response = flow.client.get("/oauth/authorize", query_string=query)
    expected = "invalid_target" if parameter == "resource" else "invalid_request"
    assert_redirect_error(response, expected, params["state"], world.issuer)


@pytest.mark.parametrize("parameter", ["state", "scope", "redirect_uri", "client_id", "response_type"])
def test_duplicated_core_parameter_is_a_page(flow, register, parameter):
    """RFC 6749 §3.1: which value would be echoed is ambiguous, so nothing is redirected."""
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    query = MultiDict(list(params.items()) + [(parameter, params[parameter] + "x")])
    assert_error_page(flow.client.get("/oauth/authorize", query_string=query))


# --- token endpoint ------------------------------------------------------------------------------
def _expire(app, code):
    from authserver.secrets import sha256_hex

    with app.app_context():
        db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == sha256_hex(code))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


TOKEN_CASES = {
    "wrong code_verifier": (lambda c: {"code_verifier": PKCE().verifier}, "invalid_grant", 400),
    "missing code_verifier": (lambda c: {"code_verifier": None}, "invalid_request", 400),
    "malformed code_verifier": (lambda c: {"code_verifier": "abc"}, "invalid_request", 400),
    "wrong redirect_uri": (lambda c: {"redirect_uri": "http://127.0.0.1:7777/other"}, "invalid_grant", 400),
    "missing redirect_uri": (lambda c: {"redirect_uri": None}, "invalid_grant", 400),
    "garbage code": (lambda c: {"code": "asc_nope"}, "invalid_grant", 400),
    "missing code": (lambda c: {"code": None}, "invalid_request", 400),
    "another client's code": (lambda c: {"client_id": c["other_client"]}, "invalid_grant", 400),
    "unknown client": (lambda c: {"client_id": "no-such-client"}, "invalid_client", 400),
    "missing client_id": (lambda c: {"client_id": None}, "invalid_client", 401),
    "public client presenting a secret": (lambda c: {"client_secret": "guess"}, "invalid_client", 401),
    "resource mismatch": (lambda c: {"resource": "https://other.example/mcp"}, "invalid_target", 400),
    "unknown resource at token": (lambda c: {"resource": "https://unknown.example/"}, "invalid_target", 400),
    "unsupported grant_type": (lambda c: {"grant_type": "password"}, "unsupported_grant_type", 400),
    "implicit-style grant_type": (lambda c: {"grant_type": "client_credentials"}, "unsupported_grant_type", 400),
    "missing grant_type": (lambda c: {"grant_type": None}, "unsupported_grant_type", 400),
    "expired code": ("expire", "invalid_grant", 400),
}


@pytest.mark.parametrize(("change", "error", "status"), TOKEN_CASES.values(), ids=TOKEN_CASES.keys())
def test_bad_token_request(app, flow, register, change, error, status):
    client_id = register()["client_id"]
    other_client = register(client_name="Other")["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    extra = {}
    if change == "expire":
        _expire(app, code)
    else:
        extra = change({"other_client": other_client})
    response = flow.exchange(client_id, code, pkce, **extra)
    assert_oauth_error(response, error, status)


def test_duplicated_token_parameter(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    data = MultiDict([
        ("grant_type", "authorization_code"), ("code", code), ("code", code),
        ("redirect_uri", REDIRECT_URI), ("client_id", client_id), ("code_verifier", pkce.verifier),
    ])
    assert_oauth_error(flow.client.post("/oauth/token", data=data), "invalid_request")


def test_token_parameters_in_query_string_are_ignored(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    params = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "client_id": client_id, "code_verifier": pkce.verifier}
    body = assert_oauth_error(flow.client.post("/oauth/token", query_string=params), "invalid_request")
    assert "application/x-www-form-urlencoded" in body["error_description"]


def test_json_token_body_is_refused(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    response = flow.client.post("/oauth/token", json={"grant_type": "authorization_code", "code": code})
    body = assert_oauth_error(response, "invalid_request")
    assert "application/x-www-form-urlencoded" in body["error_description"]


def test_confidential_client_without_secret(flow, preregistered):
    client_id, _secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    assert_oauth_error(flow.exchange(client_id, code, pkce), "invalid_client", 401)


def test_confidential_client_wrong_secret(flow, preregistered):
    client_id, _secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    response = flow.client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "code_verifier": pkce.verifier},
        auth=(client_id, "wrong"),
    )
    body = assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert body


REFRESH_CASES = {
    "garbage refresh token": (lambda t: {"refresh_token": "asr_nope"}, "invalid_grant"),
    "access token as refresh token": (lambda t: {"refresh_token": t["access_token"]}, "invalid_grant"),
    "missing refresh token": (lambda t: {"refresh_token": None}, "invalid_request"),
    "another client's refresh token": (lambda t: {"client_id": t["other_client"]}, "invalid_grant"),
    "scope never granted": (lambda t: {"scope": "crm.objects.tickets.write"}, "invalid_scope"),
    "resource mismatch at refresh": (lambda t: {"resource": "https://other.example/mcp"}, "invalid_target"),
}


@pytest.mark.parametrize(("change", "error"), REFRESH_CASES.values(), ids=REFRESH_CASES.keys())
def test_bad_refresh_request(flow, register, change, error):
    client_id = register()["client_id"]
    other = register(client_name="Other")["client_id"]
    tokens = flow.tokens(client_id)
    extra = change({**tokens, "other_client": other})
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id, **extra}
    response = flow.client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})
    assert_oauth_error(response, error)


def test_refresh_of_revoked_grant(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    assert flow.client.post("/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": client_id}).status_code == 200
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")


def test_client_without_refresh_grant_gets_no_refresh_token(flow, register):
    client_id = register(grant_types=["authorization_code"])["client_id"]
    tokens = flow.tokens(client_id)
    assert "refresh_token" not in tokens


@pytest.mark.parametrize("base_url", ["http://auth.example.com", "http://10.0.0.5"])
def test_plain_http_off_loopback_is_refused_at_the_token_endpoint(client, register, base_url):
    """OAuth 2.1 §1.5 (Authlib's insecure-transport check, kept while the request URL is built
    lazily): a token request over plain http to a non-loopback host is refused."""
    client_id = register()["client_id"]
    form = {"grant_type": "refresh_token", "refresh_token": "asr_x", "client_id": client_id}
    assert_oauth_error(client.post("/oauth/token", data=form, base_url=base_url), "insecure_transport", 400)
    assert_oauth_error(client.post("/oauth/token", data=form), "invalid_grant", 400)  # over https
