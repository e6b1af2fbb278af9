"""Faults of the parts authserver stands on, PostgreSQL and Redis: how each is recognised, bounded
and answered, so that a part's outage is a 503 its clients retry (the database) or no outage at all
(Redis, an optimisation), never a 500 or a stuck worker."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import psycopg
from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .metrics import RATE_LIMIT_DEGRADED, RATE_LIMIT_FALLBACKS

log = logging.getLogger(__name__)

#: What a client is told while the database is unavailable (RFC 6749 §4.1.2.1's code, with the
#: seconds in Retry-After: a restart or a failover is over in a few).
RETRY_AFTER_SECONDS = 2
UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "The service is briefly unavailable; retry after the time in Retry-After.",
}

#: Seconds the client waits past the server's statement_timeout before giving up on a server too
#: hung to enforce it (a stopped process still has its socket accepted by the kernel).
CLIENT_MARGIN_SECONDS = 1.0
#: The connect argument that carries the client's bound to `connect_bounded`.
WAIT_TIMEOUT_ARG = "authserver_wait_timeout"


# --- the database --------------------------------------------------------------------------------
class DatabaseTimeout(psycopg.OperationalError):
    """The database did not answer within the client's bound; the connection was closed."""


class BoundedWaitConnection(psycopg.Connection):
    """A psycopg connection that gives up on a server that does not answer in `wait_timeout`
    seconds. PostgreSQL's statement_timeout bounds a slow server; a hung one (stopped, or its
    host gone quiet) cannot enforce it, and without this bound every worker thread would wait on
    it forever. The connection is closed on timeout (its state is unknown), so SQLAlchemy sees a
    disconnect and retires the pool's other connections too."""

    wait_timeout: float | None = None

    def wait(self, gen, *args, **kwargs):
        if self.wait_timeout and kwargs.get("timeout") is None and len(args) < 2:
            kwargs["timeout"] = self.wait_timeout
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.errors._WaitTimeout as error:
            self.pgconn.finish()
            raise DatabaseTimeout(f"the database did not answer within {kwargs['timeout']:g}s") from error


def connect_bounded(dialect, connection_record, cargs, cparams):
    """SQLAlchemy's do_connect hook: a BoundedWaitConnection when the engine options ask for one
    (config.finalize does on PostgreSQL), else SQLAlchemy's own connect."""
    wait_timeout = cparams.pop(WAIT_TIMEOUT_ARG, None)
    if not wait_timeout:
        return None
    connection = BoundedWaitConnection.connect(*cargs, **cparams)
    connection.wait_timeout = wait_timeout
    return connection


def postgresql_connect_args(statement_timeout_ms: int, connect_timeout: float) -> dict:
    """psycopg connect arguments: the server's statement_timeout for every session, a connect
    timeout (an unreachable or hung server fails fast), and the client's own bound."""
    args = {"connect_timeout": max(2, int(connect_timeout))}
    if statement_timeout_ms:
        args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
        args[WAIT_TIMEOUT_ARG] = int(statement_timeout_ms) / 1000 + CLIENT_MARGIN_SECONDS
    return args


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` is the database away, restarting, read-only after a failover, too slow or
    out of connections (a fault to answer 503 and have retried), rather than a bug."""
    if isinstance(error, PoolTimeout):
        return True  # every pooled connection busy for DATABASE_POOL_TIMEOUT seconds
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    if isinstance(error, (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)):
        return True  # classes 08 (connection), 53 (too many clients), 57 (shutdown, timeout) ...
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def connection_dropped(error: BaseException) -> bool:
    """Whether the database dropped the connection under a statement (it restarted, or failed
    over): a new connection may work at once, so the statement is worth one more try. A
    connection the client gave up on (DatabaseTimeout) is not: the next one would wait as long."""
    return (isinstance(error, DBAPIError) and error.connection_invalidated
            and not isinstance(error.orig, DatabaseTimeout))


# --- Redis ---------------------------------------------------------------------------------------
class ThreadSafeMemoryStorage(MemoryStorage):
    """limits' in-process storage, safe under threads. In limits 5.8 two threads' first hits can
    both start the same expiry timer ("threads can only be started once": a 500 from a gthread or
    granian worker); fixed upstream (alisaifee/limits#352) but not in a release yet. The URI
    scheme is what `create_app` gives Flask-Limiter when there is no Redis."""

    STORAGE_SCHEME = ["authserver-memory"]
    _expiry_lock = threading.Lock()

    def _MemoryStorage__schedule_expiry(self) -> None:  # the parent's private method, serialized
        with self._expiry_lock:
            MemoryStorage._MemoryStorage__schedule_expiry(self)


#: Flask-Limiter's storage without Redis (ThreadSafeMemoryStorage).
MEMORY_STORAGE_URI = "authserver-memory://"


#: Failover.charge's script: KEYS are limits' keys, ARGV three per key: 1 to hit (limits'
#: incr_expire: increment, and start the window's expiry on the first hit) or 0 to test (limits'
#: get), the window's seconds, the limit. Stops at the first key over its limit and returns its
#: position (from 1); 0 when none is. A hit is refused past the limit, a test at it (cost 1).
CHARGE_SCRIPT = """
for i = 1, #KEYS do
    local expiry = ARGV[3 * i - 1]
    local amount = tonumber(ARGV[3 * i])
    if ARGV[3 * i - 2] == "1" then
        local current = redis.call("incrby", KEYS[i], 1)
        if current == 1 then
            redis.call("expire", KEYS[i], expiry)
        end
        if current > amount then
            return i
        end
    elseif tonumber(redis.call("get", KEYS[i]) or "0") >= amount then
        return i
    end
end
return 0
"""


class Failover:
    """A rate-limit strategy (limits' hit/test/get_window_stats/clear) on the shared storage that
    counts in this process's memory while the storage is unreachable, and goes back to the shared
    storage once it answers again. Every outage is logged once when it starts and once when it
    ends, and counted in /metrics."""

    def __init__(self, shared, recheck_seconds: float):
        self.shared = shared
        self.storage = shared.storage
        self.errors = self.storage.base_exceptions
        self.recheck_seconds = float(recheck_seconds)
        self.memory = type(shared)(ThreadSafeMemoryStorage())
        self.down_since: float | None = None  # time.monotonic() of the first failure; None: up
        self.script = None  # CHARGE_SCRIPT registered on the storage's client, where it applies
        if (isinstance(shared, FixedWindowRateLimiter) and isinstance(self.storage, RedisStorage)
                and not isinstance(self.storage, RedisClusterStorage)):
            self.script = self.storage.get_connection().register_script(CHARGE_SCRIPT)
        self.next_check = 0.0
        self.lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return self.down_since is not None

    def hit(self, item, *identifiers, cost: int = 1) -> bool:
        return self._run("hit", item, *identifiers, cost=cost)

    def test(self, item, *identifiers, cost: int = 1) -> bool:
        return self._run("test", item, *identifiers, cost=cost)

    def get_window_stats(self, item, *identifiers):
        return self._run("get_window_stats", item, *identifiers)

    def clear(self, item, *identifiers) -> None:
        return self._run("clear", item, *identifiers)

    def charge(self, ops) -> int | None:
        """Several limits in order, each (op, item, identifiers) with op "hit" or "test" (as the
        methods of those names, cost 1), stopping at the first refused: its index, or None when
        none is. On a plain Redis (or Sentinel) storage with the fixed-window strategy all of them
        go in one round trip, a script doing what limits' own incr_expire and get do on the same
        keys; otherwise (memory, a cluster, another strategy, or while Redis is down) one call
        each, through the failover as ever."""
        if self.down_since is None and self.script is not None:
            keys, args = [], []
            for op, item, identifiers in ops:
                keys.append(self.storage.prefixed_key(item.key_for(*identifiers)))
                args.extend((1 if op == "hit" else 0, item.get_expiry(), item.amount))
            try:
                refused = int(self.script(keys=keys, args=args))
            except self.errors as error:
                self._failed(error)
            else:
                return refused - 1 if refused else None
        for index, (op, item, identifiers) in enumerate(ops):
            if not getattr(self, op)(item, *identifiers):
                return index
        return None

    def check(self) -> bool:
        """Ask the shared storage now whether it answers (readiness asks on every call); moves to
        memory or back accordingly. True while it answers."""
        if self.storage.check():
            self._recovered()
            return True
        self._failed("no answer to PING")
        return False

    def _run(self, name: str, *args, **kwargs):
        if self.down_since is not None and not self._due_and_back():
            return getattr(self.memory, name)(*args, **kwargs)
        try:
            return getattr(self.shared, name)(*args, **kwargs)
        except self.errors as error:
            self._failed(error)
            return getattr(self.memory, name)(*args, **kwargs)

    def _due_and_back(self) -> bool:
        """While down: whether this call is the one that looks again (at most one per
        recheck_seconds per process), and found the storage back."""
        with self.lock:
            if time.monotonic() < self.next_check:
                return False
            self.next_check = time.monotonic() + self.recheck_seconds
        return self.check()

    def _failed(self, error) -> None:
        with self.lock:
            self.next_check = time.monotonic() + self.recheck_seconds
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.memory = type(self.shared)(ThreadSafeMemoryStorage())  # nothing left over from an earlier outage
        RATE_LIMIT_FALLBACKS.inc()
        RATE_LIMIT_DEGRADED.set(1)
        log.warning("rate-limit storage unreachable (%s): counting limits in this process's memory "
                    "until it answers again", type(error).__name__ if isinstance(error, Exception) else error)

    def _recovered(self) -> None:
        with self.lock:
            if self.down_since is None:
                return
            seconds, self.down_since = time.monotonic() - self.down_since, None
        RATE_LIMIT_DEGRADED.set(0)
        log.warning("rate-limit storage answers again after %.0fs: limits are shared again", seconds)
