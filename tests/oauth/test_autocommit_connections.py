"""PostgreSQL's autocommit statements (rawsql.connection(autocommit=True): the lane's reads, its
one-statement refresh, code exchange and registration) run on connections kept in autocommit,
apart from the engine's pool: one is reused from request to request, never lent while inside a
transaction or a statement, and retired as the pool retires its own (dispose, a dropped
connection)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select

from authserver import rawsql, store
from authserver.extensions import db
from authserver.models import Client
from conftest import dispose


@pytest.fixture
def lane(app):
    """The app engine's autocommit connections (PostgreSQL only)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the autocommit connections are PostgreSQL's")
        return rawsql._AutocommitPool.of(db.engine)


def _backend(conn) -> int:
    return conn.driver_connection.info.backend_pid


def test_one_connection_serves_request_after_request(app, flow, register, lane):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    for _ in range(3):
        tokens = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    assert len(lane.idle) == 1
    (conn,) = lane.idle
    assert conn.driver_connection.autocommit
    pid, cursor = _backend(conn), conn.kept
    assert flow.refresh(client_id, tokens["refresh_token"]).status_code == 200
    assert [_backend(c) for c in lane.idle] == [pid]
    assert conn.kept is cursor and not cursor.closed  # one cursor too, statement after statement
    with app.app_context():
        assert db.engine.pool.checkedout() == 0  # apart from the engine's pool: nothing held there


def test_a_connection_left_inside_a_transaction_is_not_lent_again(app, lane):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with rawsql.connection(autocommit=True) as conn:
                conn.connection.driver_connection.execute("BEGIN")
                raise RuntimeError("interrupted")
        assert lane.idle == []
        assert conn.connection.driver_connection.closed
        # The next statement gets a connection of its own, outside any transaction.
        assert rawsql.read_one(store._CLIENT_BY_ID, {"client_id": "nobody"}) is None
        (fresh,) = lane.idle
        assert fresh is not conn.connection
        assert fresh.driver_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_disposing_of_the_engine_closes_them(app, lane):
    with app.app_context():
        rawsql.read_one(store._CLIENT_BY_ID, {"client_id": "nobody"})
        (conn,) = lane.idle
        db.engine.dispose()
        assert conn.driver_connection.closed and lane.idle == []
        rawsql.read_one(store._CLIENT_BY_ID, {"client_id": "nobody"})
        again = rawsql._AutocommitPool.of(db.engine)  # the disposed engine's was forgotten
        assert again is not lane and len(again.idle) == 1 and again.idle[0] is not conn


def test_a_dropped_connection_is_replaced(app, flow, register, lane, _schema_app):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    (conn,) = lane.idle
    with app.app_context():
        admin = db.engine.url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (_backend(conn),))
    try:
        # The read meets the dead connection, retires it (and the pool's generation) and reads again.
        assert flow.introspect(tokens["access_token"]).get_json()["active"] is True
        assert conn not in lane.idle and not conn.is_valid
        assert flow.refresh(client_id, tokens["refresh_token"]).status_code == 200
        with app.app_context():
            assert db.session.scalar(select(Client.client_id).where(Client.client_id == client_id)) == client_id
    finally:
        dispose(_schema_app)  # its own connection was not terminated, but the pool's generation was retired
