"""Flask extensions, created unbound here and bound to the app in ``create_app``."""

import sqlite3

import flask_limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from .faults import Failover, connect_bounded

# Deterministic constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter whose every counter carries on in process memory while Redis is unreachable
    (faults.Failover). Flask-Limiter's own fallback (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) is not
    enough: it covers the decorated limits only (limits.py, the WSGI lane and cimd.py call
    `limiter.limiter` directly, and would fail with Redis), and it looks for Redis again only from
    Flask's before_request, at intervals growing to 32 s."""

    failover: Failover | None = None

    def init_app(self, app) -> None:
        if app.config.get("REDIS_URL"):
            # Bounded waits, no retries: an unreachable Redis must cost a request little, once.
            app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
                "socket_timeout": app.config["REDIS_TIMEOUT"],
                "socket_connect_timeout": app.config["REDIS_TIMEOUT"],
                "retry": Retry(NoBackoff(), 0),
            })
        super().init_app(app)
        self.failover = None
        if self.enabled:
            self.failover = Failover(super().limiter, app.config["REDIS_RECHECK_SECONDS"])

    @property
    def limiter(self):
        return self.failover or super().limiter


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
# Limits are declared per view; storage (memory or Redis) is chosen in create_app.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# PostgreSQL connections that give up on a hung server (faults.BoundedWaitConnection).
event.listen(Engine, "do_connect", connect_bounded)


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection, connection_record) -> None:
    """SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, per connection:
    without this, deleting a client on SQLite would leave its grants, codes and tokens behind,
    ready to be adopted by the next client given the same row id. PostgreSQL always enforces them."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
