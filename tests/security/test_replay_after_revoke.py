"""Issue 11 item 10 (a): the replay grace window never hands out a revoked token.

An identical retry of a code redemption or a refresh inside the grace window gets the cached
answer (grants.ReplayMixin). Defence: the cached answer is served only while its grant is live
and the token pair in it is not revoked; otherwise the retry is `invalid_grant`, with no token.
Each way a token can be ended in the window (the client revokes its refresh token, the person
disconnects the app, a code replay revokes the code's family) is tried on both paths."""

from __future__ import annotations

import pytest
from oauth.support import assert_oauth_error

from authserver import store
from authserver.extensions import db
from authserver.models import AuthorizationCode, Token
from authserver.secrets import sha256_hex

from .support import INACTIVE


def _client_revokes_refresh_token(app, flow, client_id, tokens):
    response = flow.client.post("/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": client_id})
    assert response.status_code == 200


def _person_disconnects_the_app(app, flow, client_id, tokens):
    with app.app_context():
        row = store.get_token_by_access_hash(sha256_hex(tokens["access_token"]))
        store.revoke_grant(row.grant, reason="user")
        db.session.commit()


def _code_family_revoked(app, flow, client_id, tokens):
    with app.app_context():
        row = store.get_token_by_access_hash(sha256_hex(tokens["access_token"]))
        store.revoke_code_family(db.session.get(AuthorizationCode, row.code_id))
        db.session.commit()


REVOCATIONS = {
    "client revokes its refresh token": _client_revokes_refresh_token,
    "person disconnects the app": _person_disconnects_the_app,
    "code replay revokes the family": _code_family_revoked,
}


def _token_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(Token))


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_code_retry_after_revocation_in_grace_window_gets_no_token(app, flow, register, revoke):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    first = flow.exchange(client_id, code, pkce)
    assert first.status_code == 200, first.get_json()
    revoke(app, flow, client_id, first.get_json())
    rows = _token_rows(app)

    retry = flow.exchange(client_id, code, pkce)
    body = assert_oauth_error(retry, "invalid_grant")
    assert "access_token" not in body
    assert _token_rows(app) == rows
    assert flow.introspect(first.get_json()["access_token"]).get_json() == INACTIVE


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_refresh_retry_after_revocation_in_grace_window_gets_no_token(app, flow, register, revoke):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    first = flow.refresh(client_id, tokens["refresh_token"])
    assert first.status_code == 200, first.get_json()
    revoke(app, flow, client_id, first.get_json())
    rows = _token_rows(app)

    retry = flow.refresh(client_id, tokens["refresh_token"])
    body = assert_oauth_error(retry, "invalid_grant")
    assert "access_token" not in body
    assert _token_rows(app) == rows
    assert_oauth_error(flow.refresh(client_id, first.get_json()["refresh_token"]), "invalid_grant")


def test_retries_of_live_answers_are_still_served(flow, register):
    """The window still does its job while nothing was revoked."""
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    first = flow.exchange(client_id, code, pkce)
    assert flow.exchange(client_id, code, pkce).get_json() == first.get_json()
    refreshed = flow.refresh(client_id, first.get_json()["refresh_token"])
    assert flow.refresh(client_id, first.get_json()["refresh_token"]).get_json() == refreshed.get_json()
