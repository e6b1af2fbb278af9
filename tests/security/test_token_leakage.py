"""Threat 8: leakage of codes and tokens through URLs, caches, Referer and pages (RFC 9700 §4.2,
§4.3; RFC 6749 §5.1; OAuth 2.1 §7.4).

Defence: the authorization response carries only code, state and iss in the query; the token,
introspection and revocation endpoints read credentials from the POST body only (never the query
string); token responses are `Cache-Control: no-store` + `Pragma: no-cache`; every response is
`Referrer-Policy: no-referrer`; no page ever shows a code or token."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from oauth.support import (
    PKCE,
    REDIRECT_URI,
    RESOURCE,
    assert_oauth_error,
    authorize_params,
    query,
)


def test_token_leakage_authorization_response_has_only_code_state_iss(flow, register):
    client_id = register()["client_id"]
    location = flow.decide(authorize_params(client_id, PKCE())).headers["Location"]
    parts = urlsplit(location)
    assert parts.fragment == ""
    assert set(query(location)) == {"code", "state", "iss"}
    assert "token" not in location


def test_token_leakage_token_responses_are_not_cacheable(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    exchanged = flow.exchange(client_id, code, pkce)
    refreshed = flow.refresh(client_id, exchanged.get_json()["refresh_token"])
    for response in (exchanged, refreshed):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"
    # Error answers from the token endpoint are not cacheable either.
    assert_oauth_error(flow.refresh(client_id, "asr_nope"), "invalid_grant")


def test_token_leakage_token_endpoint_refuses_get(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    params = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "client_id": client_id, "code_verifier": pkce.verifier, "resource": RESOURCE}
    response = flow.client.get("/oauth/token", query_string=params)
    assert response.status_code == 405 and response.mimetype == "application/json"
    assert "access_token" not in response.get_data(as_text=True)
    # The code was not spent by the refused request.
    assert flow.exchange(client_id, code, pkce).status_code == 200


def _refused(response):
    assert response.status_code in (400, 401), response.status_code
    assert response.mimetype == "application/json" and "error" in response.get_json()
    assert "access_token" not in response.get_json()


def test_token_leakage_credentials_in_query_string_are_ignored(flow, register):
    """Credentials in the URL are not read, even beside a well-formed form body."""
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    _refused(flow.client.post("/oauth/token", query_string={"refresh_token": tokens["refresh_token"]},
                              data={"grant_type": "refresh_token", "client_id": client_id}))
    _refused(flow.client.post("/oauth/introspect", query_string={"token": tokens["access_token"]},
                              data={"token_type_hint": "access_token"}, headers=flow.world.mcp_auth))
    _refused(flow.client.post("/oauth/revoke", query_string={"token": tokens["access_token"], "client_id": client_id},
                              data={"token_type_hint": "access_token"}))
    # Nothing was rotated or revoked by the refused requests.
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True
    assert flow.refresh(client_id, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("page", ["login", "consent", "apps", "error", "authorization redirect", "token"])
def test_token_leakage_referrer_policy_no_referrer(flow, register, page):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = {
        "login": lambda: flow.client.get("/login"),
        "consent": lambda: flow.consent_page(params),
        "apps": lambda: flow.client.get("/account/apps"),
        "error": lambda: flow.client.get("/oauth/authorize", query_string={**params, "client_id": "nope"}),
        "authorization redirect": lambda: flow.decide(params),
        "token": lambda: flow.exchange(client_id, *flow.get_code(client_id)[:2]),
    }[page]()
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_token_leakage_pages_never_show_codes_or_tokens(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    tokens = flow.exchange(client_id, code, pkce).get_json()
    # Asking for more shows the consent page again, for a client that holds live tokens.
    consent = flow.consent_page(authorize_params(client_id, PKCE(), scope="crm.objects.deals.read"))
    apps = flow.client.get("/account/apps")
    assert consent.status_code == apps.status_code == 200
    for html in (consent.get_data(as_text=True), apps.get_data(as_text=True)):
        for secret in (code, tokens["access_token"], tokens["refresh_token"]):
            assert secret not in html and secret[4:16] not in html
