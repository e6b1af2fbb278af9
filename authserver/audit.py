"""Recording and reading the audit trail (who did what, from where, under which request id).

An event joins the request's transaction (record), except the record of a refusal or a failure,
which must outlive it (record_apart): the request that met it usually ends without committing."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Flask, g, has_request_context, request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import rawsql
from .extensions import db
from .models import AuditEvent
from .timeutil import utcnow

log = logging.getLogger("authserver.audit")

# Detail keys that must never be written, whatever a caller passes.
_FORBIDDEN = ("token", "secret", "password", "code", "assertion")


#: The INSERT of one event (the columns of event_values), for writers that batch it with others.
INSERT_EVENT = rawsql.insert_into(AuditEvent, "created_at", "event", "user_id", "hub_id", "client_id", "ip",
                                  "request_id", "detail")
#: Where a request keeps its events recorded apart until its transaction has ended.
_APART = "authserver.audit_apart"
#: Where a request keeps the detail naming who acts for it (the admin API's credential).
_ACTOR = "authserver.audit_actor"


def attribute(**detail) -> None:
    """Name who acts (e.g. `admin_credential=<id>`) in every event this request records from now
    on, whichever module records it."""
    g.setdefault(_ACTOR, {}).update(detail)


def record(event: str, *, user=None, hub=None, client=None, **detail) -> None:
    """Append an event in the request's transaction (committed with it) and log it. A plain
    INSERT on the session's connection: events are only ever inserted, and this runs on hot paths
    (every token issued), where an ORM object and its flush cost several times as much."""
    values = _event(event, user, hub, client, detail)
    rawsql.in_session().execute(INSERT_EVENT, values).close()
    _log(values)


def record_apart(event: str, *, user=None, hub=None, client=None, **detail) -> None:
    """Record an event that must survive whatever becomes of the request (a refusal, a failed
    fetch), and log it now. It is written in a transaction of its own once the request's has
    ended, committed or rolled back: it neither commits the request's work early nor is lost
    with it. Outside a request (a command) it joins the caller's transaction, as record() does."""
    values = _event(event, user, hub, client, detail)
    if has_request_context():
        g.setdefault(_APART, []).append(values)
    else:
        rawsql.in_session().execute(INSERT_EVENT, values).close()
    _log(values)


def event_row(event: str, *, user=None, hub=None, client=None, **detail) -> dict:
    """The row record() would write for an event, for a caller that writes it in a statement of
    its own (then logs it with logged())."""
    return _event(event, user, hub, client, detail)


def _event(event: str, user, hub, client, detail: dict) -> dict:
    """The row of an event in the current request (if any), its detail stripped of credential-like
    keys, naming who acts for the request (audit.attribute) when someone does."""
    in_request = has_request_context()
    if in_request and (actor := g.get(_ACTOR)):
        detail = {**actor, **detail}
    return event_values(event, ip=request.remote_addr if in_request else None,
                        request_id=g.get("request_id") if in_request else None,
                        user=user, hub=hub, client=client, **detail)


def event_values(event: str, *, ip: str | None, request_id: str | None, user=None, hub=None, client=None,
                 **detail) -> dict:
    """The row of an event (the columns of the audit INSERT), for a caller that has no Flask
    request (the WSGI lane, fastlane.py), its detail stripped of credential-like keys."""
    return {
        "created_at": utcnow(),
        "event": event,
        "user_id": getattr(user, "id", user),
        "hub_id": getattr(hub, "public_id", hub),
        "client_id": getattr(client, "client_id", client),
        "ip": ip,
        "request_id": request_id,
        "detail": {k: v for k, v in detail.items() if not any(f in k.lower() for f in _FORBIDDEN)},
    }


def logged(values: dict) -> None:
    """Log an event the caller wrote itself (event_values' row, in a statement of its own), as
    record() logs the events it writes."""
    _log(values)


def _log(values: dict) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("%s user=%s hub=%s client=%s %s", values["event"], values["user_id"], values["hub_id"],
                 values["client_id"], " ".join(f"{k}={v}" for k, v in values["detail"].items()))


def init_app(app: Flask) -> None:
    app.teardown_request(write_apart)


def write_apart(error: BaseException | None = None) -> None:
    """Write the events the request recorded apart, in their own transaction after the request's.
    What the request left uncommitted is rolled back first (Flask-SQLAlchemy discards it at
    teardown anyway), so that the events are all this transaction holds and no lock the request
    took (SQLite's one writer) stands in their way."""
    events = g.pop(_APART, None)
    if not events:
        return
    try:
        db.session.rollback()
        transaction = rawsql.in_session()
        for values in events:
            transaction.execute(INSERT_EVENT, values).close()
        db.session.commit()
    except (SQLAlchemyError, db.engine.dialect.loaded_dbapi.Error):
        # The response is already decided; the events were logged when recorded.
        log.exception("%d audit event(s) could not be stored (request id %s)", len(events), g.get("request_id"))
        db.session.close()


def find_events(
    *, user_id: int | None = None, event: str | None = None, client_id: str | None = None,
    hub_id: int | None = None, since: datetime | None = None, limit: int = 100,
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if event:
        query = query.where(AuditEvent.event.like(event.replace("*", "%")))
    if client_id:
        query = query.where(AuditEvent.client_id == client_id)
    if hub_id is not None:
        query = query.where(AuditEvent.hub_id == hub_id)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    return list(db.session.scalars(query))
