"""Threat 2: PKCE downgrade (RFC 9700 §2.1.1, §4.8; OAuth 2.1 §4.1.1, §7.5.1).

Defence: every authorization request must carry an S256 challenge (plain, a missing method, which
RFC 7636 would default to plain, and a missing challenge are refused), and every code redemption
must carry the matching verifier."""

from __future__ import annotations

import pytest
from oauth.support import (
    PKCE,
    assert_oauth_error,
    assert_redirect_error,
    authorize_params,
)

from .support import nothing_issued

DOWNGRADES = {
    "plain method": {"code_challenge_method": "plain"},
    "no challenge at all": {"code_challenge": None, "code_challenge_method": None},
    "challenge without method (defaults to plain)": {"code_challenge_method": None},
    "method without challenge": {"code_challenge": None},
    "lower-case s256": {"code_challenge_method": "s256"},
}


@pytest.mark.parametrize("overrides", DOWNGRADES.values(), ids=DOWNGRADES.keys())
def test_pkce_downgrade_authorization_request_refused(app, flow, register, world, overrides):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), **overrides)
    response = flow.client.get("/oauth/authorize", query_string=params)
    assert_redirect_error(response, "invalid_request", params["state"], world.issuer)
    assert nothing_issued(app)


def test_pkce_downgrade_token_request_without_verifier_refused(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, pkce, code_verifier=None), "invalid_request")


def test_pkce_downgrade_random_verifier_refused(flow, register):
    client_id = register()["client_id"]
    code, _pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, PKCE()), "invalid_grant")


def test_pkce_downgrade_challenge_replayed_as_plain_verifier_refused(flow, register):
    """A plain-style redemption (verifier == the challenge seen in the front channel) fails."""
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, pkce, code_verifier=pkce.challenge), "invalid_grant")


def test_pkce_downgrade_metadata_advertises_s256_only(client):
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]
