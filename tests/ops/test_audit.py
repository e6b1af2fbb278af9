"""The audit trail: the events an operator and a person need, each with who, which hub and client,
IP and request id, and never a credential in the detail."""

from __future__ import annotations

import json

from logscan import CREDENTIAL
from oauth.support import ALL_READ, PASSWORD, csrf_token

from authserver import accounts
from authserver.extensions import db
from authserver.models import AuditEvent


def all_events(app) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id)))
        db.session.expunge_all()
        return rows


def test_the_lifecycle_is_recorded(app, client, flow, register):
    flow.client.post("/login", data={"csrf_token": csrf_token(client.get("/login").get_data(as_text=True)),
                                     "email": "alice@example.com", "password": "wrong"})
    registered = client.post("/oauth/register", json={
        "client_name": "Audited", "redirect_uris": ["http://127.0.0.1:7777/callback"],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}).get_json()
    client_id = registered["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    flow.refresh(client_id, tokens["refresh_token"])
    app.config["REPLAY_GRACE_SECONDS"] = 0
    # Reuse of the rotated token (not an identical retry): revokes the grant.
    flow.refresh(client_id, tokens["refresh_token"], scope="crm.objects.contacts.read")
    headers = {"Authorization": f"Bearer {registered['registration_access_token']}"}
    client.put(f"/oauth/register/{client_id}", json={**{k: v for k, v in registered.items() if k not in (
        "registration_access_token", "registration_client_uri", "client_id_issued_at")}, "client_name": "Audited 2"},
        headers=headers)
    client.delete(f"/oauth/register/{client_id}", headers=headers)
    with app.app_context():
        bob = accounts.get_user_by_email("bob@example.com")
        accounts.set_role(bob, accounts.get_hub("10000001"), "viewer")
        db.session.commit()

    names = [e.event for e in all_events(app)]
    for expected in ("login.failure", "login.success", "client.registered", "consent.granted", "token.issued",
                     "token.refresh_reuse", "grant.revoked", "client.updated", "client.deleted",
                     "membership.role_changed"):
        assert expected in names, (expected, names)

    granted = next(e for e in all_events(app) if e.event == "consent.granted")
    assert granted.user_id is not None and granted.hub_id == 10000001 and granted.client_id == client_id
    assert granted.ip == "127.0.0.1" and granted.request_id and len(granted.request_id) >= 8


def test_no_credential_in_any_event(app, flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    flow.refresh(client_id, tokens["refresh_token"])
    dumped = json.dumps([[e.event, e.detail, e.client_id] for e in all_events(app)])
    assert tokens["access_token"] not in dumped and tokens["refresh_token"] not in dumped
    assert PASSWORD not in dumped and not CREDENTIAL.search(dumped)
