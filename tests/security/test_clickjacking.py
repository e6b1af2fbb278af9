"""Threat 6: clickjacking of the login, consent and connected-apps pages (RFC 9700 §4.16;
RFC 6749 §10.13).

Defence: every HTML page is sent with `Content-Security-Policy: ... frame-ancestors 'none'` and
`X-Frame-Options: DENY` (authserver/web.py). JSON endpoints are not rendered, so they need
neither, but they are `nosniff` so a browser never renders them as HTML."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, authorize_params, csrf_token


def assert_unframeable(response):
    assert response.mimetype == "text/html", response.mimetype
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/login", "/login?next=/account/apps", "/no-such-page"])
def test_clickjacking_anonymous_pages_refuse_framing(client, world, path):
    assert_unframeable(client.get(path))


def test_clickjacking_csrf_error_page_refuses_framing(client, world):
    client.get("/login")
    response = client.post("/login", data={"email": "alice@example.com", "password": "wrong"})
    assert response.status_code == 400
    assert_unframeable(response)


@pytest.mark.parametrize("path", ["/", "/logout", "/account/apps"])
def test_clickjacking_signed_in_pages_refuse_framing(flow, path):
    response = flow.client.get(path)
    assert response.status_code == 200
    assert_unframeable(response)


def test_clickjacking_consent_page_refuses_framing(flow, register):
    client_id = register()["client_id"]
    response = flow.consent_page(authorize_params(client_id, PKCE()))
    assert response.status_code == 200
    assert_unframeable(response)


def test_clickjacking_authorization_error_page_refuses_framing(flow):
    response = flow.client.get("/oauth/authorize", query_string=authorize_params("no-such-client", PKCE()))
    assert response.status_code == 400
    assert_unframeable(response)


def test_clickjacking_login_page_after_failed_password_refuses_framing(client, world):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "email": "alice@example.com", "password": "wrong pw"})
    assert response.status_code == 200
    assert_unframeable(response)


@pytest.mark.parametrize("method, path", [
    ("get", "/.well-known/oauth-authorization-server"),
    ("post", "/oauth/token"),
    ("post", "/oauth/introspect"),
])
def test_clickjacking_json_endpoints_are_not_html(client, world, method, path):
    response = getattr(client, method)(path)
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
