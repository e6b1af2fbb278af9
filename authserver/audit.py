"""Recording and reading the audit trail (who did what, from where, under which request id)."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import g, has_request_context, request
from sqlalchemy import select

from . import rawsql
from .extensions import db
from .models import AuditEvent
from .timeutil import utcnow

log = logging.getLogger("authserver.audit")

# Detail keys that must never be written, whatever a caller passes.
_FORBIDDEN = ("token", "secret", "password", "code", "assertion")


_INSERT = rawsql.insert_into(AuditEvent, "created_at", "event", "user_id", "hub_id", "client_id", "ip", "request_id",
                             "detail")


def record(event: str, *, user=None, hub=None, client=None, **detail) -> None:
    """Append an event in the request's transaction (committed with it) and log it. A plain
    INSERT on the session's connection: events are only ever inserted, and this runs on hot paths
    (every token issued), where an ORM object and its flush cost several times as much."""
    clean = {k: v for k, v in detail.items() if not any(f in k.lower() for f in _FORBIDDEN)}
    values = {
        "created_at": utcnow(),
        "event": event,
        "user_id": getattr(user, "id", user),
        "hub_id": getattr(hub, "public_id", hub),
        "client_id": getattr(client, "client_id", client),
        "ip": request.remote_addr if has_request_context() else None,
        "request_id": g.get("request_id") if has_request_context() else None,
        "detail": clean,
    }
    rawsql.in_session().execute(_INSERT, values).close()
    if log.isEnabledFor(logging.INFO):
        log.info("%s user=%s hub=%s client=%s %s", event, values["user_id"], values["hub_id"], values["client_id"],
                 " ".join(f"{k}={v}" for k, v in clean.items()))


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
