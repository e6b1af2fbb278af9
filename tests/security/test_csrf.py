"""Threat 5: cross-site request forgery on login, consent and revoke (RFC 9700 §4.7, §4.2.4 on
consent; OWASP login CSRF).

Defence: every state-changing form carries a session-bound CSRF token (Flask-WTF); a missing,
forged or foreign token is a 400 page and nothing happens."""

from __future__ import annotations

import re

import pytest
from oauth.support import PASSWORD, PKCE, authorize_params, csrf_token

from .support import browser, nothing_issued, signed_in

APPS = "/account/apps"


def _attackers_token(app) -> str:
    """A valid CSRF token, but from the attacker's own browser session."""
    return csrf_token(app.test_client().get("/login").get_data(as_text=True))


def _assert_csrf_page(response):
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    assert "This form has expired" in response.get_data(as_text=True)


@pytest.mark.parametrize("token", ["missing", "forged", "from another session"])
def test_csrf_login_without_valid_token_refused(app, client, world, token):
    client.get("/login")
    data = {"email": "alice@example.com", "password": PASSWORD}
    if token == "forged":
        data["csrf_token"] = "IjVmM2Q0ZTU2N2E4YjkwIg.forged.signature"
    elif token == "from another session":
        data["csrf_token"] = _attackers_token(app)
    _assert_csrf_page(client.post("/login", data=data))
    assert not signed_in(client)


@pytest.mark.parametrize("token", ["missing", "forged", "from another session"])
def test_csrf_consent_without_valid_token_issues_no_code(app, flow, register, world, token):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    flow.consent_page(params)  # the victim's session has a CSRF secret
    data = {"hub": "10000001", "scope": ["crm.objects.contacts.read"], "decision": "allow"}
    if token == "forged":
        data["csrf_token"] = "forged"
    elif token == "from another session":
        bob = browser(app, world, "bob@example.com")
        data["csrf_token"] = csrf_token(bob.consent_page(params).get_data(as_text=True))
    _assert_csrf_page(flow.client.post("/oauth/authorize", query_string=params, data=data))
    assert nothing_issued(app)


def test_csrf_consent_decision_in_a_get_request_is_ignored(app, flow, register):
    """A link (GET) carrying the form's fields only shows the consent page."""
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), hub="10000001", decision="allow")
    response = flow.client.get("/oauth/authorize", query_string=params)
    assert response.status_code == 200 and "Location" not in response.headers
    assert nothing_issued(app)


@pytest.mark.parametrize("token", ["missing", "forged", "from another session"])
def test_csrf_revoke_without_valid_token_keeps_the_grant(app, flow, register, world, token):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    [action] = re.findall(r'action="(/account/apps/\d+/revoke)"', flow.client.get(APPS).get_data(as_text=True))
    data = {}
    if token == "forged":
        data["csrf_token"] = "forged"
    elif token == "from another session":
        bob = browser(app, world, "bob@example.com")
        data["csrf_token"] = csrf_token(bob.client.get(APPS).get_data(as_text=True))
    _assert_csrf_page(flow.client.post(action, data=data))
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True
    assert action in flow.client.get(APPS).get_data(as_text=True)
