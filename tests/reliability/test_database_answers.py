"""PostgreSQL faults answer cleanly: whichever path meets the fault (the WSGI lane or a Flask view),
a database that is unreachable, too slow (statement_timeout) or out of pooled connections gets a
503 with Retry-After: RFC 6749 JSON (`temporarily_unavailable`) for programs, a readable page for
people, and one log line without a traceback. In process, on real faults: a closed port, tables
locked by another session past the statement timeout, a pool whose only connection is held."""

from __future__ import annotations

import base64
import logging
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy.engine import make_url

from authserver.extensions import db

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"rs_nobody:not-a-secret").decode()}
AUTHORIZE = ("/oauth/authorize?response_type=code&client_id=someone&redirect_uri=https%3A%2F%2Fa.example%2Fcb"
             "&code_challenge=" + "a" * 43 + "&code_challenge_method=S256&state=s")

#: (name, method, path, keyword arguments, answered to a person)
REQUESTS = [
    ("introspection (WSGI lane)", "POST", "/oauth/introspect", {"data": "token=at_x", "headers": {**FORM, **BASIC}}, False),
    ("refresh (WSGI lane)", "POST", "/oauth/token",
     {"data": "grant_type=refresh_token&client_id=someone&refresh_token=rt_x", "headers": FORM}, False),
    ("registration (view)", "POST", "/oauth/register",
     {"json": {"client_name": "x", "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}},
     False),
    ("authorization page", "GET", AUTHORIZE, {"headers": {"Accept": "text/html"}}, True),
    ("authorization asked as JSON", "GET", AUTHORIZE, {"headers": {"Accept": "application/json"}}, False),
]


def assert_unavailable(response, for_a_person: bool) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
    if for_a_person:
        assert response.mimetype == "text/html"
        assert "briefly unavailable" in response.get_data(as_text=True)
    else:
        assert response.get_json() == {
            "error": "temporarily_unavailable",
            "error_description": "The service is briefly unavailable; retry after the time in Retry-After."}
        assert response.headers["Cache-Control"] == "no-store"


def send(client, method: str, path: str, kwargs: dict):
    return client.open(path, method=method, **kwargs)


@contextmanager
def tables_locked(app):
    """Another session holds every table of the app's database in ACCESS EXCLUSIVE mode, so that
    any statement of the app waits on it (a database too slow to answer)."""
    with app.app_context():
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        db.session.remove()
    with psycopg.connect(url) as conn:
        conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


@pytest.mark.parametrize("name, method, path, kwargs, for_a_person", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_an_unreachable_database_is_a_503(make_app, caplog, name, method, path, kwargs, for_a_person):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", RESOURCE_SERVER_CACHE_SECONDS=0)
    with caplog.at_level(logging.WARNING):
        assert_unavailable(send(app.test_client(), method, path, kwargs), for_a_person)
    assert "database unavailable" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "an expected fault was logged with a traceback"


@pytest.mark.parametrize("name, method, path, kwargs, for_a_person", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_a_statement_past_the_statement_timeout_is_a_503(make_app, db_backend, name, method, path, kwargs,
                                                         for_a_person):
    if db_backend != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    app = make_app(DATABASE_STATEMENT_TIMEOUT_MS=300, RESOURCE_SERVER_CACHE_SECONDS=0)
    client = app.test_client()
    with tables_locked(app):
        assert_unavailable(send(client, method, path, kwargs), for_a_person)
    # The slow moment is over: the same request is answered as usual (whatever the answer is).
    assert send(client, method, path, kwargs).status_code != 503


@pytest.mark.parametrize("name, method, path, kwargs, for_a_person", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_no_free_pooled_connection_is_a_503(make_app, name, method, path, kwargs, for_a_person):
    app = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3},
                   RESOURCE_SERVER_CACHE_SECONDS=0)
    client = app.test_client()
    with app.app_context():
        held = db.engine.connect()  # the pool's one connection, busy elsewhere
    try:
        assert_unavailable(send(client, method, path, kwargs), for_a_person)
    finally:
        held.close()
    assert send(client, method, path, kwargs).status_code != 503


def test_the_postgresql_engine_bounds_every_wait(make_app, db_backend):
    """The settings reach the connection: the server's statement_timeout, and the client's own
    bound a second later for a server too hung to enforce it."""
    if db_backend != "postgresql":
        pytest.skip("PostgreSQL settings")
    app = make_app(DATABASE_STATEMENT_TIMEOUT_MS=1234, DATABASE_CONNECT_TIMEOUT=4, DATABASE_POOL_TIMEOUT=7)
    with app.app_context():
        assert db.engine.pool.timeout() == 7
        raw = db.engine.raw_connection()
        try:
            assert raw.driver_connection.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"
            assert raw.driver_connection.wait_timeout == pytest.approx(2.234)
            assert raw.driver_connection.info.get_parameters().get("connect_timeout") == "4"
        finally:
            raw.close()
    assert make_url(app.config["SQLALCHEMY_DATABASE_URI"]).drivername == "postgresql+psycopg"
