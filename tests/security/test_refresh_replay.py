"""Threat 7: refresh-token replay (RFC 9700 §4.14.2; OAuth 2.1 §4.3.1).

Defence: refresh tokens rotate on every use and are bound to their client. The app's documented
rule (authserver/oauth/grants.py, REPLAY_GRACE_SECONDS, default 10 s): inside the grace window an
identical retry gets the same answer again; a rotated refresh token presented after the window
revokes the whole grant (every access and refresh token of the family); a different request
inside the window is refused without revoking."""

from __future__ import annotations

import pytest
from oauth.support import assert_oauth_error

from .support import INACTIVE, age_rotation


def test_refresh_replay_after_grace_window_revokes_the_family(app, flow, register):
    client_id = register()["client_id"]
    stolen = flow.tokens(client_id)
    # The attacker refreshes first; later the rightful client presents the (now rotated) token.
    attacker = flow.refresh(client_id, stolen["refresh_token"]).get_json()
    age_rotation(app, stolen["refresh_token"], 60)
    assert_oauth_error(flow.refresh(client_id, stolen["refresh_token"]), "invalid_grant")
    assert flow.introspect(attacker["access_token"]).get_json() == INACTIVE
    assert_oauth_error(flow.refresh(client_id, attacker["refresh_token"]), "invalid_grant")


def test_refresh_replay_identical_retry_in_grace_window_gets_the_same_pair(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    first = flow.refresh(client_id, tokens["refresh_token"])
    retry = flow.refresh(client_id, tokens["refresh_token"])
    assert first.status_code == retry.status_code == 200
    assert retry.get_json() == first.get_json()  # no second family is created
    assert flow.introspect(first.get_json()["access_token"]).get_json()["active"] is True


def test_refresh_replay_different_request_in_grace_window_is_refused(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    new = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    other = flow.refresh(client_id, tokens["refresh_token"], scope="crm.objects.contacts.read")
    assert_oauth_error(other, "invalid_grant")
    # Refused without ending the grant (it may be a client's concurrent refresh).
    assert flow.introspect(new["access_token"]).get_json()["active"] is True


@pytest.mark.app_config(REPLAY_GRACE_SECONDS=0)
def test_refresh_replay_without_grace_window_revokes_at_once(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    new = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")
    assert flow.introspect(new["access_token"]).get_json() == INACTIVE
    assert_oauth_error(flow.refresh(client_id, new["refresh_token"]), "invalid_grant")


def test_refresh_replay_rotated_pair_ends_the_old_access_token(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    flow.refresh(client_id, tokens["refresh_token"])
    assert flow.introspect(tokens["access_token"]).get_json() == INACTIVE


def test_refresh_replay_stolen_token_used_by_another_client_refused(flow, register):
    victim = register()["client_id"]
    attacker = register(client_name="Attacker App")["client_id"]
    tokens = flow.tokens(victim)
    assert_oauth_error(flow.refresh(attacker, tokens["refresh_token"]), "invalid_grant")
    assert flow.refresh(victim, tokens["refresh_token"]).status_code == 200  # the victim is unaffected
