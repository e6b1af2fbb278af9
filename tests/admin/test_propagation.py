"""Changes made through the admin API (and the CLI) reach tokens and sessions at once: a real token
from the OAuth flow, introspected by the resource server and refreshed by the client, before and
after each change."""

from __future__ import annotations

import pytest
from oauth.support import ALL_READ, assert_oauth_error

from authserver.accounts import DEFAULT_ROLES

from .conftest import assert_api_error

ACME = "10000001"


@pytest.fixture
def connected(flow, register):
    """Alice (signed in on flow.client, admin in Acme) has connected an app: its client id and tokens."""
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == ALL_READ
    assert flow.client.get("/").status_code == 200
    return client_id, tokens


def introspected(flow, tokens) -> dict:
    return flow.introspect(tokens["access_token"]).get_json()


def assert_signed_out(browser):
    response = browser.get("/account/apps")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def assert_cut_off(flow, client_id, tokens):
    """The token is inactive, its refresh fails, and the browser is signed out on its next page."""
    assert introspected(flow, tokens) == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")
    assert_signed_out(flow.client)


def test_disabling_through_the_api_ends_sessions_and_tokens_at_once(api, world, flow, connected):
    client_id, tokens = connected
    response = api.patch(f"/users/{world.alice_id}", json={"disabled": True})
    assert response.status_code == 200 and response.get_json()["disabled"] is True
    assert_cut_off(flow, client_id, tokens)
    # Enabling the account again revives neither: the grants were revoked with their tokens.
    assert api.patch(f"/users/{world.alice_id}", json={"disabled": False}).status_code == 200
    assert introspected(flow, tokens) == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")
    assert api.get(f"/users/{world.alice_id}/grants").get_json() == {"grants": []}


def test_disabling_through_the_cli_ends_sessions_and_tokens_at_once(runner, flow, connected):
    client_id, tokens = connected
    result = runner.invoke(args=["users", "disable", "alice@example.com"])
    assert result.exit_code == 0, result.output
    assert_cut_off(flow, client_id, tokens)


def test_ending_sessions_signs_out_but_keeps_connected_apps(api, world, flow, connected):
    client_id, tokens = connected
    assert api.post(f"/users/{world.alice_id}/sessions/end").status_code == 200
    assert_signed_out(flow.client)
    assert introspected(flow, tokens)["active"] is True
    assert flow.refresh(client_id, tokens["refresh_token"]).status_code == 200


@pytest.mark.app_config(ROLES={**DEFAULT_ROLES, "contacts": ["crm.objects.contacts.read"]})
def test_a_narrower_role_narrows_the_token_on_the_next_introspection_and_refresh(api, world, flow, connected):
    client_id, tokens = connected
    assert api.patch(f"/hubs/{ACME}/members/{world.alice_id}", json={"role": "contacts"}).status_code == 200
    assert introspected(flow, tokens)["scope"] == "crm.objects.contacts.read"
    refreshed = flow.refresh(client_id, tokens["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.get_json()["scope"] == "crm.objects.contacts.read"


def test_a_denied_scope_leaves_the_token_on_the_next_introspection(api, world, flow, connected):
    _, tokens = connected
    path = f"/hubs/{ACME}/members/{world.alice_id}"
    assert api.put(path + "/denied/crm.objects.deals.read").status_code == 200
    assert introspected(flow, tokens)["scope"] == "crm.objects.contacts.read crm.objects.companies.read"
    assert api.patch(path, json={"denied": ["crm.objects.contacts.read", "crm.objects.companies.read"]}
                     ).status_code == 200
    assert introspected(flow, tokens)["scope"] == "crm.objects.deals.read"
    assert api.delete(path + "/denied/crm.objects.contacts.read").status_code == 200
    assert introspected(flow, tokens)["scope"] == "crm.objects.contacts.read crm.objects.deals.read"


def test_removing_the_member_makes_the_token_inactive(api, world, flow, connected):
    client_id, tokens = connected
    assert api.delete(f"/hubs/{ACME}/members/{world.alice_id}").status_code == 204
    assert introspected(flow, tokens) == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")


def test_a_users_grants_are_listed_and_revoked(app, api, world, flow, connected, unchanged):
    client_id, tokens = connected
    grants = api.get(f"/users/{world.alice_id}/grants").get_json()["grants"]
    assert len(grants) == 1
    grant = grants[0]
    assert grant["client_id"] == client_id and grant["client_name"] == "Test MCP Client"
    assert grant["hub_id"] == int(ACME) and grant["user_id"] == world.alice_id
    assert grant["resource"] == "http://127.0.0.1:8001/mcp" and grant["scope"] == ALL_READ

    with unchanged():  # Bob has no such grant: it is not found for him, and nothing is revoked
        assert_api_error(api.delete(f"/users/{world.bob_id}/grants/{grant['id']}"), 404, "not_found", "no grant")
        assert_api_error(api.delete(f"/users/{world.alice_id}/grants/99999999999"), 404, "not_found")
    assert api.delete(f"/users/{world.alice_id}/grants/{grant['id']}").status_code == 204
    assert introspected(flow, tokens) == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")
    assert api.get(f"/users/{world.alice_id}/grants").get_json() == {"grants": []}
    assert api.delete(f"/users/{world.alice_id}/grants/{grant['id']}").status_code == 204  # already done
