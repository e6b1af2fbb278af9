"""The connected-apps page: grants per hub, recent activity, and revoking a grant with its tokens."""

from __future__ import annotations

import re

import pytest
from oauth.support import ALL_READ, PASSWORD, assert_oauth_error, csrf_token

APPS = "/account/apps"


def assert_private_page(response):
    """Pages for people: never framed, never cached."""
    assert response.mimetype == "text/html"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


def revoke_forms(html: str) -> list[str]:
    return re.findall(r'action="(/account/apps/\d+/revoke)"', html)


def test_requires_login(client):
    response = client.get(APPS)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Faccount%2Fapps"


def test_lists_grants_per_hub_with_what_a_person_needs_to_decide(flow, register):
    claude = register(client_name="Claude Desktop")["client_id"]
    cursor = register(client_name="Cursor")["client_id"]
    flow.tokens(claude, hub="10000001", scope=ALL_READ)
    flow.tokens(cursor, hub="10000002", scope="crm.objects.contacts.read", scopes=["crm.objects.contacts.read"])

    response = flow.client.get(APPS)
    assert response.status_code == 200
    assert_private_page(response)
    html = response.get_data(as_text=True)
    acme, globex = html.index("Acme"), html.index("Globex")
    assert acme < html.index("Claude Desktop") < globex < html.index("Cursor"), "grants are grouped under their hub"
    assert html.count('class="redirect-host">127.0.0.1:7777<') == 2
    assert "View your deals" in html and "crm.objects.deals.read" in html
    assert "CRM MCP" in html and "http://127.0.0.1:8001/mcp" in html
    assert "Last used" in html and " UTC</time>" in html
    assert len(revoke_forms(html)) == 2
    assert csrf_token(html)
    # Recent activity: the consents just given.
    assert "consent.granted" in html and '<td class="client-id">Claude Desktop</td>' in html
    assert claude not in html  # people see names, not client ids


def test_shows_only_the_signed_in_users_grants(flow, register, client):
    claude = register(client_name="Claude Desktop")["client_id"]
    flow.tokens(claude, hub="10000001", scope=ALL_READ)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/logout").get_data(as_text=True))})
    flow.login("bob@example.com")
    html = client.get(APPS).get_data(as_text=True)
    assert "Claude Desktop" not in html
    assert "You haven't connected any apps yet." in html
    assert revoke_forms(html) == []


def test_revoke_ends_the_grant_and_every_token_at_once(flow, register):
    claude = register(client_name="Claude Desktop")["client_id"]
    tokens = flow.tokens(claude, hub="10000001", scope=ALL_READ)
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True

    page = flow.client.get(APPS).get_data(as_text=True)
    [action] = revoke_forms(page)
    response = flow.client.post(action, data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303
    assert response.headers["Location"] == APPS

    after = flow.client.get(APPS).get_data(as_text=True)
    assert "Claude Desktop can no longer access Acme" in after
    assert revoke_forms(after) == []
    assert "grant.revoked" in after
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}
    assert_oauth_error(flow.refresh(claude, tokens["refresh_token"]), "invalid_grant")

    # Revoking again is harmless: same notice, nothing else to do.
    again = flow.client.post(action, data={"csrf_token": csrf_token(page)})
    assert again.status_code == 303


def test_revoke_needs_the_csrf_token(flow, register):
    claude = register(client_name="Claude Desktop")["client_id"]
    tokens = flow.tokens(claude, hub="10000001", scope=ALL_READ)
    [action] = revoke_forms(flow.client.get(APPS).get_data(as_text=True))
    for data in ({}, {"csrf_token": "forged"}):
        response = flow.client.post(action, data=data)
        assert response.status_code == 400
        assert response.mimetype == "text/html"
        assert "This form has expired" in response.get_data(as_text=True)
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True


def test_another_users_grant_is_not_found(app, flow, register, world):
    claude = register(client_name="Claude Desktop")["client_id"]
    tokens = flow.tokens(claude, hub="10000001", scope=ALL_READ)
    [action] = revoke_forms(flow.client.get(APPS).get_data(as_text=True))

    mallory = app.test_client()
    page = mallory.get("/login").get_data(as_text=True)
    mallory.post("/login", data={"csrf_token": csrf_token(page), "email": "bob@example.com", "password": PASSWORD})
    token = csrf_token(mallory.get(APPS).get_data(as_text=True))
    for target in (action, "/account/apps/999999/revoke"):
        response = mallory.post(target, data={"csrf_token": token})
        assert response.status_code == 404
        assert_private_page(response)
        assert "There is no such connected app in your account." in response.get_data(as_text=True)
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True


@pytest.mark.parametrize("method, path, status", [
    ("get", "/account/apps/1/revoke", 405),
    ("post", "/account/apps/not-a-number/revoke", 404),
])
def test_bad_requests_get_a_page_not_a_crash(flow, method, path, status):
    response = getattr(flow.client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"


def test_consent_page_sends_csrf_token_and_refuses_framing_and_caching(flow, register):
    from oauth.support import PKCE, authorize_params

    claude = register(client_name="Claude Desktop")["client_id"]
    response = flow.consent_page(authorize_params(claude, PKCE(), scope=ALL_READ))
    assert response.status_code == 200
    assert_private_page(response)
    assert csrf_token(response.get_data(as_text=True))
