"""Threat 4: mix-up attacks (RFC 9700 §4.4; RFC 9207).

Defence: `iss`, byte-identical to the metadata issuer, on every authorization response (success
and every redirected error), and `authorization_response_iss_parameter_supported: true`."""

from __future__ import annotations

import pytest
from oauth.support import (
    PKCE,
    REDIRECT_URI,
    assert_redirect_error,
    authorize_params,
    query,
)


def _issuer(client) -> str:
    return client.get("/.well-known/oauth-authorization-server").get_json()["issuer"]


def test_mix_up_metadata_advertises_iss_parameter(client, world):
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["issuer"] == world.issuer


def test_mix_up_iss_on_successful_authorization_response(flow, register):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    location = flow.decide(params).headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert query(location)["iss"] == _issuer(flow.client)


def test_mix_up_iss_on_remembered_consent_response(flow, register):
    app_uri = "https://app.example/callback"  # remembered consent needs a redirect URI its domain holds
    client_id = register(redirect_uris=[app_uri])["client_id"]
    flow.get_code(client_id, redirect_uri=app_uri)
    response = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=app_uri))
    assert response.status_code == 302  # consent remembered: straight back to the client
    assert query(response.headers["Location"])["iss"] == _issuer(flow.client)


def test_mix_up_iss_when_user_denies(flow, register, world):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    assert_redirect_error(flow.decide(params, decision="deny"), "access_denied", params["state"], _issuer(flow.client))


ERRORS = {
    "invalid_scope": {"scope": "crm.objects.contacts.read no.such.scope"},
    "invalid_target": {"resource": "https://unknown.example/mcp"},
    "invalid_request": {"code_challenge_method": "plain"},
    "unsupported_response_type": {"response_type": "token"},
}


@pytest.mark.parametrize(("error", "overrides"), ERRORS.items(), ids=ERRORS.keys())
def test_mix_up_iss_on_every_redirected_error(flow, register, error, overrides):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), **overrides)
    response = flow.client.get("/oauth/authorize", query_string=params)
    assert_redirect_error(response, error, params["state"], _issuer(flow.client))


