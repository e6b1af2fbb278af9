"""SQL statements per registration (RFC 7591): guards of the work /oauth/register does (issue 12).

A change that adds a query to a registration fails here. The statements are named by their verb
so that swapping one for another (a SELECT before the hand-over UPDATE, an ORM reload after it)
fails too, not only adding one."""

from __future__ import annotations

from authserver.extensions import db
from authserver.models import AuditEvent, Client

from .support import REDIRECT_URI

PUBLIC = {"client_name": "Counted", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
          "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}


def _verbs(seen) -> list[str]:
    return [statement.split(None, 1)[0].upper() for statement in seen]


def _register(client, body):
    response = client.post("/oauth/register", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _postgresql(app) -> bool:
    with app.app_context():
        return db.engine.dialect.name == "postgresql"


def _events(app, client_id) -> list[tuple]:
    with app.app_context():
        return [(e.event, e.client_id, e.ip, bool(e.request_id), e.detail) for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.client_id == client_id).order_by(AuditEvent.id))]


# On PostgreSQL every registration is one statement in autocommit (store.register_client: the
# hand-over attempt, the new client and the audit event of whichever happened, no BEGIN or COMMIT);
# elsewhere the same writes as separate statements in the request's transaction.
def test_a_new_public_client_is_one_handover_attempt_one_insert_and_its_audit_event(app, client, statements):
    with statements() as seen:
        registered = _register(client, PUBLIC)
    if _postgresql(app):
        assert _verbs(seen) == ["WITH"], seen
    else:
        # The hand-over UPDATE finds no identical client; the client row; the audit event.
        assert _verbs(seen) == ["UPDATE", "INSERT", "INSERT"], seen
        assert "INTO clients" in seen[1] and "INTO audit_events" in seen[2]
    assert registered["registration_access_token"]
    assert _events(app, registered["client_id"]) == [
        ("client.registered", registered["client_id"], "127.0.0.1", True,
         {"client_name": "Counted", "redirect_uris": [REDIRECT_URI]})]


def test_an_identical_public_client_is_one_update_and_its_audit_event(app, client, statements):
    first = _register(client, PUBLIC)
    with statements() as seen:
        second = _register(client, PUBLIC)
    # Finding the client and ending its management is one conditional UPDATE that returns what the
    # response needs: no SELECT before it, no reload after it.
    if _postgresql(app):
        assert _verbs(seen) == ["WITH"], seen
    else:
        assert _verbs(seen) == ["UPDATE", "INSERT"], seen
        assert "INTO audit_events" in seen[1]
    assert second["client_id"] == first["client_id"] and "registration_access_token" not in second
    assert second == {k: v for k, v in first.items() if k not in ("registration_access_token",
                                                                  "registration_client_uri")}
    with app.app_context():
        stored = db.session.scalars(db.select(Client).where(Client.dedupe_key.is_not(None))).all()
        assert [c.client_id for c in stored] == [first["client_id"]]  # no second row
        assert stored[0].registration_access_token_hash is None
    assert [e[0] for e in _events(app, first["client_id"])] == ["client.registered", "client.reused"]
    assert _events(app, first["client_id"])[1] == ("client.reused", first["client_id"], "127.0.0.1", True, {})


def test_a_confidential_client_is_one_insert_and_its_audit_event(app, client, statements):
    with statements() as seen:
        registered = _register(client, {"client_name": "Counted", "redirect_uris": ["https://app.example.com/cb"]})
    # No deduplication for a client with a secret: nothing is looked up.
    assert _verbs(seen) == (["WITH"] if _postgresql(app) else ["INSERT", "INSERT"]), seen
    assert registered["client_secret"]
    with app.app_context():
        stored = db.session.scalar(db.select(Client).where(Client.client_id == registered["client_id"]))
        assert stored.dedupe_key is None and stored.check_client_secret(registered["client_secret"])
    assert [e[0] for e in _events(app, registered["client_id"])] == ["client.registered"]


def test_a_refused_registration_touches_no_table(client, statements):
    with statements() as seen:
        response = client.post("/oauth/register", json={**PUBLIC, "redirect_uris": ["javascript:alert(1)"]})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_redirect_uri"
    assert seen == []


def test_the_registration_request_still_tells_its_url_when_asked(app):
    # The URL is built lazily (nothing on the registration path reads it); whoever asks gets it.
    from flask import request

    from authserver.oauth.registration import RegistrationRequest

    with app.test_request_context("/oauth/register?x=1", method="POST", json={"client_name": "x"}):
        built = RegistrationRequest(request)
        assert built.uri == request.url == "http://localhost/oauth/register?x=1"
        assert built.method == "POST" and built.payload.data == {"client_name": "x"}
