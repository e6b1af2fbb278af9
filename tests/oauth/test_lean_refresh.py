"""The lane's lean refresh and code exchange (oauth/grants.py LeanRefresh, LeanExchange) write and
answer what the Authlib grants do (RFC 6749 §4.1.3 and §6, rotation per OAuth 2.1 §4.3.1), for each
way a client authenticates, and step aside for everything else: two token families, one made by
the lane and the other by Flask alone, must end alike row for row."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from authserver.extensions import db
from authserver.models import AuditEvent, Client, Grant, Token
from authserver.secrets import sha256_hex

from .support import PKCE, REDIRECT_URI, RESOURCE, authorize_params, query
from .test_statement_counts_token import REFRESH, _named

LONG_AGO = datetime(2020, 1, 1)


def _exchange(flow, client_id, auth):
    pkce = PKCE()
    params = authorize_params(client_id, pkce, scope="crm.objects.contacts.read crm.objects.deals.read")
    answer = flow.consent_page(params)  # a confidential client's consent is remembered the second time
    answer = answer if answer.status_code == 302 else flow.decide(params)
    code = query(answer.headers["Location"])["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier, "resource": RESOURCE}
    response = flow.client.post("/oauth/token", data={**form, **auth["form"]}, auth=auth["basic"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _written(app, old_refresh: str, request_id: str) -> dict:
    """What a refresh of `old_refresh` left: the old row, the new one, its audit event, the
    client's and grant's last-used times (as comparable values)."""
    with app.app_context():
        old = db.session.scalar(select(Token).where(Token.refresh_token_hash == sha256_hex(old_refresh)))
        new = db.session.scalar(select(Token).where(Token.parent_id == old.id))
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.request_id == request_id))
        grant = db.session.get(Grant, new.grant_id)
        client = db.session.get(Client, new.client_pk)
        return {
            "old": (old.rotated_at is not None, old.access_revoked_at is not None, old.revoked_at, old.replay is not None),
            "new": (new.grant_id, new.code_id is not None and new.code_id == old.code_id, new.client_pk, new.scope,
                    new.authorized_scope, new.auth_time == old.auth_time, new.rotated_at, new.revoked_at,
                    new.access_revoked_at, new.access_expires_at - new.issued_at,
                    new.refresh_expires_at - new.issued_at, new.replay),
            "event": (event.event, event.user_id, event.hub_id, event.client_id, event.ip, event.detail),
            "touched": (client.last_used_at > LONG_AGO, grant.last_used_at > LONG_AGO),
        }

def _client_authenticating_by(method: str, app, register, preregistered) -> tuple[str, dict]:
    """A client that authenticates at the token endpoint by `method`, and how it does (form
    fields, Basic credentials)."""
    if method == "none":
        client_id = register()["client_id"]
        return client_id, {"form": {"client_id": client_id}, "basic": None}
    client_id, secret = preregistered()
    if method == "client_secret_post":
        with app.app_context():
            client = db.session.scalar(select(Client).where(Client.client_id == client_id))
            client.client_metadata = {**client.client_metadata, "token_endpoint_auth_method": method}
            db.session.commit()
        return client_id, {"form": {"client_id": client_id, "client_secret": secret}, "basic": None}
    return client_id, {"form": {}, "basic": (client_id, secret)}


@pytest.mark.parametrize("method", ["none", "client_secret_basic", "client_secret_post"])
def test_a_lean_refresh_writes_and_answers_what_the_grant_does(method, app, flow, register, preregistered, paths,
                                                               statements):
    lane, flask, calls = paths
    client_id, auth = _client_authenticating_by(method, app, register, preregistered)
    by_lane, by_flask = _exchange(flow, client_id, auth), _exchange(flow, client_id, auth)
    with app.app_context():
        dialect = db.engine.dialect.name
        # Last used long ago: each refresh must record its use (inside the one statement on PostgreSQL).
        expected = REFRESH[dialect] + (["UPDATE grants", "UPDATE clients"] if dialect == "sqlite" else [])
        db.session.execute(update(Client).where(Client.client_id == client_id).values(last_used_at=LONG_AGO))
        db.session.execute(update(Grant).values(last_used_at=LONG_AGO))
        db.session.commit()

    def refresh(through, tokens, request_id):
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **auth["form"],
                "scope": "crm.objects.contacts.read offline_access"}
        return through.post("/oauth/token", data=form, auth=auth["basic"], headers={"X-Request-Id": request_id})

    calls.clear()
    with statements() as seen:
        fast = refresh(lane, by_lane, "lean-refresh-1")
    assert calls == [] and _named(seen) == expected, _named(seen)  # answered by the lean path
    slow = refresh(flask, by_flask, "grant-refresh-1")
    assert fast.status_code == slow.status_code == 200
    assert fast.get_json().keys() == slow.get_json().keys() == {"access_token", "token_type", "expires_in", "scope",
                                                                "refresh_token"}
    assert fast.get_json()["scope"] == slow.get_json()["scope"] == "crm.objects.contacts.read"  # narrowed
    assert fast.get_json()["expires_in"] == slow.get_json()["expires_in"]
    for header in ("Content-Type", "Cache-Control", "Pragma", "Access-Control-Allow-Origin", "X-Request-Id",
                   "X-Content-Type-Options", "Referrer-Policy"):
        assert (fast.headers.get(header) or "").replace("lean", "grant") == (slow.headers.get(header) or ""), header
    assert fast.headers["Cache-Control"] == "no-store"
    lean_rows = _written(app, by_lane["refresh_token"], "lean-refresh-1")
    grant_rows = _written(app, by_flask["refresh_token"], "grant-refresh-1")
    assert lean_rows == grant_rows
    assert lean_rows["old"] == (True, True, None, True) and lean_rows["touched"] == (True, True)
    assert lean_rows["event"][0] == "token.issued" and lean_rows["event"][3] == client_id
    # What the lean path issued is live, and the rotated token is not.
    assert flow.introspect(fast.get_json()["access_token"]).get_json()["active"] is True
    assert flow.introspect(by_lane["access_token"]).get_json() == {"active": False}


def test_an_identical_retry_of_a_lean_refresh_gets_its_answer(app, flow, register, paths):
    lane, _, calls = paths
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
    first = lane.post("/oauth/token", data=form)
    calls.clear()
    again = lane.post("/oauth/token", data=form)
    assert calls == ["/oauth/token"]  # a rotated token: the grant decides (the sealed answer)
    assert again.status_code == 200 and again.get_json() == first.get_json()


@pytest.mark.parametrize("case", ["user left the hub", "grant revoked", "refresh token expired", "another client's",
                                  "other resource"])
def test_the_lean_refresh_leaves_every_other_refresh_to_the_grant(case, app, flow, register, world, paths):
    lane, _, calls = paths
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
    with app.app_context():
        token = db.session.scalar(select(Token).where(Token.refresh_token_hash == sha256_hex(tokens["refresh_token"])))
        if case == "user left the hub":
            from authserver import accounts

            alice = accounts.get_user_by_email("alice@example.com")
            accounts.remove_member(alice, accounts.get_hub("10000001"))
        elif case == "grant revoked":
            db.session.execute(update(Grant).where(Grant.id == token.grant_id).values(revoked_at=datetime(2026, 1, 1)))
        elif case == "refresh token expired":
            token.refresh_expires_at = token.issued_at - timedelta(seconds=1)
        db.session.commit()
    if case == "another client's":
        form["client_id"] = register(client_name="Another")["client_id"]
    elif case == "other resource":
        form["resource"] = "https://elsewhere.example.com/mcp"
    calls.clear()
    answer = lane.post("/oauth/token", data=form)
    assert calls == ["/oauth/token"]  # refused by the grant in Flask
    assert answer.status_code in (400, 401) and answer.get_json()["error"]


def test_a_refresh_with_a_parameter_the_lean_path_does_not_know_is_the_grants(app, flow, register, paths, statements):
    lane, _, calls = paths
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id,
            "audience": "ignored"}
    calls.clear()
    with statements() as seen:
        answer = lane.post("/oauth/token", data=form)
    assert answer.status_code == 200 and calls == []  # the lane's Authlib grant, which ignores it
    assert _named(seen)[:2] == ["SELECT clients", "SELECT tokens"]  # not the lean path's joined read


# --- the code exchange (grants.LeanExchange) -------------------------------------------------------
def _code_written(app, code: str, request_id: str) -> dict:
    with app.app_context():
        from authserver.models import AuthorizationCode

        row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == sha256_hex(code)))
        new = db.session.scalar(select(Token).where(Token.code_id == row.id))
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.request_id == request_id))
        return {
            "code": (row.consumed_at is not None, row.replay is not None),
            "new": (new.grant_id, new.client_pk, new.parent_id, new.scope, new.authorized_scope,
                    new.auth_time == row.created_at, new.rotated_at, new.revoked_at, new.access_revoked_at,
                    new.access_expires_at - new.issued_at,
                    new.refresh_expires_at - new.issued_at if new.refresh_expires_at else None, new.replay),
            "event": (event.event, event.user_id, event.hub_id, event.client_id, event.ip, event.detail),
        }


def _code(flow, client_id):
    pkce = PKCE()
    params = authorize_params(client_id, pkce, scope="crm.objects.contacts.read crm.objects.deals.read")
    answer = flow.consent_page(params)
    answer = answer if answer.status_code == 302 else flow.decide(params)
    return query(answer.headers["Location"])["code"], pkce


@pytest.mark.parametrize("method", ["none", "client_secret_basic", "client_secret_post"])
def test_a_lean_code_exchange_writes_and_answers_what_the_grant_does(method, app, flow, register, preregistered,
                                                                     paths, statements):
    lane, flask, calls = paths
    client_id, auth = _client_authenticating_by(method, app, register, preregistered)
    with app.app_context():
        dialect = db.engine.dialect.name

    def exchange(through, request_id):
        code, pkce = _code(flow, client_id)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "code_verifier": pkce.verifier, "resource": RESOURCE, **auth["form"]}
        calls.clear()
        with statements() as seen:
            answer = through.post("/oauth/token", data=form, auth=auth["basic"], headers={"X-Request-Id": request_id})
        return code, answer, _named(seen)

    code_lane, fast, seen = exchange(lane, "lean-exchange-1")
    assert calls == [] and seen[:2] == ["SELECT clients", "WITH redeemed" if dialect == "postgresql"
                                        else "UPDATE authorization_codes"], seen  # the lean path
    code_flask, slow, _ = exchange(flask, "grant-exchange-1")
    assert fast.status_code == slow.status_code == 200, (fast.get_json(), slow.get_json())
    assert fast.get_json().keys() == slow.get_json().keys()
    assert fast.get_json()["scope"] == slow.get_json()["scope"]
    assert fast.get_json()["expires_in"] == slow.get_json()["expires_in"]
    for header in ("Content-Type", "Cache-Control", "Pragma", "Access-Control-Allow-Origin",
                   "X-Content-Type-Options", "Referrer-Policy"):
        assert fast.headers.get(header) == slow.headers.get(header), header
    assert _code_written(app, code_lane, "lean-exchange-1") == _code_written(app, code_flask, "grant-exchange-1")
    assert flow.introspect(fast.get_json()["access_token"]).get_json()["active"] is True


@pytest.mark.parametrize("case", ["wrong verifier", "no verifier", "other redirect_uri", "no redirect_uri",
                                  "other resource", "expired", "grant revoked", "another client's", "used"])
def test_the_lean_exchange_leaves_every_other_exchange_to_the_grant(case, app, flow, register, paths):
    lane, _, calls = paths
    client_id = register()["client_id"]
    code, pkce = _code(flow, client_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id,
            "code_verifier": pkce.verifier, "resource": RESOURCE}
    if case == "wrong verifier":
        form["code_verifier"] = PKCE().verifier
    elif case == "no verifier":
        del form["code_verifier"]
    elif case == "other redirect_uri":
        form["redirect_uri"] = "http://127.0.0.1:7777/other"
    elif case == "no redirect_uri":
        del form["redirect_uri"]
    elif case == "other resource":
        form["resource"] = "https://elsewhere.example.com/mcp"
    elif case == "another client's":
        form["client_id"] = register(client_name="Another")["client_id"]
    elif case == "used":
        assert lane.post("/oauth/token", data=form).status_code == 200
    with app.app_context():
        from authserver.models import AuthorizationCode

        row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == sha256_hex(code)))
        if case == "expired":
            row.expires_at = datetime(2020, 1, 1)
        elif case == "grant revoked":
            db.session.execute(update(Grant).where(Grant.id == row.grant_id).values(revoked_at=datetime(2026, 1, 1)))
        db.session.commit()
    calls.clear()
    answer = lane.post("/oauth/token", data=form)
    assert calls == ["/oauth/token"]  # the grant decided, in Flask
    if case == "used":
        assert answer.status_code == 200  # an identical retry inside the grace window: the same answer
    else:
        assert answer.status_code in (400, 401) and answer.get_json()["error"], answer.get_json()


@pytest.mark.parametrize("metadata", [
    {},
    {"token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]},
    {"token_endpoint_auth_method": "client_secret_post", "grant_types": ["authorization_code"]},
    {"token_endpoint_auth_method": "private_key_jwt", "grant_types": []},
    {"grant_types": None},
])
def test_the_lean_paths_client_decides_as_the_model_does(metadata):
    """The lean paths authenticate a client read as plain columns (grants.ClientColumns): the
    registered method and grant types are decided by the Client model's own accessors."""
    from collections import namedtuple

    from authserver import store
    from authserver.oauth.grants import TOKEN_ENDPOINT_AUTH_METHODS, ClientColumns

    values = {"id": 7, "client_id": "c", "client_secret_hash": None, "client_metadata": metadata,
              "registration": "dynamic", "last_used_at": None}
    row = namedtuple("Row", ["client__" + name for name in store.CLIENT_AUTH_COLUMNS])(
        *(values[name] for name in store.CLIENT_AUTH_COLUMNS))
    columns, model = ClientColumns(row), Client(**values)
    for name in store.CLIENT_AUTH_COLUMNS:
        assert getattr(columns, name) == getattr(model, name)
    for method in TOKEN_ENDPOINT_AUTH_METHODS:
        assert columns.check_endpoint_auth_method(method, "token") == model.check_endpoint_auth_method(method, "token")
    for grant_type in ("authorization_code", "refresh_token", "client_credentials"):
        assert columns.check_grant_type(grant_type) == model.check_grant_type(grant_type)
