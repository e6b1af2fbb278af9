"""Threat 1: authorization code injection and replay (RFC 9700 §4.5, §4.2.4; OAuth 2.1 §4.1.3).

Defence: a code is bound to its client, redirect URI and PKCE challenge; it is single use; a
replay (anything but an identical retry inside the grace window) revokes every token descended
from the code (store.revoke_code_family)."""

from __future__ import annotations

from oauth.support import PKCE, REDIRECT_URI, assert_oauth_error

from .support import INACTIVE, end_grace_window

OTHER_REDIRECT = "http://127.0.0.1:7777/other-callback"


def test_code_injection_code_bound_to_client(flow, register):
    victim = register()["client_id"]
    attacker = register(client_name="Attacker App")["client_id"]
    assert attacker != victim
    code, pkce, _ = flow.get_code(victim)
    assert_oauth_error(flow.exchange(attacker, code, pkce), "invalid_grant")
    # The attempt neither consumed nor revoked anything: the rightful client still redeems it.
    assert flow.exchange(victim, code, pkce).status_code == 200


def test_code_injection_with_attackers_own_pkce_verifier_refused(flow, register):
    """A stolen code injected into the attacker's session (which has its own PKCE pair)."""
    client_id = register()["client_id"]
    code, _pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, PKCE()), "invalid_grant")


def test_code_injection_wrong_redirect_uri_refused(flow, register):
    # Both URIs are registered: the code is still bound to the one it was issued for.
    client_id = register(redirect_uris=[REDIRECT_URI, OTHER_REDIRECT])["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, pkce, redirect_uri=OTHER_REDIRECT), "invalid_grant")
    assert_oauth_error(flow.exchange(client_id, code, pkce, redirect_uri=None), "invalid_grant")


def test_code_injection_missing_code_verifier_refused(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, pkce, code_verifier=None), "invalid_request")


def test_code_replay_refused_and_revokes_every_token_from_the_code(app, flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    tokens = flow.exchange(client_id, code, pkce).get_json()
    descendant = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    end_grace_window(app)
    assert_oauth_error(flow.exchange(client_id, code, pkce), "invalid_grant")
    assert flow.introspect(tokens["access_token"]).get_json() == INACTIVE
    assert flow.introspect(descendant["access_token"]).get_json() == INACTIVE
    assert_oauth_error(flow.refresh(client_id, descendant["refresh_token"]), "invalid_grant")


def test_code_replay_by_attacker_inside_grace_window_revokes_at_once(flow, register):
    """Only an identical retry is answered idempotently; a replay with another verifier is an attack."""
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    tokens = flow.exchange(client_id, code, pkce).get_json()
    assert_oauth_error(flow.exchange(client_id, code, PKCE()), "invalid_grant")
    assert flow.introspect(tokens["access_token"]).get_json() == INACTIVE
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")


def test_code_replay_identical_retry_inside_grace_window_is_idempotent(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    first, retry = flow.exchange(client_id, code, pkce), flow.exchange(client_id, code, pkce)
    assert first.status_code == retry.status_code == 200
    assert first.get_json() == retry.get_json()  # the same pair, not a second one
    assert flow.introspect(first.get_json()["access_token"]).get_json()["active"] is True
