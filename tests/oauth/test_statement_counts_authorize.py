"""The browser's side of the flow, statement by statement: each request at the authorization
endpoint and the sign-in page runs exactly these SQL statements (counted, never timed), so a change
that adds a query, or reads a row twice, fails here. If a new statement is needed, change the
transcript and say why.

Reads run outside any transaction (rawsql.read) and, on PostgreSQL, an authorization response's
writes (the grant, the code, the audit event) are one statement in autocommit: no request here
begins a transaction through the session, so none sends BEGIN or COMMIT. SQLite runs the same
writes as separate statements in the request's transaction."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import event, select

from authserver.extensions import db
from authserver.models import Grant
from authserver.timeutil import utcnow

from .support import PASSWORD, PKCE, REDIRECT_URI, authorize_params, csrf_token, query, shown_hub

#: An https redirect URI: a public client there keeps remembered consent (loopback ones are asked
#: every time, and then the consent page is the signed-in flow).
WEB = "https://app.example/callback"
READ, WRITE = "crm.objects.contacts.read", "crm.objects.contacts.write"

_TABLES = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def shape(seen: list[str]) -> list[str]:
    """Each statement as its verb and the tables it names: 'SELECT grants hubs memberships'."""
    return [f"{sql.split()[0].upper()} {' '.join(sorted(set(_TABLES.findall(sql))))}" for sql in seen]


CLIENT = "SELECT clients"
#: Every signed-in authorization request reads in one statement (rawsql.read_ahead), each thing
#: once: the user and whether this session was ended, the client, the resource server, and the
#: user's hubs with their memberships and their live grants to that client and resource.
HEAD = ["SELECT clients ended_sessions grants hubs memberships resource_servers users"]
#: An authorization response's write on PostgreSQL: the grant inserted or changed when it must be,
#: the code and the audit event, in one statement (store._ISSUE_CODE).
ISSUE_CODE = "WITH audit_events authorization_codes grants new_code new_grant"


@pytest.fixture
def dialect(app):
    with app.app_context():
        return db.engine.dialect.name


def code(dialect, *grant: str) -> list[str]:
    """The writes of an authorization response: `grant` ("INSERT grants" or "UPDATE grants", when
    the grant is written) then the audit event and the code on SQLite; one statement on PostgreSQL."""
    if dialect == "postgresql":
        return [ISSUE_CODE]
    return [*grant, "INSERT audit_events", "INSERT authorization_codes"]


@pytest.fixture
def transactions(app):
    """transactions() -> a context manager counting the transactions the app's requests begin and
    commit through SQLAlchemy (the session's), as {"begin": n, "commit": n}."""

    @contextmanager
    def count():
        counted = {"begin": 0, "commit": 0}
        with app.app_context():
            engine = db.engine

        def began(conn):
            counted["begin"] += 1

        def committed(conn):
            counted["commit"] += 1

        event.listen(engine, "begin", began)
        event.listen(engine, "commit", committed)
        try:
            yield counted
        finally:
            event.remove(engine, "begin", began)
            event.remove(engine, "commit", committed)

    return count


@pytest.fixture
def remembered(flow, register):
    """A client at an https redirect URI that alice approved in Acme for READ and WRITE."""
    client_id = register(redirect_uris=[WEB])["client_id"]
    flow.get_code(client_id, hub="10000001", redirect_uri=WEB, scopes=[READ, WRITE])
    return client_id


def _authorize(flow, client_id, scope=READ, redirect_uri=WEB):
    return flow.consent_page(authorize_params(client_id, PKCE(), scope=scope, redirect_uri=redirect_uri))


def test_signed_in_authorization_with_remembered_consent(flow, remembered, statements, transactions, dialect):
    with statements() as seen, transactions() as counted:
        response = _authorize(flow, remembered)
    assert response.status_code == 302 and query(response.headers["Location"])["code"]
    # One query finds the remembered grant with its hub and the user's live membership; the grant
    # was used seconds ago, so its last-used time is not rewritten.
    assert shape(seen) == [*HEAD, *code(dialect)]
    assert counted == ({"begin": 0, "commit": 0} if dialect == "postgresql" else {"begin": 1, "commit": 1})


def _last_used(app):
    with app.app_context():
        return {g.hub_id: g.last_used_at for g in db.session.scalars(select(Grant))}


def test_remembered_consent_touches_a_grant_last_used_over_a_minute_ago(app, flow, remembered, statements, dialect):
    with app.app_context():
        grant = db.session.scalar(select(Grant))
        grant.last_used_at = utcnow() - timedelta(minutes=2)
        db.session.commit()
    with statements() as seen:
        assert _authorize(flow, remembered).status_code == 302
    assert shape(seen) == [*HEAD, *code(dialect, "UPDATE grants")]
    assert utcnow() - next(iter(_last_used(app).values())) < timedelta(seconds=10)


def test_remembered_consent_uses_the_hub_used_most_recently(flow, remembered):
    """Within the minute a fresh grant is not rewritten, but the choice of hub stays exact: a grant
    chosen while another was used more recently becomes the most recent."""
    # Approve Globex for READ only, in a consent form posted now (the page itself would be skipped).
    params = authorize_params(remembered, PKCE(), scope=READ, redirect_uri=WEB)
    data = {"csrf_token": csrf_token(flow.client.get("/").get_data(as_text=True)), "hub": "10000002",
            "shown_hub": "10000002", "decision": "allow", "scope": [READ]}
    assert flow.client.post("/oauth/authorize", query_string=params, data=data).status_code == 302

    assert _hub_granted(flow, remembered, READ) == 10000002  # Globex was used last
    assert _hub_granted(flow, remembered, f"{READ} {WRITE}") == 10000001  # only Acme granted WRITE
    assert _hub_granted(flow, remembered, READ) == 10000001  # and now Acme was used last


def _hub_granted(flow, client_id, scope) -> int:
    """The hub of the token a remembered authorization for `scope` leads to."""
    pkce = PKCE()
    params = authorize_params(client_id, pkce, scope=scope, redirect_uri=WEB)
    response = flow.consent_page(params)
    assert response.status_code == 302, response.status_code
    code = query(response.headers["Location"])["code"]
    tokens = flow.exchange(client_id, code, pkce, redirect_uri=WEB).get_json()
    return flow.introspect(tokens["access_token"]).get_json()["hub_id"]


def test_consent_page(flow, register, statements, transactions):
    client_id = register()["client_id"]  # public, loopback: asked every time
    with statements() as seen, transactions() as counted:
        response = _authorize(flow, client_id, redirect_uri=authorize_params(client_id, PKCE())["redirect_uri"])
    assert response.status_code == 200
    # The person's hubs with their memberships (permissions) and the last grant to pre-fill, with
    # the user, client and resource: one statement. A page that wrote nothing begins no
    # transaction and commits none.
    assert shape(seen) == HEAD
    assert counted == {"begin": 0, "commit": 0}


def _consent_post(flow, client_id, statements, transactions, scopes=(READ,)):
    params = authorize_params(client_id, PKCE(), scope=f"{READ} {WRITE}")
    html = flow.consent_page(params, "10000001").get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "hub": "10000001", "shown_hub": shown_hub(html), "decision": "allow",
            "scope": list(scopes)}
    with statements() as seen, transactions() as counted:
        response = flow.client.post("/oauth/authorize", query_string=params, data=data)
    assert response.status_code == 302 and query(response.headers["Location"])["code"]
    return shape(seen), counted


def _grants(app) -> list[tuple[int, str]]:
    with app.app_context():
        return [(g.hub_id, g.scope) for g in db.session.scalars(select(Grant).order_by(Grant.id))]


def test_consent_post(app, flow, register, statements, transactions, dialect):
    client_id = register()["client_id"]
    none = {"begin": 0, "commit": 0} if dialect == "postgresql" else {"begin": 1, "commit": 1}
    # The hub chosen is one of the person's hubs, read with their memberships and the
    # installation's live grants: a new grant, with the code and the audit event.
    assert _consent_post(flow, client_id, statements, transactions) == ([*HEAD, *code(dialect, "INSERT grants")], none)
    assert [scope for _, scope in _grants(app)] == [READ]
    # The same choice again a moment later (the loopback client asked every time): nothing to update.
    assert _consent_post(flow, client_id, statements, transactions) == ([*HEAD, *code(dialect)], none)
    # Other scopes: the grant is updated.
    assert _consent_post(flow, client_id, statements, transactions, scopes=(READ, WRITE)) == (
        [*HEAD, *code(dialect, "UPDATE grants")], none)
    assert [scope for _, scope in _grants(app)] == [f"{READ} {WRITE}"]


def test_unauthenticated_authorization_request(client, world, register, statements):
    client_id = register()["client_id"]
    with statements() as seen:
        response = client.get("/oauth/authorize", query_string=authorize_params(client_id, PKCE()))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?")
    assert shape(seen) == ["SELECT clients resource_servers"]


def test_login_page_naming_the_waiting_app(client, world, register, statements):
    # The app an authorization request behind the sign-in page is for: one lookup of the client,
    # whether it exists or not; none for a next that names no single printable client_id.
    client_id = register()["client_id"]
    for named, expected in ((client_id, [CLIENT]), ("no-such-client", [CLIENT]), ([client_id, client_id], [])):
        next_path = "/oauth/authorize?" + urlencode({"client_id": named, "redirect_uri": REDIRECT_URI}, doseq=True)
        with statements() as seen:
            page = client.get("/login", query_string={"next": next_path})
        assert page.status_code == 200 and shape(seen) == expected, named


def test_login_page_and_sign_in(client, world, statements):
    with statements() as seen:
        page = client.get("/login?next=/")
    assert page.status_code == 200 and seen == []
    with statements() as seen:
        response = client.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                               "email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert shape(seen) == ["SELECT users", "INSERT audit_events"]


@pytest.fixture
def sessions(app, monkeypatch):
    """A list that counts the ORM sessions the app's requests make (one entry per session)."""
    made: list = []
    with app.app_context():
        registry = db.session.registry
    createfunc = registry.createfunc

    def counted(**kwargs):
        made.append(1)
        return createfunc(**kwargs)

    monkeypatch.setattr(registry, "createfunc", counted)
    return made


def test_signed_in_consent_page_and_post_make_no_orm_session(flow, register, sessions, dialect):
    """The signed-in user, the client and the resource server are only read at the authorization
    endpoint (store.read_as_values): on PostgreSQL, where the code and its grant are written in one
    autocommit statement, neither the consent page nor the consent POST makes an ORM session
    (SQLite writes in the session's transaction)."""
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), scope=READ)
    sessions.clear()
    page = flow.consent_page(params, "10000001")
    assert page.status_code == 200 and sessions == []
    html = page.get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "hub": "10000001", "shown_hub": shown_hub(html), "decision": "allow",
            "scope": [READ]}
    response = flow.client.post("/oauth/authorize", query_string=params, data=data)
    assert response.status_code == 302 and query(response.headers["Location"])["code"]
    assert sessions == ([] if dialect == "postgresql" else [1])
