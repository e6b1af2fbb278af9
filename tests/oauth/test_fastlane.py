"""The introspection lane answers exactly as the Flask endpoint does, only faster; whatever it does
not fully understand reaches Flask untouched."""

from __future__ import annotations

import base64

import pytest
from werkzeug.test import Client as WSGIClient

from authserver import store
from authserver.fastlane import FastLane
from authserver.extensions import db

from .support import RESOURCE

#: Headers a resource server may rely on; both paths must send the same values.
COMPARED_HEADERS = ("Content-Type", "Cache-Control", "Pragma", "X-Content-Type-Options", "Referrer-Policy")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def paths(app):
    """(lane, flask, calls): WSGI clients for the app with and without the lane, and the requests
    that reached Flask through the lane."""
    lane = app.wsgi_app
    assert isinstance(lane, FastLane)
    calls = []
    inner = lane.wsgi_app

    def counting(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    lane.wsgi_app = counting
    return WSGIClient(lane), WSGIClient(inner), calls


def _same(a, b):
    assert a.status_code == b.status_code
    assert a.get_json() == b.get_json()
    for header in COMPARED_HEADERS:
        assert a.headers.get(header) == b.headers.get(header), header
    assert a.headers["X-Request-Id"] and b.headers["X-Request-Id"]


def _requests(world, tokens, other_token):
    mcp = world.mcp_auth["Authorization"]
    form = "application/x-www-form-urlencoded"
    return {
        # name: (headers, body, answered by the lane)
        "active": ({"Authorization": mcp}, f"token={tokens['access_token']}", True),
        "with a hint": ({"Authorization": mcp}, f"token={tokens['access_token']}&token_type_hint=access_token", True),
        "refresh token": ({"Authorization": mcp}, f"token={tokens['refresh_token']}", True),
        "unknown token": ({"Authorization": mcp}, "token=ast_unknown", True),
        "another audience": ({"Authorization": world.other_auth["Authorization"]}, f"token={tokens['access_token']}", True),
        "foreign token": ({"Authorization": mcp}, f"token={other_token}", True),
        "repeated token": ({"Authorization": mcp}, f"token={tokens['access_token']}&token=x", False),
        "no token": ({"Authorization": mcp}, "token_type_hint=access_token", False),
        "empty token": ({"Authorization": mcp}, "token=", False),
        "wrong secret": ({"Authorization": _basic("rs_nope", "wrong")}, f"token={tokens['access_token']}", False),
        "no credentials": ({}, f"token={tokens['access_token']}", False),
        "bearer": ({"Authorization": "Bearer x"}, f"token={tokens['access_token']}", False),
        "NUL": ({"Authorization": mcp}, "token=a%00b", False),
        "non-ASCII": ({"Authorization": mcp}, "token=%C3%A9", False),
        "JSON body": ({"Authorization": mcp, "Content-Type": "application/json"}, '{"token": "x"}', False),
    }, form


@pytest.mark.parametrize("limits", [
    pytest.param(True, id="limits on"),
    pytest.param(False, id="limits lifted", marks=pytest.mark.app_config(RATELIMIT_ENABLED=False)),
])
def test_lane_answers_clean_requests_exactly_as_flask_and_passes_the_rest(limits, app, flow, register, world, paths):
    lane, flask, calls = paths
    tokens = flow.tokens(register()["client_id"])
    other_client = register(client_name="Other")["client_id"]
    code, pkce, _ = flow.get_code(other_client, resource="https://other.example/mcp", scope="crm.objects.contacts.read")
    other = flow.exchange(other_client, code, pkce, resource="https://other.example/mcp").get_json()["access_token"]
    requests, form = _requests(world, tokens, other)
    for name, (headers, body, answered) in requests.items():
        headers = {"Content-Type": form, **headers}
        calls.clear()
        fast = lane.post("/oauth/introspect", data=body, headers=headers)
        assert calls == ([] if answered else ["/oauth/introspect"]), name
        _same(fast, flask.post("/oauth/introspect", data=body, headers=headers))


def test_lane_sees_revocation_and_permission_changes_at_once(app, flow, register, world, paths):
    lane, _, calls = paths
    tokens = flow.tokens(register()["client_id"])
    headers = world.mcp_auth

    def answer():
        return lane.post("/oauth/introspect", data={"token": tokens["access_token"]}, headers=headers).get_json()

    assert answer()["active"] is True
    from authserver import accounts

    with app.app_context():
        accounts.deny_permission(accounts.get_user(world.alice_id), accounts.get_hub(10000001), "crm.objects.contacts.write")
        db.session.commit()
    assert answer()["scope"] == "crm.objects.contacts.read"
    assert flow.client.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": flow_client_id(app)}).status_code == 200
    assert answer() == {"active": False}
    assert "/oauth/introspect" not in calls


def flow_client_id(app) -> str:
    from sqlalchemy import select

    from authserver.models import Client

    with app.app_context():
        return db.session.scalar(select(Client.client_id))


@pytest.mark.app_config(RATELIMIT_ENABLED=False)
def test_lane_takes_one_statement_per_introspection(app, flow, register, world, paths, statements):
    lane, _, _ = paths
    token = flow.tokens(register()["client_id"])["access_token"]
    lane.post("/oauth/introspect", data={"token": token}, headers=world.mcp_auth)  # caller now known
    with statements() as seen:
        assert lane.post("/oauth/introspect", data={"token": token}, headers=world.mcp_auth).get_json()["active"]
    assert len(seen) == 1, seen
    assert "FROM tokens" in seen[0] and "WHERE" in seen[0]


def test_rotated_resource_secret_works_at_once_and_the_old_one_does_not(app, flow, register, world):
    token = flow.tokens(register()["client_id"])["access_token"]
    assert flow.introspect(token).get_json()["active"]
    from authserver import resources

    with app.app_context():
        resource = resources.get_by_uri(RESOURCE)
        credential_id = resource.credential_id
        new = resources.rotate_secret(resource)
        db.session.commit()
    old_headers = world.mcp_auth
    assert flow.introspect(token, auth=old_headers).status_code == 401
    assert flow.introspect(token, auth={"Authorization": _basic(credential_id, new)}).get_json()["active"]


def test_store_reads_outside_a_transaction(app, flow, register, world):
    """The introspection read leaves no transaction open (nothing to commit, no lock held)."""
    token = flow.tokens(register()["client_id"])["access_token"]
    with app.app_context():
        from authserver.secrets import sha256_hex

        row = store.get_introspection_row(sha256_hex(token), world.mcp_id)
        assert row is not None and row.audience == RESOURCE
        assert not db.session().in_transaction()
