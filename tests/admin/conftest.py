"""Fixtures for the admin API: a credential, a back-end client that presents it, and a snapshot of
everything the API can change (to prove a refused request changed nothing)."""

from __future__ import annotations

import base64
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from oauth.conftest import flow, register, world  # noqa: F401  (pytest fixtures)
from sqlalchemy import select

from authserver import admin_credentials
from authserver.extensions import db
from authserver.models import AuditEvent, Grant, Hub, Membership, Token, User

PREFIX = "/admin/api/v1"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def admin(app):
    """An admin credential: its id, secret and Basic header."""
    with app.app_context():
        credential, secret = admin_credentials.create("CRM back end")
        db.session.commit()
        return SimpleNamespace(id=credential.credential_id, secret=secret,
                               headers=basic(credential.credential_id, secret))


class Api:
    """The product's back end: JSON requests under /admin/api/v1 with its credential, no cookies."""

    def __init__(self, client, headers: dict):
        self.client, self.headers = client, headers

    def call(self, method: str, path: str, json=None, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(PREFIX + path, method=method, json=json, headers=headers, **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, json=None, **kwargs):
        return self.call("POST", path, json, **kwargs)

    def patch(self, path, json=None, **kwargs):
        return self.call("PATCH", path, json, **kwargs)

    def put(self, path, json=None, **kwargs):
        return self.call("PUT", path, json, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("DELETE", path, **kwargs)


@pytest.fixture
def api(app, admin):
    """A back end's client of its own (the browser's cookies are never in it)."""
    return Api(app.test_client(use_cookies=False), admin.headers)


def state(app) -> dict:
    """Every row the admin API can change, as plain values."""
    def rows(*columns):
        return sorted(tuple(row) for row in db.session.execute(select(*columns)))

    with app.app_context():
        return {
            "users": rows(User.id, User.email, User.display_name, User.disabled, User.password_hash,
                          User.sessions_ended_at),
            "hubs": rows(Hub.id, Hub.public_id, Hub.name),
            "memberships": [(m.user_id, m.hub_id, m.role, list(m.granted or []), list(m.denied or []))
                            for m in db.session.scalars(select(Membership).order_by(Membership.id))],
            "grants": rows(Grant.id, Grant.revoked_at),
            "tokens": rows(Token.id, Token.revoked_at, Token.access_revoked_at),
            # A refused authentication is recorded (apart from the request), and is no change.
            "audit": [row for row in rows(AuditEvent.id, AuditEvent.event) if row[1] != "admin.auth_failed"],
        }


@pytest.fixture
def unchanged(app):
    """unchanged() -> a context manager asserting that nothing the API can change changed in it."""
    @contextmanager
    def check():
        before = state(app)
        yield
        assert state(app) == before

    return check


def assert_api_error(response, status: int, error: str, *fragments: str) -> dict:
    """An RFC 6749-shaped JSON error with this status and code whose description says `fragments`."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    for fragment in fragments:
        assert fragment in body["error_description"], (fragment, body)
    return body
