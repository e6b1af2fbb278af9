"""Threat 3: redirect-URI manipulation and open redirects (RFC 9700 §4.1, §4.11; OAuth 2.1 §4.1.1;
RFC 8252 §7.3).

Defence: exact string match against the registered URIs (only the port of an http loopback URI
may vary); an error with an unverified client or redirect URI is a 400 HTML page, never a
redirect."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, REDIRECT_URI, assert_error_page, authorize_params, query

from .support import nothing_issued

REGISTERED = "https://app.example/cb"

MANIPULATED = [
    "https://app.example/cb/../evil",
    "https://app.example/cbx",
    "https://app.example/cb/",
    "https://app.example/cb/evil",
    "https://app.example/c",
    "https://app.example/cb?x=1",
    "https://app.example/cb#frag",
    "https://app.example.evil.com/cb",
    "https://evil.com/cb",
    "https://app.example@evil.com/cb",
    "https://evil.com@app.example/cb",
    "https://app.example/%63b",
    "https://app.example/cb%2F..%2Fevil",
    "https://app.example/cb%23",
    "https://APP.EXAMPLE/cb",
    "HTTPS://app.example/cb",
    "https://app.example./cb",
    "https://app.example:8443/cb",
    "https://app.example:443/cb",
    "http://app.example/cb",
    "//app.example/cb",
    "/cb",
]


@pytest.mark.parametrize("redirect_uri", MANIPULATED)
def test_redirect_uri_manipulation_is_an_error_page_not_a_redirect(app, flow, register, redirect_uri):
    client_id = register(redirect_uris=[REGISTERED])["client_id"]
    params = authorize_params(client_id, PKCE(), redirect_uri=redirect_uri)
    assert_error_page(flow.client.get("/oauth/authorize", query_string=params), 400)
    assert nothing_issued(app)


def test_redirect_uri_exact_match_is_accepted(flow, register):
    client_id = register(redirect_uris=[REGISTERED])["client_id"]
    params = authorize_params(client_id, PKCE(), redirect_uri=REGISTERED)
    response = flow.decide(params)
    assert response.headers["Location"].startswith(REGISTERED + "?")


def test_redirect_uri_unverified_plus_other_error_is_still_a_page(flow, register):
    """An error that would normally be redirected (here unsupported_response_type, plain PKCE)
    is shown as a page when the redirect URI does not match: no open redirect through errors."""
    client_id = register(redirect_uris=[REGISTERED])["client_id"]
    params = authorize_params(client_id, PKCE(), redirect_uri="https://evil.com/cb",
                              response_type="token", code_challenge_method="plain")
    assert_error_page(flow.client.get("/oauth/authorize", query_string=params), 400)


@pytest.mark.parametrize("logged_in", [True, False], ids=["signed in", "anonymous"])
def test_redirect_uri_unknown_client_is_a_page_not_a_redirect(app, flow, world, logged_in):
    browser = flow.client if logged_in else app.test_client()
    params = authorize_params("no-such-client", PKCE(), redirect_uri="https://evil.com/cb")
    assert_error_page(browser.get("/oauth/authorize", query_string=params), 400)


def test_redirect_uri_missing_is_refused_when_several_are_registered(flow, register):
    client_id = register(redirect_uris=[REGISTERED, "https://app.example/cb2"])["client_id"]
    params = authorize_params(client_id, PKCE(), redirect_uri=None)
    assert_error_page(flow.client.get("/oauth/authorize", query_string=params), 400)


def test_redirect_uri_loopback_any_port_is_allowed(flow, register):
    """RFC 8252 §7.3: a native app's loopback listener gets a port from the OS at run time."""
    client_id = register(redirect_uris=[REDIRECT_URI])["client_id"]  # http://127.0.0.1:7777/callback
    other_port = "http://127.0.0.1:51234/callback"
    params = authorize_params(client_id, PKCE(), redirect_uri=other_port)
    response = flow.decide(params)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(other_port + "?")
    assert query(response.headers["Location"])["code"]


LOOPBACK_MANIPULATED = [
    "http://localhost:7777/callback",  # another loopback host name is another URI
    "http://127.0.0.1:7777/callback/evil",
    "http://127.0.0.1:7777/callbackx",
    "http://127.0.0.1:7777/callback?x=1",
    "http://127.0.0.1:7777/callback#frag",
    "http://127.0.0.1.evil.com:7777/callback",
    "http://127.0.0.1@evil.com:7777/callback",
    "http://evil.com@127.0.0.1:7777/callback",
    "https://127.0.0.1:7777/callback",
]


@pytest.mark.parametrize("redirect_uri", LOOPBACK_MANIPULATED)
def test_redirect_uri_loopback_only_the_port_may_vary(flow, register, redirect_uri):
    client_id = register(redirect_uris=[REDIRECT_URI])["client_id"]
    params = authorize_params(client_id, PKCE(), redirect_uri=redirect_uri)
    assert_error_page(flow.client.get("/oauth/authorize", query_string=params), 400)
