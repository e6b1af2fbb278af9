"""Deleting a client deletes everything issued to it, on SQLite as on PostgreSQL (foreign keys
with ON DELETE CASCADE; SQLite enforces them only when asked, see authserver/extensions.py)."""

from __future__ import annotations

from sqlalchemy import func, select

from authserver.extensions import db
from authserver.models import AuthorizationCode, Grant, Token

from .support import ALL_READ


def rows(app, model, client_pk) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(model.client_pk == client_pk))


def test_deleting_a_client_deletes_its_grants_codes_and_tokens(app, client, flow):
    registered = client.post("/oauth/register", json={
        "client_name": "Short-lived", "redirect_uris": ["http://127.0.0.1:7777/callback"],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}).get_json()
    client_id = registered["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    with app.app_context():
        client_pk = db.session.scalar(select(Grant.client_pk))
    assert rows(app, Grant, client_pk) == 1 and rows(app, Token, client_pk) == 1
    assert rows(app, AuthorizationCode, client_pk) == 1

    response = client.delete(f"/oauth/register/{client_id}",
                             headers={"Authorization": f"Bearer {registered['registration_access_token']}"})
    assert response.status_code == 204
    assert rows(app, Grant, client_pk) == 0 and rows(app, Token, client_pk) == 0
    assert rows(app, AuthorizationCode, client_pk) == 0
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}

    # A client registered next (which SQLite may give the same row id) inherits nothing.
    newcomer = client.post("/oauth/register", json={
        "client_name": "Newcomer", "redirect_uris": ["http://127.0.0.1:7777/callback"],
        "token_endpoint_auth_method": "none"}).get_json()["client_id"]
    assert flow.refresh(newcomer, tokens["refresh_token"]).status_code == 400
    assert "Newcomer" not in flow.client.get("/account/apps").get_data(as_text=True)
