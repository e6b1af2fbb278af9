"""The introspection lane answers exactly as the Flask endpoint does, only faster; whatever it does
not fully understand reaches Flask untouched."""

from __future__ import annotations

import base64

import pytest

from authserver import changes, store
from authserver.extensions import db

from .support import REDIRECT_URI, RESOURCE

#: Headers a resource server may rely on; both paths must send the same values.
COMPARED_HEADERS = ("Content-Type", "Cache-Control", "Pragma", "X-Content-Type-Options", "Referrer-Policy")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


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
def test_lane_takes_one_statement_per_introspection(app, flow, register, world, paths, statements, db_backend):
    """One statement for a token's first introspection; none for a repeat on PostgreSQL, whose
    workers keep the rows of active answers (authserver/changes.py); one again on SQLite."""
    lane, _, _ = paths
    first, token = (flow.tokens(register()["client_id"])["access_token"] for _ in range(2))
    lane.post("/oauth/introspect", data={"token": first}, headers=world.mcp_auth)  # caller now known
    if db_backend == "postgresql":
        with app.app_context():
            assert changes.cache(app, db.engine).feed.listening.wait(10)
    with statements() as seen:
        assert lane.post("/oauth/introspect", data={"token": token}, headers=world.mcp_auth).get_json()["active"]
    assert len(seen) == 1, seen
    assert "FROM tokens" in seen[0] and "WHERE" in seen[0]
    with statements() as again:
        assert lane.post("/oauth/introspect", data={"token": token}, headers=world.mcp_auth).get_json()["active"]
    assert len(again) == (0 if db_backend == "postgresql" else 1), again


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
        assert row is not None and row.client_id
        assert not db.session().in_transaction()


# --- the token endpoint ------------------------------------------------------------------------
TOKEN_HEADERS = ("Content-Type", "Cache-Control", "Pragma", "X-Content-Type-Options", "Referrer-Policy",
                 "Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods")


def _token_answers_alike(a, b):
    assert a.status_code == b.status_code == 200
    assert set(a.get_json()) == set(b.get_json())
    assert a.get_json()["scope"] == b.get_json()["scope"] and a.get_json()["expires_in"] == b.get_json()["expires_in"]
    for header in TOKEN_HEADERS:
        assert a.headers.get(header) == b.headers.get(header), header


def test_lane_completes_clean_exchanges_and_refreshes_like_flask(app, flow, register, world, paths):
    lane, flask, calls = paths
    client_id = register()["client_id"]

    def exchange(through):
        code, pkce, _ = flow.get_code(client_id)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "client_id": client_id, "code_verifier": pkce.verifier, "resource": RESOURCE}
        calls.clear()
        return through.post("/oauth/token", data=form)

    by_lane, by_flask = exchange(lane), exchange(flask)
    assert calls == []
    _token_answers_alike(by_lane, by_flask)
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    fast = lane.post("/oauth/token", data={**refresh, "refresh_token": by_lane.get_json()["refresh_token"]})
    slow = flask.post("/oauth/token", data={**refresh, "refresh_token": by_flask.get_json()["refresh_token"]})
    assert calls == []
    _token_answers_alike(fast, slow)
    # What the lane issued works like anything else: introspection, and the next refresh.
    assert flow.introspect(fast.get_json()["access_token"]).get_json()["active"] is True
    assert flow.introspect(by_lane.get_json()["access_token"]).get_json() == {"active": False}  # rotated
    again = lane.post("/oauth/token", data={**refresh, "refresh_token": fast.get_json()["refresh_token"]})
    assert again.status_code == 200 and calls == []


def _token_state(app) -> list:
    """Everything the token endpoint may write, as comparable values."""
    from sqlalchemy import select

    from authserver.models import AuditEvent, AuthorizationCode, Grant, Token

    with app.app_context():
        return [
            sorted((t.grant_id, t.scope, t.rotated_at is not None, t.revoked_at is not None,
                    t.access_revoked_at is not None, t.replay) for t in db.session.scalars(select(Token))),
            sorted((c.id, c.consumed_at is not None, c.replay) for c in db.session.scalars(select(AuthorizationCode))),
            sorted((g.id, g.revoked_at is not None) for g in db.session.scalars(select(Grant))),
            sorted(e.event for e in db.session.scalars(select(AuditEvent))),
        ]


@pytest.mark.parametrize("case", ["wrong verifier", "replayed code", "rotated refresh token after grace",
                                  "refresh retried in grace", "secret from a public client", "unknown refresh token",
                                  "missing refresh_token", "scope never granted"])
def test_lane_leaves_every_other_token_request_to_flask_and_writes_nothing(case, app, flow, register, world, paths):
    """Whatever the lane started is rolled back and Flask decides: the answer and every row are
    what Flask alone makes of the request."""
    from .support import PKCE

    lane, _, calls = paths
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "client_id": client_id, "code_verifier": pkce.verifier, "resource": RESOURCE}
    tokens = flow.client.post("/oauth/token", data=exchange).get_json()
    refresh = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]}
    if case in ("rotated refresh token after grace", "refresh retried in grace"):
        assert flow.client.post("/oauth/token", data=refresh).status_code == 200
        if case == "rotated refresh token after grace":
            from security.support import age_rotation

            age_rotation(app, tokens["refresh_token"], 60)
    form = {
        "wrong verifier": {**exchange, "code_verifier": PKCE().verifier},
        "replayed code": {**exchange, "code_verifier": pkce.verifier},
        "rotated refresh token after grace": refresh,
        "refresh retried in grace": refresh,
        "secret from a public client": {**refresh, "client_secret": "ass_x"},
        "unknown refresh token": {**refresh, "refresh_token": "asr_unknown"},
        "missing refresh_token": {k: v for k, v in refresh.items() if k != "refresh_token"},
        "scope never granted": {**refresh, "scope": "crm.objects.tickets.write"},
    }[case]
    if case == "wrong verifier":
        code, pkce, _ = flow.get_code(client_id)
        form = {**exchange, "code": code, "code_verifier": PKCE().verifier}
    before = _token_state(app)
    calls.clear()
    calls.snapshot = lambda: _token_state(app)
    answer = lane.post("/oauth/token", data=form)
    assert calls == ["/oauth/token"]  # Flask decided...
    assert calls.seen_by_flask == before  # ...on the state as it was: the lane left no trace
    assert answer.status_code in (200, 400, 401)
    if answer.status_code != 200:
        assert answer.get_json()["error"]


@pytest.mark.app_config(TOKEN_RATE_LIMIT="3 per minute", TOKEN_RATE_LIMIT_PER_IP="1000 per minute")
def test_a_request_the_lane_passes_on_counts_once_against_its_client(app, flow, preregistered, paths):
    lane, _, calls = paths
    client_id, secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    # Authenticated, then refused (a wrong verifier): the lane counts the client, rolls back and
    # passes the request on; Flask must not count it again.
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": "x" * 43, "resource": RESOURCE}
    statuses = [lane.post("/oauth/token", data=form, auth=(client_id, secret)).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


@pytest.mark.app_config(TOKEN_RATE_LIMIT_PER_IP="3 per minute")
def test_a_request_the_lane_passes_on_counts_once_against_its_address(app, flow, register, paths):
    lane, _, _ = paths
    client_id = register()["client_id"]
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": "asr_unknown"}
    assert [lane.post("/oauth/token", data=form).status_code for _ in range(4)] == [400, 400, 400, 429]


REGISTRATION_HEADERS = ("Content-Type", "Cache-Control", "Pragma", "X-Content-Type-Options", "Referrer-Policy",
                        "Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods")


def test_lane_registers_like_flask_and_passes_refusals_on(app, paths):
    lane, flask, calls = paths
    public = {"client_name": "Lane", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
              "grant_types": ["authorization_code", "refresh_token"]}
    for metadata in (public, {**public, "token_endpoint_auth_method": "client_secret_basic"}):
        calls.clear()
        fast = lane.post("/oauth/register", json=metadata)
        assert calls == []  # answered by the lane
        slow = flask.post("/oauth/register", json={**metadata, "client_name": "Flask"})
        assert fast.status_code == slow.status_code == 201
        assert set(fast.get_json()) == set(slow.get_json())
        for header in REGISTRATION_HEADERS:
            assert fast.headers.get(header) == slow.headers.get(header), header
        assert fast.headers["X-Request-Id"]
    # An identical public client through the lane is the same client, handed over as by the view.
    first = lane.post("/oauth/register", json={**public, "client_name": "Twice"}).get_json()
    again = flask.post("/oauth/register", json={**public, "client_name": "Twice"}).get_json()
    assert again["client_id"] == first["client_id"] and "registration_access_token" not in again
    # Refusals, a query string or a registration token, and bodies that are not JSON: Flask's.
    for kwargs in ({"json": {**public, "redirect_uris": ["javascript:alert(1)"]}},
                   {"data": "{not json", "content_type": "application/json"},
                   {"json": public, "query_string": {"x": "1"}},
                   {"json": public, "headers": {"Authorization": "Bearer x"}}):
        calls.clear()
        answer = lane.post("/oauth/register", **kwargs)
        assert calls == ["/oauth/register"], kwargs
        assert answer.status_code in (201, 400, 401), kwargs
    with app.app_context():
        from authserver.models import Client

        assert db.session.scalar(db.select(db.func.count()).select_from(Client)) == 5  # 2 + 2 + Twice: the later identical ones were handed over


def test_lane_registers_without_a_request_context_and_audits_as_flask(app, paths, monkeypatch):
    # The lane reads the request from the environ (registration.WSGIRegistrationRequest): no
    # Flask request is built or pushed, and the audit trail names the same address and request id.
    from flask.ctx import RequestContext

    from authserver.models import AuditEvent

    lane, flask, calls = paths
    pushed = []
    push = RequestContext.push
    monkeypatch.setattr(RequestContext, "push", lambda self: (pushed.append(self), push(self))[1])
    public = {"client_name": "Audited", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    ids = []
    for client, name, address in ((lane, "lane", "203.0.113.7"), (flask, "flask", "203.0.113.8")):
        response = client.post("/oauth/register", json={**public, "client_name": name},
                               headers={"X-Request-Id": f"{name}-registration"}, environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 201 and response.headers["X-Request-Id"] == f"{name}-registration"
        ids.append(response.get_json()["client_id"])
        if client is lane:
            assert calls == [] and pushed == []
    assert len(pushed) == 1  # the Flask path's own request
    with app.app_context():
        events = {e.client_id: (e.event, e.ip, e.request_id, e.detail) for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.client_id.in_(ids)))}
    assert events == {
        client_id: ("client.registered", address, f"{name}-registration",
                    {"client_name": name, "redirect_uris": [REDIRECT_URI]})
        for client_id, name, address in zip(ids, ("lane", "flask"), ("203.0.113.7", "203.0.113.8"))
    }


def test_the_lane_registration_request_tells_the_url_flask_would(app):
    from flask import request

    from authserver.oauth.registration import WSGIRegistrationRequest

    with app.test_request_context("/oauth/register?x=1", method="POST", base_url="https://auth.test",
                                  json={"client_name": "x"}):
        built = WSGIRegistrationRequest(request.environ, b"{}", {}, "id")
        assert built.uri == request.url == "https://auth.test/oauth/register?x=1"
        assert built.method == "POST" and built.remote_addr == request.remote_addr
        assert dict(built.headers) == dict(request.headers)


@pytest.mark.app_config(REGISTRATION_RATE_LIMIT_PER_IP="2 per minute")
def test_a_registration_the_lane_passes_on_counts_once_against_its_address(paths):
    lane, _, calls = paths
    statuses = [lane.post("/oauth/register", json={"client_name": f"C{n}", "redirect_uris": [REDIRECT_URI],
                                                  "token_endpoint_auth_method": "none"}).status_code
                for n in range(3)]
    assert statuses == [201, 201, 429] and calls == ["/oauth/register"]
