"""Threat: shared-client takeover (issue 11 item 1; RFC 7592 §1 and §5, RFC 7591 §5).

Identical public registrations are deduplicated onto one client. If the first registrant kept its
registration access token, it could add a redirect URI of its own (or delete the client) under
everybody else's grants. Defence: no party manages a client that others were handed. Handing a
deduplicated client to one more registrant revokes its registration token (a conditional UPDATE on
the dedupe key), and a managed client leaves deduplication at once (the update is conditional on
the token still being valid), so exactly one of the two wins a race."""

from __future__ import annotations

import threading

import pytest
from oauth.support import PKCE, assert_error_page, authorize_params, query

from authserver.extensions import db
from authserver.models import Client

APP_URI = "https://assistant.example/oauth/callback"
EVIL_URI = "https://evil.example/cb"
#: What a popular app sends, byte for byte, every time it registers (and what A copies).
POPULAR = {"client_name": "Popular Assistant", "redirect_uris": [APP_URI], "token_endpoint_auth_method": "none",
           "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
           "software_id": "popular-assistant"}
#: Members the server adds to a registration response (everything else is the client's metadata).
SERVER_MEMBERS = ("client_id", "client_id_issued_at", "registration_access_token", "registration_client_uri")


def _register(client, body=POPULAR):
    response = client.post("/oauth/register", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _manage(client, registered, method, body=None):
    path = registered["registration_client_uri"].replace("https://auth.test", "")
    headers = {"Authorization": f"Bearer {registered['registration_access_token']}"}
    return client.open(path, method=method, headers=headers, json=body)


def _update_body(registered, **changes):
    return {**{k: v for k, v in registered.items() if k not in SERVER_MEMBERS[1:]}, **changes}


def _metadata(registered) -> dict:
    return {k: v for k, v in registered.items() if k not in SERVER_MEMBERS}


def _stored(app, client_id) -> Client | None:
    with app.app_context():
        row = db.session.scalar(db.select(Client).where(Client.client_id == client_id))
        if row is not None:
            db.session.expunge(row)
        return row


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_first_registrant_cannot_manage_a_client_handed_to_another(app, client, method):
    first = _register(client)
    second = _register(client)
    assert second["client_id"] == first["client_id"]  # deduplicated
    assert "registration_access_token" not in second

    body = _update_body(first, redirect_uris=[APP_URI, EVIL_URI]) if method == "PUT" else None
    response = _manage(client, first, method, body)
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"] == "invalid_client"
    stored = _stored(app, first["client_id"])
    assert stored is not None and stored.client_metadata == _metadata(second)


@pytest.mark.parametrize("first_registrant", [
    pytest.param(lambda c, r: _manage(c, r, "PUT", _update_body(r)), id="updated it, same metadata"),
    pytest.param(lambda c, r: _manage(c, r, "PUT", _update_body(r, redirect_uris=[APP_URI, EVIL_URI])),
                 id="added a redirect URI"),
    pytest.param(lambda c, r: _manage(c, r, "PUT", _update_body(r, client_uri="https://evil.example/")),
                 id="changed other metadata"),
    pytest.param(None, id="registered more metadata than the app sends"),
])
def test_second_registrant_gets_exactly_the_metadata_it_sent(client, first_registrant):
    if first_registrant is None:
        first = _register(client, {**POPULAR, "logo_uri": "https://evil.example/logo.png"})
    else:
        first = _register(client)
        assert first_registrant(client, first).status_code == 200  # one party holds it: RFC 7592 works
    second = _register(client)
    assert second["client_id"] != first["client_id"]
    assert _metadata(second) == POPULAR


def test_takeover_reproduction_never_sends_a_code_to_the_attacker(app, flow, client):
    attacker = _register(client)  # A copies the popular app's registration and keeps the token
    app_registration = _register(client)  # the real app, later: the same client_id
    client_id = app_registration["client_id"]
    assert client_id == attacker["client_id"]
    flow.get_code(client_id, redirect_uri=APP_URI, scope="crm.objects.contacts.read")  # a person consents

    put = _manage(client, attacker, "PUT", _update_body(attacker, redirect_uris=[APP_URI, EVIL_URI]))
    assert put.status_code == 401
    assert _manage(client, attacker, "DELETE").status_code == 401

    attacker_pkce = PKCE()
    sent_to_evil = flow.consent_page(authorize_params(client_id, attacker_pkce, redirect_uri=EVIL_URI,
                                                      scope="crm.objects.contacts.read"))
    assert_error_page(sent_to_evil)
    # The app and the person's consent are untouched: remembered consent still goes to the app.
    remembered = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=APP_URI,
                                                    scope="crm.objects.contacts.read"))
    assert remembered.status_code == 302 and remembered.headers["Location"].startswith(APP_URI + "?")
    assert query(remembered.headers["Location"])["code"]


def test_management_racing_a_registration_never_changes_what_the_registrant_gets(app, client, db_backend):
    """On PostgreSQL the two requests run in separate transactions at once: either the update wins
    (the client leaves deduplication, the registrant gets a new client) or the registration wins
    (the token is revoked, the update is refused), never both."""
    if db_backend != "postgresql":
        pytest.skip("row-lock concurrency is asserted on PostgreSQL (SQLite serialises writers)")
    for n in range(8):
        first = _register(client, {**POPULAR, "client_name": f"Race {n}"})
        barrier = threading.Barrier(2)
        results = {}

        def put():
            with app.test_client() as c:
                barrier.wait()
                results["put"] = _manage(c, first, "PUT", _update_body(first, redirect_uris=[APP_URI, EVIL_URI]))

        def register():
            with app.test_client() as c:
                barrier.wait()
                results["second"] = _register(c, {**POPULAR, "client_name": f"Race {n}"})

        threads = [threading.Thread(target=put), threading.Thread(target=register)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        second, status = results["second"], results["put"].status_code
        assert EVIL_URI not in second["redirect_uris"]
        if second["client_id"] == first["client_id"]:
            assert status == 401, "the first registrant changed a client handed to another"
        else:
            assert status == 200
        assert EVIL_URI not in _stored(app, second["client_id"]).redirect_uris


def _row_version(app, client_id) -> str:
    """PostgreSQL's xmin of the client's row: it changes whenever the row is written."""
    with app.app_context():
        return db.session.execute(db.text("SELECT xmin::text FROM clients WHERE client_id = :c"),
                                  {"c": client_id}).scalar_one()


def test_identical_registrations_at_once_are_all_handed_the_one_client(app, db_backend):
    """Many registrants of the same metadata at the same moment, first while the client still has
    its registration token and then after: every one gets the first client, nobody can manage it,
    no second client is made; once handed over, the row is only read (an identical registration
    rewrote it before, so each waited for the previous one's row lock: store._registration_statement)."""
    if db_backend != "postgresql":
        pytest.skip("row-lock concurrency is asserted on PostgreSQL (SQLite serialises writers)")
    body = {**POPULAR, "client_name": "Many at once"}
    with app.test_client() as c:
        first = _register(c, body)
    for round_ in range(2):
        barrier, results = threading.Barrier(6), []

        def register():
            with app.test_client() as c:
                barrier.wait()
                results.append(_register(c, body))

        version = _row_version(app, first["client_id"])
        threads = [threading.Thread(target=register) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [r["client_id"] for r in results] == [first["client_id"]] * 6
        assert not any("registration_access_token" in r for r in results)
        if round_ == 1:
            assert _row_version(app, first["client_id"]) == version, "a handed-over client's row was rewritten"
        with app.test_client() as c:
            assert _manage(c, first, "PUT", _update_body(first, redirect_uris=[APP_URI, EVIL_URI])).status_code == 401
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Client)
                                 .where(Client.dedupe_key.is_not(None))) == 1
