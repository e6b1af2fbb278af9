"""Hot-path statements run on the pool's DBAPI connections, without SQLAlchemy's per-execution work.

A statement is still written with SQLAlchemy Core against the models (so it follows the schema and
every dialect); it is compiled once per engine into the driver's own SQL and run with a plain
cursor. On PostgreSQL that costs about a third of `Connection.execute` in CPU (measured: 42 µs
against 140 µs for the introspection join), and psycopg prepares it server-side after a few uses.
Type conversions SQLAlchemy would apply (SQLite's dates and JSON) are applied here the same way.

`read_one` runs a single read in autocommit mode: no BEGIN and no ROLLBACK round trips; `read`
and `read_all` do the same unless the request has already begun a transaction in its session,
which they then join (so that a request reads what it wrote). `read_ahead` runs several one-row
reads a request is about to make as one statement, and `read` answers each from it.
`transaction()` runs several statements in one transaction, committed when the block ends.
Neither touches the ORM session, so a request using them must not hold session writes.

On PostgreSQL the autocommit statements run on connections kept in autocommit for good
(`_AutocommitPool`), not on the engine's pool: checking a connection out of SQLAlchemy's pool,
switching it to autocommit and back, and its reset on return cost about as much CPU as the
statement itself (measured: 65 µs against 31 µs for a one-row read), and a pooled connection loses
its prepared statements whenever an ORM transaction on it is rolled back (psycopg then sends
DEALLOCATE ALL).
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from contextlib import contextmanager

import psycopg
from flask import g
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from sqlalchemy import bindparam, event, insert, literal_column, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from . import changes
from .extensions import db
from .faults import connection_dropped


#: Callables given the SQL of every statement run here (tests count statements per request).
LISTENERS: list = []


class Statement:
    """A Core statement, compiled once per engine to (driver SQL, bind and result processors)."""

    def __init__(self, statement):
        self.statement = statement
        self._compiled: dict[int, tuple] = {}

    def compiled(self, engine: Engine) -> tuple:
        found = self._compiled.get(id(engine))
        if found is None or found[0] is not engine:
            found = (engine, *self._compile(engine))
            self._compiled[id(engine)] = found
        return found[1:]

    def _compile(self, engine: Engine) -> tuple:
        dialect = engine.dialect
        if dialect.positional:
            # Named parameters work with every driver we support (sqlite3 takes :name).
            dialect = type(dialect)(paramstyle="named")
            dialect.server_version_info = engine.dialect.server_version_info
        compiled = self.statement.compile(dialect=dialect)
        binders = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
            if processor is not None:
                binders[compiled.bind_names[bind]] = processor
        row_type, processors = None, None
        if self.statement.is_select or getattr(self.statement, "_returning", None):
            columns = list(self.statement.selected_columns if self.statement.is_select else self.statement._returning)
            names = [c.key if c.key else c.name for c in columns]
            row_type = collections.namedtuple("Row", names, rename=True)
            processors = [c.type.dialect_impl(engine.dialect).result_processor(engine.dialect, None) for c in columns]
            if not any(processors):
                processors = None
        return str(compiled), binders, row_type, processors

    def bind(self, engine: Engine, params: dict) -> tuple[str, dict]:
        sql, binders, _, _ = self.compiled(engine)
        if binders:
            params = {k: (binders[k](v) if k in binders else v) for k, v in params.items()}
        return sql, params

    def rows(self, engine: Engine, raw_rows) -> list:
        _, _, row_type, processors = self.compiled(engine)
        if processors is None:
            return [row_type(*r) for r in raw_rows]
        return [row_type(*(p(v) if p else v for p, v in zip(processors, r))) for r in raw_rows]


def insert_into(model, *columns: str) -> Statement:
    """INSERT INTO the model's table of the named columns, each bound to the parameter of its
    name with the column's own type (so JSON, dates and binary values are converted as the ORM
    would convert them)."""
    table = model.__table__
    return Statement(insert(table).values({name: bindparam(name, type_=table.c[name].type) for name in columns}))


class Transaction:
    """Statements on one DBAPI connection inside one transaction."""

    def __init__(self, engine: Engine, connection):
        self.engine = engine
        self.connection = connection

    def execute(self, statement: Statement, params: dict, ends: str | None = None):
        """Run a statement; returns the cursor (rowcount) for DML without RETURNING. `ends`: the
        hash of the access token a rotation ends (changes.statement_ran)."""
        sql, bound = statement.bind(self.engine, params)
        for listener in LISTENERS:
            listener(sql)
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, bound)
        except self.engine.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, sql, bound, cursor) from error
        if getattr(self.engine, "_authserver_watched", False):  # answers are cached: changes.py
            changes.statement_ran(self.engine, self.connection.info, sql,
                                  self.connection.driver_connection.autocommit, ends)
        return cursor

    def commit(self) -> None:
        try:
            self.connection.commit()
        except self.engine.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, "COMMIT", None, None) from error
        changes.committed(self.engine, self.connection.info)

    def wrapped(self, error, sql: str, params, cursor) -> DBAPIError:
        """The driver's error as SQLAlchemy's Connection would raise it (an IntegrityError, an
        OperationalError...), so the ORM's and these statements' errors are handled alike."""
        invalidated = self.engine.dialect.is_disconnect(error, self.connection.driver_connection, cursor)
        if invalidated:
            # The database went away (a restart, a failover): as SQLAlchemy's own Connection
            # does, retire every connection of this generation, so that one request per
            # worker meets the dead pool rather than one per pooled connection (there is no
            # pre-ping: it would cost a round trip on every request).
            self.engine.pool._invalidate(self.connection, error)
        return DBAPIError.instance(sql, params, error, self.engine.dialect.loaded_dbapi.Error,
                                   hide_parameters=True, connection_invalidated=invalidated,
                                   dialect=self.engine.dialect)

    def one(self, statement: Statement, params: dict, ends: str | None = None):
        """The first row (with attribute access) of a SELECT or a RETURNING statement, or None."""
        cursor = self.execute(statement, params, ends)
        row = cursor.fetchone()
        cursor.close()
        return statement.rows(self.engine, [row])[0] if row is not None else None

    def all(self, statement: Statement, params: dict) -> list:
        """Every row (with attribute access) of a SELECT or a RETURNING statement."""
        cursor = self.execute(statement, params)
        rows = cursor.fetchall()
        cursor.close()
        return statement.rows(self.engine, rows)


def in_session() -> Transaction:
    """The ORM session's own connection, so that raw statements join the request's one
    transaction (committed or rolled back with it by the view). Remembered for as long as the
    session's transaction lasts (a hot path runs several statements)."""
    session = db.session()
    transaction = session.get_transaction()
    cached = session.info.get("authserver.raw")
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1]
    connection = session.connection()
    raw = Transaction(connection.engine, connection.connection)
    session.info["authserver.raw"] = (session.get_transaction(), raw)
    return raw


def _is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def is_postgresql() -> bool:
    """Whether the app's database is PostgreSQL (some hot paths have a one-statement form there)."""
    return _is_postgresql(db.engine)


@contextmanager
def connection(autocommit: bool):
    """A pooled DBAPI connection. A connection the driver reports broken is discarded (invalidated)
    rather than returned to the pool, so the next checkout gets a fresh one. On PostgreSQL an
    autocommit one comes from the engine's _AutocommitPool."""
    engine = db.engine
    if autocommit and _is_postgresql(engine):
        lane = _AutocommitPool.of(engine)
        conn = lane.take()
        try:
            yield Transaction(engine, conn)
        except BaseException:
            changes.rolled_back(conn.info)  # each statement that ran committed (and reported) itself
            if not conn.idle():
                conn.invalidate()
            raise
        finally:
            lane.give_back(conn)
        return
    pooled = engine.raw_connection()
    try:
        yield Transaction(engine, pooled)
    except BaseException:
        changes.rolled_back(pooled.info)  # rolled back: nothing changed
        if pooled.is_valid:  # not already retired by Transaction.execute
            try:
                pooled.rollback()
            except engine.dialect.loaded_dbapi.Error:
                pooled.invalidate()
        raise
    finally:
        pooled.close()


class _Autocommit:
    """A PostgreSQL connection that stays in autocommit, with the parts of SQLAlchemy's pooled
    connection that Transaction uses (cursor, commit, driver_connection, is_valid, invalidate)."""

    __slots__ = ("driver_connection", "pool", "born", "is_valid", "kept", "info")

    def __init__(self, driver_connection, pool, born: float):
        self.driver_connection = driver_connection
        self.pool = pool  # the engine's pool it was made from (a disposed engine has a new one)
        self.born = born
        self.is_valid = True
        self.kept: _KeptCursor | None = None
        self.info: dict = {}  # as a pooled connection's (changes.py marks what a statement changed)

    def cursor(self):
        """One cursor for every statement (a connection runs one at a time): making one per
        statement cost a third of a one-row read's CPU on the client."""
        if self.kept is None:
            self.kept = _KeptCursor(self.driver_connection)
        return self.kept

    def commit(self) -> None:
        """Nothing to commit: every statement committed itself."""

    def invalidate(self, error: BaseException | None = None) -> None:
        """Closed for good (Transaction.wrapped calls this, through the engine's pool, when the
        database went away)."""
        self.is_valid = False
        try:
            self.driver_connection.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped either way
            pass

    def idle(self) -> bool:
        """Whether it can serve another statement: open, and not inside a transaction or a
        statement (an interrupted one leaves it neither)."""
        driver = self.driver_connection
        return self.is_valid and not driver.closed and driver.pgconn.transaction_status == TransactionStatus.IDLE


class _KeptCursor(psycopg.Cursor):
    """A cursor its connection keeps for the next statement: closing it after a statement (as
    Transaction's callers do) does nothing (its next statement replaces the result); the
    connection's close ends it."""

    def close(self) -> None:
        pass


class _AutocommitPool:
    """The autocommit connections of one engine: a stack of idle ones (list.append and list.pop
    are atomic), taken by one statement or one request's few at a time. A connection is made as
    the engine's pool makes one (its connect events run: the bounded wait, the statement timeout),
    then detached from it and switched to autocommit once. It is retired as the engine's pool
    retires its own: past the engine's pool_recycle, when the pool has been invalidated since it
    was made (the database went away: Transaction.wrapped), or disposed (the engine_disposed
    event closes the idle ones; a busy one is closed when it comes back). At most `keep` idle
    ones are kept; at most as many are in use as threads run statements at once."""

    _pools: dict[int, _AutocommitPool] = {}
    _lock = threading.Lock()

    def __init__(self, engine: Engine):
        self.engine = engine
        self.idle: list[_Autocommit] = []
        self.keep = max(1, engine.pool.size()) if hasattr(engine.pool, "size") else 5
        recycle = getattr(engine.pool, "_recycle", -1)
        self.recycle = recycle if recycle and recycle > 0 else None

    @classmethod
    def of(cls, engine: Engine) -> _AutocommitPool:
        found = cls._pools.get(id(engine))
        if found is not None and found.engine is engine:
            return found
        with cls._lock:
            found = cls._pools.get(id(engine))
            if found is None or found.engine is not engine:
                found = cls._pools[id(engine)] = cls(engine)
                event.listen(engine, "engine_disposed", found.dispose)
        return found

    def take(self) -> _Autocommit:
        pool = self.engine.pool
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                return self.new()
            if self.usable(conn, pool):
                return conn
            conn.invalidate()

    def usable(self, conn: _Autocommit, pool) -> bool:
        if conn.pool is not pool or conn.born < pool._invalidate_time:
            return False
        if self.recycle is not None and time.time() - conn.born > self.recycle:
            return False
        return conn.is_valid and not conn.driver_connection.closed

    def new(self) -> _Autocommit:
        pool = self.engine.pool
        born = time.time()
        pooled = pool.connect()
        driver = pooled.driver_connection
        pooled.detach()  # the engine's pool forgets it (and counts one connection fewer)
        try:
            driver.autocommit = True
            set_json_loads(_json_loads, driver)
        except BaseException:
            driver.close()
            raise
        return _Autocommit(driver, pool, born)

    def give_back(self, conn: _Autocommit) -> None:
        if conn.is_valid and conn.pool is self.engine.pool and len(self.idle) < self.keep and conn.idle():
            self.idle.append(conn)
        elif conn.is_valid:
            conn.invalidate()

    def dispose(self, engine: Engine | None = None) -> None:
        """The engine was disposed of: close the idle connections, and forget the engine (one used
        again gets a new _AutocommitPool; a test run disposes of hundreds)."""
        with self._lock:
            if self._pools.get(id(self.engine)) is self:
                del self._pools[id(self.engine)]
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                return
            conn.invalidate()

    @classmethod
    def forget_all(cls) -> None:
        """In a forked child: the parent's connections are not ours to use or close."""
        _FORKED_AWAY.extend(cls._pools.values())  # kept referenced: their finalizers would close the parent's sockets
        cls._pools = {}


def _json_loads(data: bytes):
    """json.loads, but for the empty list, which most rows' JSON lists are (a membership's
    granted and denied permissions), answered without parsing."""
    return [] if data == b"[]" else json.loads(data)


#: Pools inherited from a parent process, never used (see _AutocommitPool.forget_all).
_FORKED_AWAY: list = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_AutocommitPool.forget_all)


def read_one(statement: Statement, params: dict):
    """The first row of one read, outside any transaction; retried once on a fresh connection when
    the pooled one turns out to be dead (there is no pre-ping on checkout: it would cost a round
    trip on every request). Not after a timeout: the next try would wait as long."""
    return _outside(Transaction.one, statement, params)


def _outside(method, statement: Statement, params: dict):
    """`method` (Transaction.one or .all) run on a pooled connection in autocommit, as read_one."""
    try:
        with connection(autocommit=True) as conn:
            return method(conn, statement, params)
    except DBAPIError as error:
        if not connection_dropped(error):
            raise
        with connection(autocommit=True) as conn:
            return method(conn, statement, params)


def in_transaction() -> bool:
    """Whether the request has work in its ORM session: a transaction that holds a connection
    (read or written through it), or objects added or changed and not yet flushed. (Adding a
    loaded row, as store.adopt does, begins the session's transaction object but no database
    transaction: SQLAlchemy's SessionTransaction keeps its connections in `_connections`.)"""
    if not db.session.registry.has():
        return False  # no session yet: nothing in one (and none is made just to ask)
    session = db.session()
    transaction = session.get_transaction()
    if transaction is not None and transaction._connections:
        return True
    return bool(session.new or session.dirty or session.deleted)


def read(statement: Statement, params: dict):
    """The first row of one read (or None): the answer `read_ahead` got for it, if any; else in the
    session's transaction when the request has begun one, so that it sees what the request wrote
    (a metadata-document client saved moments ago); otherwise outside any (read_one), so that a
    request that only reads sends no BEGIN and no COMMIT."""
    found = _take(statement, params)
    if found is not _MISSING:
        return found
    if in_transaction():
        return in_session().one(statement, params)
    return read_one(statement, params)


def read_all(statement: Statement, params: dict) -> list:
    """Every row of one read, where `read` would run it (or as read_ahead read it)."""
    found = _take(statement, params)
    if found is not _MISSING:
        return found
    if in_transaction():
        return in_session().all(statement, params)
    return _outside(Transaction.all, statement, params)


@contextmanager
def transaction():
    """Statements in one transaction on a pooled connection, committed at the end of the block."""
    with connection(autocommit=False) as conn:
        yield conn
        conn.commit()


#: Where a request keeps the answers of its read_ahead until `read` takes them (in g: as long as
#: the request's app context, as its session; kept there so that reading ahead makes no session).
_AHEAD = "authserver.read_ahead"
#: The combined statement of each tuple of reads read_ahead has run (built and compiled once).
_COMBINED: dict[tuple, Statement] = {}


def _key(statement: Statement, params: dict) -> tuple:
    return statement, tuple(sorted(params.items()))


def _take(statement: Statement, params: dict):
    """What read_ahead read for this read, once (then forgotten); _MISSING when it read nothing."""
    ahead = g.get(_AHEAD)
    if ahead:
        return ahead.pop(_key(statement, params), _MISSING)
    return _MISSING


_MISSING = object()


def _combined(statements: tuple[Statement, ...], many: Statement | None) -> Statement:
    """One statement answering each of `statements` side by side, then `many`: each a subquery
    LEFT JOINed ON true to a one-row base, so a read that finds nothing leaves its columns NULL and
    the others still answer; `many`'s rows make the statement's rows, in its own order."""
    found = _COMBINED.get((statements, many))
    if found is None:
        base = select(literal_column("1").label("one")).subquery("ahead")
        joined, columns, order = base, [], []
        for index, statement in enumerate((*statements, *([many] if many is not None else []))):
            part = statement.statement.subquery(f"ahead_{index}")
            joined = joined.outerjoin(part, true())
            columns.extend(column.label(f"ahead_{index}_{number}") for number, column in enumerate(part.c))
            if statement is many:
                # A subquery's ORDER BY binds nothing outside it: order by its columns out here.
                order = [part.corresponding_column(clause) for clause in many.statement._order_by_clauses]
        found = _COMBINED[(statements, many)] = Statement(select(*columns).select_from(joined).order_by(*order))
    return found


def _part(row_type, values) -> tuple | None:
    """`values` (a slice of the combined row) as a row of `row_type` (a statement's own row
    type); None when all are NULL."""
    return None if all(value is None for value in values) else row_type(*values)


def read_ahead(reads: list[tuple[Statement, dict]], many: tuple[Statement, dict] | None = None) -> None:
    """Run the reads a request is about to make as one statement in one round trip, outside any
    transaction, before the request writes anything: `reads`, each a Statement that finds at most
    one row (by a unique key), and `many`, a read of any number of rows (whose columns are never
    all NULL); `read` and `read_all` then answer each of them once from what was read here, as
    they would have found it (a row or None; a list of rows). Their parameters have distinct
    names."""
    if len(reads) + (many is not None) < 2:
        return  # nothing to save: each is read when asked for
    everything = [*reads, *([many] if many is not None else [])]
    params: dict = {}
    for _, values in everything:
        params.update(values)
    if len(params) != sum(len(values) for _, values in everything):
        raise ValueError("read_ahead: the reads' parameters must have distinct names")
    statements = tuple(statement for statement, _ in reads)
    rows = _outside(Transaction.all, _combined(statements, many[0] if many else None), params)
    engine = db.engine
    ahead = g.setdefault(_AHEAD, {})
    position = 0
    for statement, values in reads:
        row_type = statement.compiled(engine)[2]
        width = len(row_type._fields)
        ahead[_key(statement, values)] = _part(row_type, rows[0][position:position + width])
        position += width
    if many is not None:
        row_type = many[0].compiled(engine)[2]
        found = (_part(row_type, row[position:]) for row in rows)
        ahead[_key(*many)] = [row for row in found if row is not None]
