"""Issue 15 item 3: one transaction per request, also for metadata-document clients.

Looking up a URL client_id commits nothing: the client row and the cached document go in the
request's transaction, committed by the view (or not at all). A refusal or a failed fetch is
audited apart from that transaction (audit.record_apart): it is kept whatever becomes of the
request, and recording it commits nothing else of the request early."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from authlib.oauth2.rfc6749 import InvalidClientError
from oauth.support import PKCE, assert_error_page, authorize_params
from sqlalchemy import select

from authserver import audit, rawsql
from authserver.extensions import db
from authserver.models import AuditEvent, Client, RemoteDocument
from authserver.oauth.server import server
from authserver.timeutil import utcnow

from .conftest import client_document

PATH = "/oauth/app/client.json"
REDIRECT = "https://client.test/callback"


def _down(app, origin, client_id):
    origin.serve(PATH, raw=b"down", status=503, content_type="text/plain")


def _invalid(app, origin, client_id):
    origin.serve(PATH, {**client_document(client_id, [REDIRECT]), "client_secret": "s3cret"})


def _denied(app, origin, client_id):
    app.config["CIMD_DENIED_DOMAINS"] = ["client.test"]


def _down_with_a_stale_copy(app, origin, client_id):
    _down(app, origin, client_id)
    now = utcnow()
    with app.app_context():
        db.session.add(RemoteDocument(url=client_id, kind="client", document=client_document(client_id, [REDIRECT]),
                                      fetched_at=now - timedelta(hours=1), expires_at=now - timedelta(minutes=1),
                                      stale_until=now + timedelta(hours=1)))
        db.session.commit()


#: How a lookup fails, the event that must be kept, and whether the client is refused (a stale
#: copy is served while the origin is down: the failure is recorded, the request goes on).
FAILURES = {
    "origin down": (_down, "cimd.fetch_failed", True),
    "invalid document": (_invalid, "cimd.invalid", True),
    "denied domain": (_denied, "cimd.refused", True),
    "origin down, stale copy served": (_down_with_a_stale_copy, "cimd.fetch_failed", False),
}


def _committed(column) -> list:
    """What other connections see of a column: committed rows only."""
    with db.engine.connect() as connection:
        return list(connection.scalars(select(column).order_by(column)))


@pytest.mark.parametrize(("prepare", "event", "refused"), FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_lookup_is_kept_and_commits_nothing_of_the_request(app, origin, prepare, event, refused):
    client_id = origin.url(PATH)
    prepare(app, origin, client_id)
    with app.test_request_context("/oauth/authorize", query_string={"client_id": client_id}):
        audit.record("request.work")  # something the request did before, in its own transaction
        if refused:
            with pytest.raises(InvalidClientError):
                server.query_client(client_id)
        else:
            assert server.query_client(client_id).client_id == client_id
        # Nothing is committed while the request runs: neither its work nor the failure's record.
        assert _committed(AuditEvent.event) == []
        assert _committed(Client.client_id) == []
    # The request ended without committing: its work is gone, the failure's record is kept.
    with app.app_context():
        assert _committed(AuditEvent.event) == [event]
        assert _committed(Client.client_id) == []


@pytest.mark.parametrize(("prepare", "event", "refused"), FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_lookup_is_kept_after_a_whole_request(app, flow, origin, prepare, event, refused):
    client_id = origin.url(PATH)
    prepare(app, origin, client_id)
    response = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=REDIRECT))
    if refused:
        assert_error_page(response)
    else:
        assert response.status_code == 200
    with app.app_context():
        assert event in _committed(AuditEvent.event)
        # The client row exists only where the request went on (the consent page commits it).
        assert _committed(Client.client_id) == ([] if refused else [client_id])


def test_an_event_that_cannot_be_stored_apart_leaves_the_response_alone(app, flow, origin, monkeypatch, caplog):
    """Writing the kept events happens after the response is decided: a database error there is
    logged, never turned into a server error."""
    client_id = origin.url(PATH)
    _down(app, origin, client_id)
    with app.app_context():
        before = _committed(AuditEvent.event)
    # An INSERT without the event's name: the database refuses it (NOT NULL).
    monkeypatch.setattr(audit, "INSERT_EVENT", rawsql.insert_into(AuditEvent, "created_at", "detail"))
    with caplog.at_level(logging.ERROR, logger="authserver.audit"):
        response = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=REDIRECT))
    assert_error_page(response)
    assert "could not be stored" in caplog.text
    with app.app_context():
        assert _committed(AuditEvent.event) == before
