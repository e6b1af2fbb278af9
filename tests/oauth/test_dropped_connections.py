"""No pre-ping on checkout (it would cost a round trip on every request): when PostgreSQL drops
every connection (a restart, a failover), the first statement that meets a dead connection retires
the whole pool, so at most one request per worker fails and introspection retries its read."""

from __future__ import annotations

import psycopg
import pytest

from authserver.extensions import db
from conftest import dispose

from .support import REDIRECT_URI, RESOURCE


@pytest.fixture
def drop_connections(app, _schema_app):
    """drop_connections() -> terminate every backend of the app's database, as a restart would
    (afterwards the suite's own schema connection is replaced too)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        pytest.skip("dropped server connections are a PostgreSQL matter")
    with app.app_context():
        name = db.engine.url.database
        admin = db.engine.url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    yield drop
    dispose(_schema_app)


def test_introspection_survives_dropped_connections(app, flow, register, drop_connections):
    token = flow.tokens(register()["client_id"])["access_token"]
    assert flow.introspect(token).get_json()["active"] is True
    drop_connections()
    assert flow.introspect(token).get_json()["active"] is True


def test_a_token_request_after_dropped_connections_fails_at_most_once(app, flow, register, drop_connections):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    drop_connections()
    statuses = []
    for _ in range(3):
        response = flow.client.post("/oauth/token", data={**refresh, "refresh_token": tokens["refresh_token"]})
        statuses.append(response.status_code)
        if response.status_code == 200:
            tokens = response.get_json()
    assert statuses.count(200) >= 2 and statuses[-1] == 200, statuses
    code, pkce, _ = flow.get_code(client_id)
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "client_id": client_id, "code_verifier": pkce.verifier, "resource": RESOURCE}
    assert flow.client.post("/oauth/token", data=exchange).status_code == 200
