"""Threat 12: scope escalation at refresh and after a change of permissions (RFC 6749 §6;
RFC 9700 §2.3 privilege restriction; the product's live-permissions rule).

Defence: a refresh can only narrow the consented scope (grants.RefreshTokenGrant: the requested
scope is intersected with the grant; nothing in common is invalid_scope — deliberately lenient
for clients that resend their original request scope); every refresh and every introspection is
re-intersected with what the user may do in the hub right now (grants.live_scope,
introspection._payload)."""

from __future__ import annotations

from oauth.support import assert_oauth_error

from authserver import accounts
from authserver.extensions import db

READ, WRITE = "crm.objects.contacts.read", "crm.objects.contacts.write"


def _set_role(app, world, hub, role):
    with app.app_context():
        accounts.set_role(accounts.get_user(world.alice_id), accounts.get_hub(hub), role)
        db.session.commit()


def test_scope_escalation_refresh_asking_only_for_ungranted_scope_refused(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=READ, scopes=[READ])
    response = flow.refresh(client_id, tokens["refresh_token"], scope="crm.objects.deals.write")
    assert_oauth_error(response, "invalid_scope")


def test_scope_escalation_refresh_with_wider_scope_is_not_widened(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=READ, scopes=[READ])
    wider = flow.refresh(client_id, tokens["refresh_token"], scope=f"{READ} {WRITE} crm.objects.deals.write")
    assert wider.status_code == 200
    assert wider.get_json()["scope"] == READ
    assert flow.introspect(wider.get_json()["access_token"]).get_json()["scope"] == READ


def test_scope_escalation_refresh_with_narrower_scope_allowed(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scopes=[READ, WRITE])
    narrowed = flow.refresh(client_id, tokens["refresh_token"], scope=READ)
    assert narrowed.status_code == 200 and narrowed.get_json()["scope"] == READ


def test_scope_escalation_role_downgrade_narrows_refresh_and_introspection(app, flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, hub="10000001", scopes=[READ, WRITE])  # alice: admin in Acme
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == f"{READ} {WRITE}"
    _set_role(app, world, 10000001, "viewer")
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == READ
    refreshed = flow.refresh(client_id, tokens["refresh_token"])
    assert refreshed.get_json()["scope"] == READ
    # Asking for the lost permission explicitly gets nothing.
    assert_oauth_error(flow.refresh(client_id, refreshed.get_json()["refresh_token"], scope=WRITE), "invalid_grant")


def test_scope_escalation_role_downgrade_removing_every_granted_scope_deactivates(app, flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, hub="10000001", scope=WRITE, scopes=[WRITE])
    _set_role(app, world, 10000001, "viewer")
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")


def test_scope_escalation_role_upgrade_does_not_exceed_consent(app, flow, register, world):
    client_id = register()["client_id"]
    # Viewer in Globex: the app asked for read and write, the consent could only give read.
    tokens = flow.tokens(client_id, hub="10000002", scopes=[READ, WRITE])
    _set_role(app, world, 10000002, "admin")
    refreshed = flow.refresh(client_id, tokens["refresh_token"], scope=f"{READ} {WRITE}")
    assert refreshed.get_json()["scope"] == READ
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["scope"] == READ
