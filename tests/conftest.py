"""Shared fixtures: the app on SQLite or PostgreSQL (with Redis rate limits when asked), clients,
factories for users, hubs and resource servers, and a login helper.

Backends, chosen by environment variables:
  AUTHSERVER_TEST_DATABASE_URL  e.g. postgresql://postgres@127.0.0.1:5432/postgres: a uniquely
                                named database is created beside it for the run, then dropped.
                                Unset: a SQLite file in a temporary folder.
  AUTHSERVER_TEST_REDIS_URL     e.g. redis://127.0.0.1:6379/0: rate limits live in Redis, under a
                                key prefix unique to the run. Unset: in-process memory.
A variable that is set but names a service that cannot be reached stops the run with an error;
the suite never falls back or skips silently.

The schema is created once per run by the migrations; before each test every table is emptied and
the run's rate-limit counters are dropped. SQLite commits do not wait for the disk. Each test gets
new apps, which share only compiled things (build_app); servers slow to start are shared by a
module's tests (a package's, in tests/interop), each of which begins from their seed (shared_stack).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sqlite3
from contextlib import ExitStack, contextmanager

import flask_migrate
import jinja2
import psycopg
import pytest
import redis
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from logscan import Recorder
from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import Engine, make_url
from werkzeug.routing import Rule

from authserver import accounts, create_app, rawsql, resources
from authserver.extensions import db, limiter
from authserver.models import Hub

DATABASE_ENV = "AUTHSERVER_TEST_DATABASE_URL"
REDIS_ENV = "AUTHSERVER_TEST_REDIS_URL"
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
RATELIMIT_KEY_PREFIX = f"authserver-test-{RUN_ID}"

PASSWORD = "correct horse battery"
RESOURCE = "http://127.0.0.1:8001/mcp"
#: What every test app gets unless a test says otherwise (see the app_config marker).
TEST_SETTINGS = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-long-enough-to-pass-the-production-check",
    "ISSUER": "https://auth.test",
    # argon2's cheapest parameters: the real cost (see config.py) would dominate the run.
    "PASSWORD_HASH_TIME_COST": 1,
    "PASSWORD_HASH_MEMORY_KIB": 8,
    "PASSWORD_HASH_PARALLELISM": 1,
}

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "app_config(**settings): settings for this test's `app`, over TEST_SETTINGS"
    )


def pytest_sessionstart(session):
    """Stop at once, with a non-zero status, when a requested PostgreSQL or Redis is unreachable.
    Start recording every log line for the credential scan at the end of the run."""
    _RUN_LOGS.attach()
    problems = []
    if url := os.environ.get(DATABASE_ENV):
        try:
            psycopg.connect(_libpq_url(url), connect_timeout=5).close()
        except psycopg.Error as exc:
            problems.append(f"{DATABASE_ENV}={url}: cannot connect to PostgreSQL: {exc}")
    if url := os.environ.get(REDIS_ENV):
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5) as client:
                client.ping()
        except redis.RedisError as exc:
            problems.append(f"{REDIS_ENV}={url}: cannot connect to Redis: {exc}")
    if problems:
        pytest.exit(
            "\n".join(problems) + "\nStart the service, or unset the variable to test on SQLite "
            "with in-memory rate limits.",
            returncode=3,
        )


_RUN_LOGS = Recorder()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any log line of the whole suite holds a token, code, secret or password."""
    _RUN_LOGS.detach()
    leaks = _RUN_LOGS.leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log scan: {len(_RUN_LOGS.lines)} log lines checked for credentials, {len(leaks)} found")
    if leaks:
        for line in leaks[:20]:
            reporter.write_line(f"  credential in the logs: {line[:300]}", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory):
    """Tests never read the developer's instance/ folder or AUTHSERVER_* settings."""
    instance = tmp_path_factory.mktemp("instance")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Flask, "auto_find_instance_path", lambda self: str(instance))
        for name in list(os.environ):
            if name == "FLASK_DEBUG" or (name.startswith("AUTHSERVER_") and not name.startswith("AUTHSERVER_TEST_")):
                mp.delenv(name)
        yield instance


@pytest.fixture
def instance_path(_hermetic):
    """The instance folder every test app uses (empty unless a test writes to it)."""
    yield _hermetic
    for path in _hermetic.iterdir():
        path.unlink()


# --- databases -----------------------------------------------------------------------------------
@event.listens_for(Engine, "connect")
def _sqlite_without_fsync(dbapi_connection, connection_record) -> None:
    """A test database is thrown away with the run, so no commit waits for the disk (a commit's
    fsync costs milliseconds, and the suite commits thousands of times). Transactions, locking and
    constraints are untouched: only durability across a power cut goes."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous = OFF")


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_execute(sql: str) -> None:
    with psycopg.connect(_libpq_url(os.environ[DATABASE_ENV]), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def db_backend() -> str:
    """The database the suite runs on: "sqlite" or "postgresql"."""
    return "postgresql" if os.environ.get(DATABASE_ENV) else "sqlite"


@pytest.fixture(scope="session")
def empty_database(db_backend, tmp_path_factory):
    """empty_database(label) -> URL of a new, empty database on the backend under test."""
    created: list[str] = []

    def make(label: str) -> str:
        name = f"authserver_test_{RUN_ID}_{label}"
        if db_backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / name}.sqlite3"
        _admin_execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_url(os.environ[DATABASE_ENV]).set(database=name).render_as_string(hide_password=False)

    yield make
    for name in created:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dispose(app: Flask) -> None:
    """Close an app's database connections."""
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(scope="session")
def _schema_app(empty_database):
    """An app on the run's database, whose schema it creates by running the migrations."""
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database("session")})
    with app.app_context():
        flask_migrate.upgrade()
    yield app
    dispose(app)


@pytest.fixture(scope="session")
def database_url(_schema_app) -> str:
    """The run's database, with the schema in place."""
    return _schema_app.config["DATABASE_URL"]


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get(REDIS_ENV)
    yield url
    if url:
        _drop_rate_limits(url)


def _drop_rate_limits(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"*{RATELIMIT_KEY_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def _clean_state(_schema_app, db_backend, redis_url):
    """Empty every table (much faster than recreating the schema) and drop rate-limit counters."""
    _empty(_schema_app, db_backend, redis_url)


def _empty(schema_app: Flask, db_backend: str, redis_url: str | None) -> None:
    with schema_app.app_context():
        tables = db.metadata.sorted_tables
        if db_backend == "postgresql":
            quote = db.engine.dialect.identifier_preparer.quote
            # A connection leaked by an earlier test would block TRUNCATE: fail instead of hanging.
            db.session.execute(text("SET LOCAL lock_timeout = '10s'"))
            db.session.execute(text(f"TRUNCATE {', '.join(quote(t.name) for t in tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                db.session.execute(table.delete())
        db.session.commit()
    if redis_url:
        _drop_rate_limits(redis_url)


@pytest.fixture
def advance_rate_limits(redis_url):
    """advance_rate_limits(seconds): every rate-limit window is `seconds` further on, as if they had
    passed: in memory each counter's expiry time comes nearer, in Redis each key's time to live
    shrinks (a fixed window, Flask-Limiter's strategy here, ends when either runs out)."""

    def advance(seconds: float) -> None:
        if redis_url:
            with redis.Redis.from_url(redis_url) as client:
                for key in client.scan_iter(match=f"*{RATELIMIT_KEY_PREFIX}*", count=1000):
                    left = client.pttl(key) - int(seconds * 1000)
                    if left > 0:
                        client.pexpire(key, left)
                    else:
                        client.delete(key)
        else:
            expirations = limiter.storage.expirations
            for key in list(expirations):
                expirations[key] = expirations.get(key, 0) - seconds

    return advance


# --- apps and clients ----------------------------------------------------------------------------
class _CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's compiled templates, kept in memory for the run (checked against the source)."""

    def __init__(self):
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session")
def build_app(database_url, redis_url):
    """build_app(**settings) -> a new app on the run's database, over TEST_SETTINGS, that the caller
    disposes of. Its config, extensions and limiter storage are its own; it shares with the run's
    other apps only what each would build again the same way: the engine (one per URL and engine
    options), the compiled templates and the compiled URL builders. SQLAlchemy and
    authserver.rawsql compile statements once per engine, Jinja templates once per app, werkzeug a
    Python function per route and app: redone for each test, that took longer than most tests."""
    engines: dict[str, Engine] = {}
    templates = _CompiledTemplates()
    builders: dict[tuple, object] = {}
    make_engine = SQLAlchemy._make_engine
    compile_builder = Rule._compile_builder

    def shared_engine(self, bind_key, options, app) -> Engine:
        url = make_url(options["url"]).render_as_string(hide_password=False)
        key = repr((bind_key, url, sorted((k, v) for k, v in options.items() if k != "url")))
        if key not in engines:
            engines[key] = make_engine(self, bind_key, options, app)
        return engines[key]

    def shared_builder(self, append_unknown=True):
        # The function depends on the rule's parsed parts alone (converters are looked up on the
        # rule it is bound to), except for defaults folded in as constants: those are not shared.
        if self.defaults:
            return compile_builder(self, append_unknown)
        key = (self.rule, repr(self._trace), append_unknown)
        if key not in builders:
            builders[key] = compile_builder(self, append_unknown)
        return builders[key]

    def build(**settings) -> Flask:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(SQLAlchemy, "_make_engine", shared_engine)
            mp.setattr(Rule, "_compile_builder", shared_builder)
            app = create_app(
                {
                    **TEST_SETTINGS,
                    "DATABASE_URL": database_url,
                    "REDIS_URL": redis_url,
                    # Flask-Limiter keeps the first prefix it sees for the whole process.
                    "RATELIMIT_KEY_PREFIX": RATELIMIT_KEY_PREFIX,
                    **settings,
                }
            )
        app.jinja_env.bytecode_cache = templates
        return app

    yield build
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def make_app(_clean_state, build_app):
    """make_app(**settings) -> a new app on the run's database, over TEST_SETTINGS."""
    apps: list[Flask] = []

    def make(**settings) -> Flask:
        app = build_app(**settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        dispose(app)


@pytest.fixture
def app(request, make_app) -> Flask:
    """The app under test; `@pytest.mark.app_config(NAME=value)` changes its settings."""
    marker = request.node.get_closest_marker("app_config")
    return make_app(**(marker.kwargs if marker else {}))


# --- servers shared by tests ----------------------------------------------------------------------
class Rows:
    """Every row of every table, as a fixture left them, to be put back before each test."""

    def __init__(self, app: Flask):
        with app.app_context():
            self.tables = [
                (table, [dict(row._mapping) for row in db.session.execute(select(table).order_by(*table.primary_key))])
                for table in db.metadata.sorted_tables
            ]

    def restore(self, app: Flask, db_backend: str) -> None:
        """Insert the rows again into emptied tables, with their ids (and on PostgreSQL move each
        id sequence past them, as the inserts that made them had)."""
        with app.app_context():
            for table, rows in self.tables:
                if not rows:
                    continue
                db.session.execute(insert(table), rows)
                key = table.autoincrement_column
                if db_backend == "postgresql" and key is not None:
                    db.session.execute(text("SELECT setval(pg_get_serial_sequence(:table, :column), :last)"), {
                        "table": db.engine.dialect.identifier_preparer.quote(table.name),
                        "column": key.name, "last": max(row[key.name] for row in rows),
                    })
            db.session.commit()


def stacks():
    """What shared_stack started (an ExitStack, and by key what each start() yielded)."""
    with ExitStack() as stack:
        yield stack, {}


@pytest.fixture(scope="module")
def _stacks():
    """Stacks shared by a module's tests (tests/interop widens this to its package)."""
    yield from stacks()


@pytest.fixture
def shared_stack(_clean_state, _stacks, _schema_app, db_backend, redis_url):
    """shared_stack(key, start) -> the value that `start()`, a context manager yielding (value,
    app), yields: entered once per key for the module's tests (the package's, in tests/interop),
    exited (and the app disposed of) when they are done.

    For servers that are slow to start (a live app, a subprocess) and that no test needs new: each
    test still begins from the same state, because before it the tables are emptied and the rows
    the stack was seeded with put back, and the app's rate-limit counters start again (for memory
    storage, by Flask-Limiter's own init_app, which makes new storage and reads the app's
    RATELIMIT_ENABLED; for Redis, _empty drops the run's keys). Whatever the stack keeps outside
    the database and the limiter (a subprocess's own data, an in-process cache) lives on: a test
    may rely on the seed, never on what an earlier test did. (Depending on _clean_state means a
    make_app in the same test cannot empty the tables after the seed is back.)"""
    stack, started = _stacks

    def get(key, start):
        _empty(_schema_app, db_backend, redis_url)
        if key in started:
            value, app, rows = started[key]
            rows.restore(app, db_backend)
            limiter.init_app(app)
        else:
            value, app = stack.enter_context(start())
            stack.callback(dispose, app)
            started[key] = value, app, Rows(app)
        return value

    return get


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- factories -----------------------------------------------------------------------------------
# Each factory works in its own app context, commits, and returns detached rows whose columns are
# loaded (use their ids; query again inside `app.app_context()` for relationships). Call them
# outside an open `app.app_context()` block that has uncommitted writes.
def _detached(*rows):
    db.session.commit()
    for row in rows:
        db.session.refresh(row)
        db.session.expunge(row)
    return rows if len(rows) > 1 else rows[0]


@pytest.fixture
def make_hub(app):
    """make_hub(name=None, public_id=None) -> Hub."""
    numbers = itertools.count(1)

    def make(name: str | None = None, public_id: int | None = None) -> Hub:
        with app.app_context():
            return _detached(accounts.create_hub(name or f"Hub {next(numbers)}", public_id))

    return make


@pytest.fixture
def make_user(app):
    """make_user(email=None, password=PASSWORD, role="viewer", hubs=(), name=None, disabled=False)
    -> User, a member with `role` of each hub in `hubs` (Hub rows or public ids)."""
    numbers = itertools.count(1)

    def make(email=None, password=PASSWORD, role="viewer", hubs=(), name=None, disabled=False):
        with app.app_context():
            user = accounts.create_user(email or f"user{next(numbers)}@example.com", password, name)
            user.disabled = disabled
            for hub in hubs:
                accounts.add_member(user, accounts.get_hub(hub.public_id if isinstance(hub, Hub) else hub), role)
            return _detached(user)

    return make


@pytest.fixture
def make_resource(app):
    """make_resource(uri=RESOURCE, scopes=None, default_scopes=None, name=...) -> (resource, secret).
    None means every catalog scope (and, for defaults, every accepted scope)."""

    def make(uri=RESOURCE, scopes=None, default_scopes=None, name="Test MCP server"):
        with app.app_context():
            resource, secret = resources.create(uri, name, scopes, default_scopes)
            return _detached(resource), secret

    return make


@pytest.fixture
def statements(app):
    """statements() -> a context manager collecting the SQL of every statement the app runs inside
    it, through the ORM or on raw connections (authserver.rawsql): guards of work per request."""

    @contextmanager
    def collect():
        seen: list[str] = []

        def on_execute(conn, cursor, statement, parameters, context, executemany):
            seen.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", on_execute)
        rawsql.LISTENERS.append(seen.append)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
            rawsql.LISTENERS.remove(seen.append)

    return collect


# --- browser helpers -----------------------------------------------------------------------------
def csrf_from(html: str) -> str:
    match = _CSRF_FIELD.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture
def csrf_token():
    """csrf_token(client, path="/login") -> the CSRF token of a form page in the client's session."""

    def fetch(client, path: str = "/login") -> str:
        return csrf_from(client.get(path).get_data(as_text=True))

    return fetch


@pytest.fixture
def login(csrf_token):
    """login(client, email, password=PASSWORD, ip="127.0.0.1", **fields) -> the response to the
    login form POST (extra fields, such as `next`, go into the form)."""

    def login(client, email: str, password: str = PASSWORD, ip: str = "127.0.0.1", **fields):
        data = {"csrf_token": csrf_token(client), "email": email, "password": password, **fields}
        return client.post("/login", data=data, environ_base={"REMOTE_ADDR": ip})

    return login
