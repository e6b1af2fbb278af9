"""The introspection answer cache (authserver/changes.py): a repeated introspection costs no
statement on PostgreSQL, and no change to what an answer depends on outlives it.

The property: **no cached answer survives a change that would alter it**, whoever makes the
change. Changes made through this app reach the cache at once; changes made anywhere else (here:
a separate database connection, as another worker, the CLI or an operator's SQL would) reach it
through the triggers' NOTIFY, and never later than INTROSPECTION_CACHE_SECONDS even if no
notification ever arrives."""

from __future__ import annotations

import base64
import importlib.util
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from sqlalchemy import Column
from sqlalchemy.engine import make_url
from sqlalchemy.sql import visitors

from authserver import changes, store
from authserver.config import ConfigError
from authserver.extensions import db
from authserver.secrets import sha256_hex

from .support import PKCE, REDIRECT_URI, RESOURCE, authorize_params, query

ROOT = Path(__file__).resolve().parents[2]
#: What a change elsewhere may take to arrive through NOTIFY on a busy test machine; far below
#: the INTROSPECTION_CACHE_SECONDS the tests set, so arriving within it is the notification's work.
NOTIFY_DEADLINE = 5.0
LONG_AGE = 600

postgresql_only = pytest.mark.skipif(not os.environ.get("AUTHSERVER_TEST_DATABASE_URL"),
                                     reason="the answer cache needs PostgreSQL's notifications")


def migration_watched() -> dict:
    path = ROOT / "migrations" / "versions" / "0011_change_notifications.py"
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WATCHED


def test_the_triggers_and_this_workers_rule_watch_the_same_columns():
    assert migration_watched() == changes.WATCHED


def test_every_column_an_answer_reads_is_watched():
    """Whatever the introspection row reads (selected, joined on or filtered by) is announced when
    it changes; only primary keys, which never change, are not."""
    read = set()
    for element in visitors.iterate(store._INTROSPECTION_ROW.statement, {"column_collections": False}):
        if isinstance(element, Column) and element.table is not None and not element.primary_key:
            read.add((element.table.name, element.name))
    assert read
    unwatched = {(table, column) for table, column in read
                 if table not in changes.WATCHED or (changes.WATCHED[table] is not None
                                                     and column not in changes.WATCHED[table])}
    assert unwatched == set()


@pytest.mark.parametrize("sql, changes_answers", [
    ("UPDATE tokens SET access_revoked_at=%(now)s WHERE tokens.id = %(id)s", True),
    ('UPDATE "tokens" SET "revoked_at"=%(now)s WHERE grant_id = %(g)s', True),
    ("WITH consumed AS (UPDATE tokens SET rotated_at=%(now)s, replay=%(r)s WHERE id=%(id)s RETURNING id) "
     "INSERT INTO tokens (scope) SELECT scope FROM consumed", False),
    ("UPDATE tokens SET rotated_at=%(now)s WHERE id=%(id)s", False),
    ("UPDATE grants SET last_used_at=%(now)s WHERE grants.id = %(id)s", False),
    ("UPDATE grants SET revoked_at=%(now)s WHERE grants.id = %(id)s", True),
    ("UPDATE clients SET last_used_at=%(now)s WHERE clients.id = %(id)s", False),
    ("UPDATE users SET disabled=true, sessions_ended_at=%(now)s WHERE users.id = %(id)s", True),
    ("UPDATE users SET last_login_at=%(now)s WHERE users.id = %(id)s", False),
    ("UPDATE memberships SET role=%(role)s WHERE memberships.id = %(id)s", True),
    ("UPDATE hubs SET name=%(name)s WHERE hubs.id = %(id)s", False),
    ("DELETE FROM memberships WHERE memberships.id = %(id)s", True),
    ("DELETE FROM tokens WHERE tokens.id IN (SELECT id FROM tokens LIMIT 10)", True),
    ("DELETE FROM audit_events WHERE id < 5", False),
    ("DELETE FROM resource_servers WHERE resource_servers.id = %(id)s", True),
    ("UPDATE resource_servers SET name=%(name)s WHERE resource_servers.id = %(id)s", False),
    ("TRUNCATE audit_events, tokens RESTART IDENTITY CASCADE", True),
    ("INSERT INTO memberships (user_id, hub_id, role) VALUES (1, 2, 'admin')", False),
    ("INSERT INTO memberships (user_id, hub_id, role) VALUES (1, 2, 'admin') "
     "ON CONFLICT (user_id, hub_id) DO UPDATE SET role = excluded.role", True),
    ("INSERT INTO audit_events (kind) VALUES ('x') ON CONFLICT DO NOTHING", False),
    ("SELECT revoked_at FROM tokens", False),
])
def test_which_statements_reach_the_cache(sql, changes_answers):
    assert changes.changes_answers(sql) is changes_answers


def _postgresql_sql(statement) -> str:
    from sqlalchemy.dialects import postgresql

    return str(statement.statement.compile(dialect=postgresql.dialect()))


@pytest.mark.parametrize("sql, kind", [
    # What the token endpoint runs: a refresh's rotation (one statement on PostgreSQL, the
    # conditional UPDATE elsewhere and on Authlib's path) ends only the rotated pair's access token.
    (_postgresql_sql(store._ROTATION), changes.ROTATES),
    (_postgresql_sql(store._CONSUME_REFRESH), changes.ROTATES),
    (_postgresql_sql(store._REDEMPTION), changes.NOTHING),
    ("UPDATE tokens SET rotated_at=%(now)s, access_revoked_at=%(now)s, replay=%(r)s WHERE id=%(id)s",
     changes.ROTATES),
    # A rotation with anything else an answer reads is no longer only a rotation.
    ("UPDATE tokens SET rotated_at=%(now)s, access_revoked_at=%(now)s, access_expires_at=%(now)s WHERE id=%(id)s",
     changes.EVERYTHING_CHANGES),
    ("UPDATE tokens SET rotated_at=%(now)s, revoked_at=%(now)s WHERE id=%(id)s", changes.EVERYTHING_CHANGES),
    ("WITH r AS (UPDATE tokens SET rotated_at=%(now)s, access_revoked_at=%(now)s WHERE id=%(id)s RETURNING id) "
     "UPDATE grants SET revoked_at=%(now)s WHERE grants.id = %(g)s", changes.EVERYTHING_CHANGES),
    ("WITH r AS (UPDATE grants SET revoked_at=%(now)s WHERE grants.id = %(g)s RETURNING id) "
     "UPDATE tokens SET rotated_at=%(now)s, access_revoked_at=%(now)s WHERE id=%(id)s", changes.EVERYTHING_CHANGES),
    ("WITH r AS (UPDATE tokens SET rotated_at=%(now)s, access_revoked_at=%(now)s WHERE id=%(id)s RETURNING id) "
     "DELETE FROM memberships WHERE id = %(m)s", changes.EVERYTHING_CHANGES),
    ("UPDATE grants SET access_revoked_at=%(now)s WHERE id=%(id)s", changes.NOTHING),
])
def test_a_rotation_is_told_apart_from_every_other_change(sql, kind):
    assert changes.changes_of(sql) == kind


def test_the_settings_are_checked(make_app):
    for name, bad in (("INTROSPECTION_CACHE_SECONDS", -1), ("INTROSPECTION_CACHE_SECONDS", "5s"),
                      ("INTROSPECTION_CACHE_SECONDS", 3601), ("INTROSPECTION_CACHE_ENTRIES", 0),
                      ("INTROSPECTION_CACHE_ENTRIES", 2.5)):
        with pytest.raises(ConfigError, match=name):
            make_app(**{name: bad})


def test_a_stale_read_is_not_kept():
    """A read that began before a change and ends after it is refused (the generation moved on)."""

    class Live:
        live = True

    cache = changes.AnswerCache(Live(), 60, 10)
    generation = cache.generation
    cache.forget("another-token")  # any change, even to another token's row
    cache.put("token", 1, "row", generation)
    assert cache.get("token", 1) is None
    cache.put("token", 1, "row", cache.generation)
    assert cache.get("token", 1) == "row"
    assert cache.get("token", 2) is None  # another resource server's question


def test_the_cache_is_bounded_in_size():
    class Live:
        live = True

    cache = changes.AnswerCache(Live(), 60, 3)
    for n in range(5):
        cache.put(f"t{n}", 1, n, cache.generation)
    assert sorted(cache.entries) == ["t2", "t3", "t4"]


def test_sqlite_has_no_cache(app, db_backend):
    if db_backend != "sqlite":
        pytest.skip("SQLite only")
    with app.app_context():
        assert changes.cache(app, db.engine) is None


# --- on PostgreSQL ---------------------------------------------------------------------------------
@pytest.fixture
def elsewhere(app):
    """elsewhere(sql, **params): run a statement on a connection of its own, committed, as another
    worker, the CLI or an operator would: nothing in this process sees it but the notification."""
    conninfo = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql").render_as_string(
        hide_password=False)

    def run(sql: str, **params):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql, params)

    return run


def cached_feed(app) -> changes.AnswerCache:
    with app.app_context():
        cache = changes.cache(app, db.engine)
    assert cache.feed.listening.wait(10), "the change feed never started listening"
    return cache


SCOPE = "crm.objects.contacts.read crm.objects.contacts.write"


@pytest.fixture
def issued(app, flow, preregistered):
    """alice's tokens in Acme (where she is admin) for a confidential client, the access token
    introspected once (so now cached), and the app's cache."""
    client_id, secret = preregistered(SCOPE)
    cache = cached_feed(app)
    code, pkce, _ = flow.get_code(client_id, scope=SCOPE)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}
    response = flow.client.post("/oauth/token", headers=auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier, "resource": RESOURCE})
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == SCOPE
    return SimpleNamespace(access=tokens["access_token"], refresh=tokens["refresh_token"], auth=auth, cache=cache,
                           hash=sha256_hex(tokens["access_token"]), client_id=client_id)


def answers_from_cache(flow, statements, token) -> dict:
    with statements() as seen:
        answer = flow.introspect(token).get_json()
    assert seen == [], "a repeated introspection of an active token was read from the database"
    return answer


def eventually(flow, token, predicate) -> dict:
    deadline = time.monotonic() + NOTIFY_DEADLINE
    while True:
        answer = flow.introspect(token).get_json()
        if predicate(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


_ACME_ALICE = ("hub_id = (SELECT id FROM hubs WHERE public_id = 10000001)"
               " AND user_id = (SELECT id FROM users WHERE email = 'alice@example.com')")
#: Changes made elsewhere -> what the answer must become (None: inactive).
ELSEWHERE = {
    "token revoked": ("UPDATE tokens SET access_revoked_at = now() WHERE access_token_hash = %(hash)s", None),
    "token and refresh revoked": ("UPDATE tokens SET revoked_at = now() WHERE access_token_hash = %(hash)s", None),
    "token shortened": ("UPDATE tokens SET access_expires_at = now() WHERE access_token_hash = %(hash)s", None),
    "token deleted": ("DELETE FROM tokens WHERE access_token_hash = %(hash)s", None),
    "grant revoked": ("UPDATE grants SET revoked_at = now()", None),
    "user disabled": ("UPDATE users SET disabled = true WHERE email = 'alice@example.com'", None),
    "membership removed": (f"DELETE FROM memberships WHERE {_ACME_ALICE}", None),
    "role narrowed": (f"UPDATE memberships SET role = 'viewer' WHERE {_ACME_ALICE}", "crm.objects.contacts.read"),
    "scope denied": (f"UPDATE memberships SET denied = '[\"crm.objects.contacts.write\"]' WHERE {_ACME_ALICE}",
                     "crm.objects.contacts.read"),
    "client deleted": ("DELETE FROM clients WHERE client_id LIKE 'pre-%%'", None),
    "hub renumbered": ("UPDATE hubs SET public_id = 10000009 WHERE public_id = 10000001", "hub 10000009"),
    "everything truncated": ("TRUNCATE tokens, grants CASCADE", None),
    "resource server deleted": (f"DELETE FROM resource_servers WHERE uri = '{RESOURCE}'", None),
}


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=LONG_AGE)
@pytest.mark.parametrize("change", list(ELSEWHERE))
def test_no_answer_outlives_a_change_made_elsewhere(issued, flow, statements, elsewhere, change):
    before = answers_from_cache(flow, statements, issued.access)
    sql, becomes = ELSEWHERE[change]
    elsewhere(sql, hash=issued.hash)
    answer = eventually(flow, issued.access, lambda a: a != before)
    if becomes is None:
        assert answer == {"active": False}
    elif becomes.startswith("hub "):
        assert answer == {**before, "hub_id": int(becomes.split()[1])}
    else:
        assert answer == {**before, "scope": becomes}


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=LONG_AGE)
def test_bookkeeping_keeps_the_answer(issued, flow, statements, elsewhere):
    """Last-used times change nothing an answer says: the cache survives them (else every token
    request would empty every worker's cache)."""
    answers_from_cache(flow, statements, issued.access)
    elsewhere("UPDATE grants SET last_used_at = now()")
    elsewhere("UPDATE clients SET last_used_at = now()")
    elsewhere("UPDATE users SET sessions_ended_at = now()")
    time.sleep(0.3)  # a notification, had one been sent, arrives within milliseconds
    answers_from_cache(flow, statements, issued.access)


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=LONG_AGE)
def test_a_refresh_ends_the_old_access_tokens_answer_at_once(issued, flow, statements):
    answers_from_cache(flow, statements, issued.access)
    refreshed = flow.client.post("/oauth/token", headers=issued.auth,
                                 data={"grant_type": "refresh_token", "refresh_token": issued.refresh})
    assert refreshed.status_code == 200, refreshed.get_json()
    assert flow.introspect(issued.access).get_json() == {"active": False}
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["active"] is True


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=LONG_AGE)
@pytest.mark.parametrize("through", ["lane", "flask"])
def test_a_refresh_here_ends_its_own_access_token_and_keeps_every_other_answer(
        issued, flow, statements, paths, monkeypatch, through):
    """The property: a refresh made in this worker ends the rotated pair's access token at once,
    and no other cached answer (another family's, of the same client, user and grant) is lost to
    it, on the lane's path and on Authlib's (notifications ignored: this is the worker's own
    doing)."""
    monkeypatch.setattr(issued.cache.feed, "forget", _only_local(issued.cache.feed.forget))
    pkce = PKCE()
    remembered = flow.consent_page(authorize_params(issued.client_id, pkce, scope=SCOPE))  # consented before
    code = query(remembered.headers["Location"])["code"]
    other = flow.client.post("/oauth/token", headers=issued.auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier, "resource": RESOURCE}).get_json()["access_token"]
    flow.introspect(other)
    kept = {token: answers_from_cache(flow, statements, token) for token in (issued.access, other)}
    client = paths[0] if through == "lane" else paths[1]
    paths[2].clear()
    refreshed = client.post("/oauth/token", headers=issued.auth,
                            data={"grant_type": "refresh_token", "refresh_token": issued.refresh})
    assert refreshed.status_code == 200, refreshed.get_json()
    assert paths[2] == [], "the lane passed the refresh on"
    assert flow.introspect(issued.access).get_json() == {"active": False}
    assert answers_from_cache(flow, statements, other) == kept[other]
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["active"] is True


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=LONG_AGE)
def test_a_rotation_run_without_naming_its_token_forgets_every_answer(issued, app):
    """Only the caller knows which access token a rotation ends: unnamed, it is any change."""
    rotation = _postgresql_sql(store._CONSUME_REFRESH)
    with app.app_context():
        changes.statement_ran(db.engine, {}, rotation, True, ends="0" * 64)
        assert issued.hash in issued.cache.entries
        changes.statement_ran(db.engine, {}, rotation, True, ends=issued.hash)
        assert issued.hash not in issued.cache.entries
        issued.cache.entries["x"] = issued.cache.entries.get(issued.hash, (0, None, time.monotonic()))
        changes.statement_ran(db.engine, {}, rotation, True)
        assert issued.cache.entries == {}


@pytest.fixture
def listener(app):
    """A connection LISTENing on the triggers' channel: heard() is what it received since the last
    call (waiting briefly, as a notification arrives within milliseconds of the commit)."""
    conninfo = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql").render_as_string(
        hide_password=False)
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.execute(f"LISTEN {changes.CHANNEL}")

    def heard() -> list[str]:
        return [n.payload for n in conn.notifies(timeout=0.3)]

    yield heard
    conn.close()


_ROTATE = "rotated_at = now(), access_revoked_at = coalesce(access_revoked_at, now())"
#: Updates of the issued token's row, in turn -> whether each is announced (migration 0012: every
#: change to what an answer reads, except a rotation ending the rotated pair's own access token).
ROW_UPDATES = {
    "a refresh's rotation": [(_ROTATE, False)],
    "a rotation, then the reuse detected": [(_ROTATE, False), ("revoked_at = now()", True)],
    "a rotation that also shortens": [(f"{_ROTATE}, access_expires_at = now()", True)],
    "a rotation of a revoked pair": [("access_revoked_at = now()", True), (_ROTATE, False)],
    "the access token revoked, then rotated": [("access_revoked_at = now()", True), ("rotated_at = now()", False)],
    "the access token ended on a rotated row": [("rotated_at = now()", False), ("access_revoked_at = now()", True)],
}


@postgresql_only
@pytest.mark.parametrize("updates", list(ROW_UPDATES))
def test_what_the_token_trigger_announces(issued, elsewhere, listener, updates):
    for assignments, announced in ROW_UPDATES[updates]:
        elsewhere(f"UPDATE tokens SET {assignments} WHERE access_token_hash = %(hash)s", hash=issued.hash)
        assert listener() == ([issued.hash] if announced else []), assignments


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=0.5)
def test_a_refresh_made_elsewhere_ends_the_old_access_token_within_the_bound(issued, flow, statements, elsewhere):
    """Another worker's refresh is not announced (migration 0012): here the rotated pair's access
    token ends when its row's age reaches INTROSPECTION_CACHE_SECONDS."""
    answers_from_cache(flow, statements, issued.access)
    read_at = issued.cache.entries[issued.hash][2]
    elsewhere(f"UPDATE tokens SET {_ROTATE} WHERE access_token_hash = %(hash)s", hash=issued.hash)
    time.sleep(max(0.0, read_at + 0.55 - time.monotonic()))
    assert flow.introspect(issued.access).get_json() == {"active": False}


def _only_local(forget):
    """A feed's forget that ignores what its listening thread delivers (the notifications) and
    does what this worker's own commits ask."""

    def local(token_hash):
        if threading.current_thread().name == "authserver-changes":
            return None
        return forget(token_hash)

    return local


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=LONG_AGE)
@pytest.mark.parametrize("how", ["disable", "revoke", "narrow"])
def test_a_change_made_here_ends_the_answer_at_once(issued, flow, statements, app, monkeypatch, how):
    """Through this app, with the notifications ignored: the commit itself forgets the answers
    before the request returns, so the very next introspection sees the change."""
    monkeypatch.setattr(issued.cache.feed, "forget", _only_local(issued.cache.feed.forget))
    answers_from_cache(flow, statements, issued.access)
    if how == "revoke":
        response = flow.client.post("/oauth/revoke", headers=issued.auth, data={"token": issued.access})
        assert response.status_code == 200
    else:
        from authserver import accounts

        with app.app_context():
            user = accounts.get_user_by_email("alice@example.com")
            if how == "disable":
                accounts.set_disabled(user, True)
            else:
                accounts.set_role(user, accounts.get_hub(10000001), "viewer")
            db.session.commit()
    expected = {"active": False} if how != "narrow" else "crm.objects.contacts.read"
    answer = flow.introspect(issued.access).get_json()
    assert answer == expected if how != "narrow" else answer["scope"] == expected


@postgresql_only
@pytest.mark.app_config(INTROSPECTION_CACHE_SECONDS=0.5)
def test_without_notifications_an_answer_is_kept_no_longer_than_the_setting(issued, flow, elsewhere, monkeypatch):
    monkeypatch.setattr(issued.cache.feed, "forget", _only_local(issued.cache.feed.forget))
    elsewhere("UPDATE tokens SET access_revoked_at = now() WHERE access_token_hash = %(hash)s", hash=issued.hash)
    read_at = issued.cache.entries[issued.hash][2]
    stale = flow.introspect(issued.access).get_json()
    if time.monotonic() - read_at < 0.45:
        assert stale["active"] is True  # what the bound allows: the notification was ignored
    time.sleep(max(0.0, read_at + 0.55 - time.monotonic()))
    assert flow.introspect(issued.access).get_json() == {"active": False}


@postgresql_only
def test_while_the_feed_is_down_nothing_is_answered_from_the_cache(issued, flow, statements, app, elsewhere):
    answers_from_cache(flow, statements, issued.access)
    feed = issued.cache.feed
    database = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    elsewhere("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'authserver-changes'"
              " AND datname = %(db)s", db=database)
    deadline = time.monotonic() + NOTIFY_DEADLINE
    while feed.live and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not feed.live or not issued.cache.entries  # down, or already back with nothing kept
    with statements() as seen:
        assert flow.introspect(issued.access).get_json()["active"] is True
    assert len(seen) == 1, "answered from a cache whose notifications had stopped"
    assert feed.listening.wait(10), "the change feed did not listen again"
    flow.introspect(issued.access)
    answers_from_cache(flow, statements, issued.access)


@postgresql_only
def test_misses_and_inactive_answers_are_not_kept(issued, flow, elsewhere):
    assert flow.introspect("no-such-token").get_json() == {"active": False}
    assert sha256_hex("no-such-token") not in issued.cache.entries
    elsewhere("UPDATE tokens SET access_revoked_at = now() WHERE access_token_hash = %(hash)s", hash=issued.hash)
    assert eventually(flow, issued.access, lambda a: not a["active"]) == {"active": False}
    assert issued.hash not in issued.cache.entries
