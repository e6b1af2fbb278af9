"""Introspection answers remembered per worker, and forgotten when what they depend on changes.

Every MCP tool call starts with an introspection, usually of a token introspected moments before.
On PostgreSQL each worker remembers the database row behind an active answer (store's
introspection row: the token, its grant, the user, the hub, the client, the live membership) for
at most INTROSPECTION_CACHE_SECONDS, so that repeating it costs no round trip. The answer itself
is still computed for each request from that row (expiry, live permissions), so only a change to
those rows can make it stale, and every such change reaches every worker's cache:

- **Anywhere** (another worker, another instance, the CLI, an operator's SQL): triggers on those
  tables (migration 0011) send `NOTIFY authserver_changes` in the changing transaction, delivered
  when it commits: the token's access-token hash when a token is revoked, narrowed, shortened or
  deleted; "*" (forget everything) when a grant, user, membership, hub or client changes in a way
  an answer reads, or a table is truncated. Each worker has one thread LISTENing on its own
  connection (a `Feed`), which drops what the notification names within milliseconds. One change
  is not announced (migration 0012): a refresh ending the rotated pair's own access token
  (housekeeping, not a revocation: its client holds the new pair). Announced, every refresh took
  PostgreSQL's notification lock at commit and woke every worker's thread; unannounced, that
  access token ends at once in the worker that rotated it (below) and within the bound elsewhere.
- **In this worker**, at once: a statement that makes such a change (the same rule as the
  triggers', read from its SQL) marks its connection, and the commit forgets every answer before
  the request that committed it returns (so a revocation answered here is never followed by a
  stale answer from here). A refresh's rotation, whose only such change is the end of the
  rotated pair's own access token, forgets that token's answer alone when the statement is run
  naming it (store.rotate_refresh_token, store.consume_refresh_token): a worker that answers
  both refreshes and introspections keeps its other answers. Run without the name, it forgets
  every answer, as any other change does.
- **Never later than INTROSPECTION_CACHE_SECONDS** after the row was read, whatever happens to
  the notifications: the bound is what is configured and documented, the notifications make the
  usual delay milliseconds.

While a worker's listening connection is down (a database restart) its caches answer nothing and
keep nothing, until it listens again (then they start empty: what changed meanwhile is unknown).
A read that began before a change and ends after it is not kept: each put carries the cache's
generation from before its read, and every notification or local commit moves the generation on.
Misses and inactive answers are never kept (a token issued a moment later must work at once).
SQLite has no notifications: there the cache is off.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger(__name__)

#: The notification channel the migration's triggers send on.
CHANNEL = "authserver_changes"
#: The payload that means "forget every answer".
EVERYTHING = "*"
#: Set on a DBAPI connection's info when a statement on it changed what answers depend on.
CHANGED = "authserver.changed"
#: On a DBAPI connection's info: the access-token hashes whose answers rotations on it ended
#: (statement_ran's `ends`), forgotten one by one at the commit unless CHANGED is set too.
ENDED = "authserver.ended"
#: Seconds between attempts to listen again after the listening connection failed (doubling).
RETRY_FIRST, RETRY_MAX = 0.1, 5.0

#: Per table, the columns whose change (UPDATE) reaches cached answers, or None: any UPDATE
#: does. DELETE and TRUNCATE of these tables always do; INSERT never does (a new token has a new
#: hash; a new membership, grant or user has no active answer cached yet). migration 0011's
#: triggers use the same lists.
WATCHED = {
    "tokens": ("revoked_at", "access_revoked_at", "scope", "access_expires_at", "issued_at", "access_token_hash",
               "grant_id", "client_pk"),
    "grants": ("revoked_at", "user_id", "hub_id", "resource_id"),
    "users": ("disabled",),
    "memberships": None,
    "hubs": ("public_id",),
    "clients": ("client_id",),
    "resource_servers": (),  # deleting one deletes its grants and tokens (ON DELETE CASCADE)
}
_TABLES = "|".join(WATCHED)
_CHANGE = re.compile(
    rf"\b(?:(UPDATE)\s+\"?({_TABLES})\"?\s+SET\s+(.*?)(?:\bWHERE\b|\bFROM\b|\bRETURNING\b|$)"
    rf"|DELETE\s+FROM\s+\"?(?:{_TABLES})\b|TRUNCATE\b(?:\s+TABLE)?[^;]*\b(?:{_TABLES})\b"
    rf"|INSERT\s+INTO\s+\"?(?:{_TABLES})\b.*\bON\s+CONFLICT\b.*\bDO\s+UPDATE\b)",
    re.IGNORECASE | re.DOTALL,
)
_ASSIGNED = re.compile(r"\"?(\w+)\"?\s*=")
#: What a refresh's rotation assigns on the rotated row (store._ROTATE): of the watched columns
#: only access_revoked_at, the end of the rotated pair's own access token (migration 0012's
#: trigger does not announce it either).
ROTATION = frozenset({"rotated_at", "access_revoked_at", "replay"})
#: What a statement does to cached answers (changes_of).
NOTHING, ROTATES, EVERYTHING_CHANGES = "nothing", "rotates", "everything"
_CLASSIFIED: dict[str, str] = {}


def changes_of(sql: str) -> str:
    """What a statement can do to cached introspection answers: NOTHING; ROTATES, when its only
    change to what they read is tokens rows' rotation (ROTATION's columns); else
    EVERYTHING_CHANGES. Remembered per SQL text: statements repeat."""
    found = _CLASSIFIED.get(sql)
    if found is None:
        found = NOTHING
        for match in _CHANGE.finditer(sql):
            if not match.group(1):  # DELETE, TRUNCATE, or an upsert that may update (its columns unread)
                found = EVERYTHING_CHANGES
                break
            table = match.group(2).lower()
            columns = WATCHED[table]
            assigned = {c.lower() for c in _ASSIGNED.findall(match.group(3) or "")}
            if columns is not None and not assigned & set(columns):
                continue
            if table == "tokens" and assigned <= ROTATION:
                found = ROTATES
                continue
            found = EVERYTHING_CHANGES
            break
        if len(_CLASSIFIED) < 10000:
            _CLASSIFIED[sql] = found
    return found


def changes_answers(sql: str) -> bool:
    """Whether a statement can change a cached introspection answer."""
    return changes_of(sql) != NOTHING


class AnswerCache:
    """One app's remembered introspection rows: token hash -> (resource server id, row, when
    read). Bounded in age (max_age seconds) and in size (max_entries, the oldest go first)."""

    def __init__(self, feed: "Feed", max_age: float, max_entries: int):
        self.feed = feed
        self.max_age = max_age
        self.max_entries = max_entries
        self.entries: dict[str, tuple[int, object, float]] = {}
        self.generation = 0
        self.lock = threading.Lock()

    def get(self, token_hash: str, resource_id: int):
        """The row read for this token and resource server, if still good; else None."""
        if not self.feed.live:
            return None
        found = self.entries.get(token_hash)
        if found is None or found[0] != resource_id:
            return None
        if time.monotonic() - found[2] > self.max_age:
            self.entries.pop(token_hash, None)
            return None
        return found[1]

    def put(self, token_hash: str, resource_id: int, row, generation: int) -> None:
        """Keep a row read while the cache was at `generation` (read before the read began), unless
        anything changed since."""
        with self.lock:
            if generation != self.generation or not self.feed.live:
                return
            if len(self.entries) >= self.max_entries and token_hash not in self.entries:
                self.entries.pop(next(iter(self.entries)))
            self.entries[token_hash] = (resource_id, row, time.monotonic())

    def forget(self, token_hash: str | None) -> None:
        """Forget one token's row (None: every row); reads under way are not kept either."""
        with self.lock:
            self.generation += 1
            if token_hash is None:
                self.entries.clear()
            else:
                self.entries.pop(token_hash, None)


class Feed:
    """One database's change notifications in this process: a daemon thread LISTENing on its own
    connection, and the caches of every app on that database, told what changed."""

    def __init__(self, conninfo: str, connect_timeout: int):
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.caches: weakref.WeakSet[AnswerCache] = weakref.WeakSet()
        self.live = False
        self.listening = threading.Event()  # set while live (tests wait on it)
        self.connection = None
        self.thread = threading.Thread(target=self.run, name="authserver-changes", daemon=True)
        self.thread.start()

    def forget(self, token_hash: str | None) -> None:
        for cache in list(self.caches):
            cache.forget(token_hash)

    def run(self) -> None:
        import psycopg

        delay = RETRY_FIRST
        while True:
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self.connect_timeout,
                                     keepalives=1, keepalives_idle=10, keepalives_interval=5,
                                     keepalives_count=3, application_name="authserver-changes") as conn:
                    self.connection = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.forget(None)  # whatever changed while nobody listened is unknown
                    self.live = True
                    self.listening.set()
                    delay = RETRY_FIRST
                    for notification in conn.notifies():
                        payload = notification.payload
                        self.forget(None if payload == EVERYTHING else payload)
            except Exception as error:  # the connection failed: stop answering from the caches
                if self.live:
                    log.warning("change notifications stopped (%s); introspection answers are read "
                                "from the database until they resume", type(error).__name__)
            finally:
                self.live = False
                self.listening.clear()
                self.connection = None
                self.forget(None)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


#: (process id, conninfo) -> Feed: a feed started before a fork belongs to the parent.
_FEEDS: dict[tuple[int, str], Feed] = {}
_FEEDS_LOCK = threading.Lock()


def _conninfo(engine: Engine) -> str:
    """libpq's connection string for the engine's database (rendered once per engine: every
    commit that changed answers looks its feed up)."""
    found = getattr(engine, "_authserver_conninfo", None)
    if found is None:
        found = engine._authserver_conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
    return found


def feed_for(engine: Engine, connect_timeout: int) -> Feed:
    conninfo = _conninfo(engine)
    key = (os.getpid(), conninfo)
    with _FEEDS_LOCK:
        feed = _FEEDS.get(key)
        if feed is None:
            feed = _FEEDS[key] = Feed(conninfo, connect_timeout)
        return feed


def _feeds_of(engine: Engine) -> list[Feed]:
    feed = _FEEDS.get((os.getpid(), _conninfo(engine)))
    return [feed] if feed is not None else []


def committed(engine: Engine, info: dict) -> None:
    """A connection of `engine` committed: if it changed what answers depend on, forget them all
    in this process, before the request returns (only the access tokens its rotations ended, when
    those were its only changes)."""
    everything, ended = info.pop(CHANGED, False), info.pop(ENDED, None)
    if everything or ended:
        for feed in _feeds_of(engine):
            if everything:
                feed.forget(None)
            else:
                for token_hash in ended:
                    feed.forget(token_hash)


def rolled_back(info: dict) -> None:
    """A connection's transaction was rolled back: what its statements changed did not happen."""
    info.pop(CHANGED, None)
    info.pop(ENDED, None)


def watch(engine: Engine) -> None:
    """Follow `engine`'s own statements and commits (the ORM's; rawsql reports its own through
    statement_ran and committed)."""
    if getattr(engine, "_authserver_watched", False):
        return
    engine._authserver_watched = True

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(conn, cursor, statement, parameters, context, executemany):
        if changes_answers(statement):
            conn.info[CHANGED] = True
            if conn.connection.driver_connection.autocommit:
                committed(engine, conn.info)

    @event.listens_for(engine, "commit")
    def _commit(conn):
        committed(engine, conn.info)

    @event.listens_for(engine, "rollback")
    def _rollback(conn):
        rolled_back(conn.info)


def statement_ran(engine: Engine, info: dict, sql: str, autocommit: bool, ends: str | None = None) -> None:
    """rawsql ran `sql` on a connection whose info is `info` (in autocommit: already committed).
    `ends`: the hash of the access token a rotation ends (the rotated row's own), whose answer
    alone is then forgotten if the statement's only change is that rotation."""
    kind = changes_of(sql)
    if kind == NOTHING:
        return
    if kind == ROTATES and ends is not None:
        info.setdefault(ENDED, []).append(ends)
    else:
        info[CHANGED] = True
    if autocommit:
        committed(engine, info)


def init_app(app) -> None:
    """Give the app an answer cache when its database can notify (PostgreSQL with psycopg) and
    INTROSPECTION_CACHE_SECONDS is above 0."""
    from .config import ConfigError

    app.extensions["authserver.answers"] = None
    seconds, entries = app.config["INTROSPECTION_CACHE_SECONDS"], app.config["INTROSPECTION_CACHE_ENTRIES"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
        raise ConfigError(f"AUTHSERVER_INTROSPECTION_CACHE_SECONDS must be a number of seconds from 0 to 3600, "
                          f"got {seconds!r}.")
    if isinstance(entries, bool) or not isinstance(entries, int) or not 1 <= entries <= 10_000_000:
        raise ConfigError(f"AUTHSERVER_INTROSPECTION_CACHE_ENTRIES must be a whole number from 1 to 10000000, "
                          f"got {entries!r}.")
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if seconds <= 0 or url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
        return
    app.extensions["authserver.answers"] = _Pending(float(seconds), entries,
                                                    max(2, int(app.config["DATABASE_CONNECT_TIMEOUT"])))
    from .extensions import db

    with app.app_context():
        watch(db.engine)  # before any answer is kept: no commit of this engine goes unseen


class _Pending:
    """An answer cache not made yet: the feed's thread starts at the first introspection in each
    process (a pre-forking server imports the app before it forks)."""

    def __init__(self, max_age: float, max_entries: int, connect_timeout: int):
        self.max_age, self.max_entries, self.connect_timeout = max_age, max_entries, connect_timeout
        self.made: AnswerCache | None = None
        self.pid = 0


def cache(app, engine: Engine) -> AnswerCache | None:
    """The app's answer cache in this process (None: off)."""
    pending = app.extensions.get("authserver.answers")
    if pending is None:
        return None
    if pending.pid == os.getpid():
        return pending.made
    made = AnswerCache(feed_for(engine, pending.connect_timeout), pending.max_age, pending.max_entries)
    made.feed.caches.add(made)
    pending.made, pending.pid = made, os.getpid()
    return made
