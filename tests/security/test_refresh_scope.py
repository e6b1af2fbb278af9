"""Issue 11 item 5: a refresh never widens scope beyond its own authorization (RFC 6749 §6: a
refresh "MUST NOT include any scope not originally granted", and an omitted scope means the
scope originally granted).

A grant holds the union of what a person approved for a client; each authorization code carries
the part of it that one request asked for. Defence: every token row records the scope its code
granted (`Token.authorized_scope`, copied along the refresh chain), and a refresh issues
requested-or-authorized ∩ authorized ∩ the grant ∩ live permissions (grants.live_scope)."""

from __future__ import annotations

from oauth.support import PKCE, assert_oauth_error, authorize_params, query

READ, WRITE = "crm.objects.contacts.read", "crm.objects.contacts.write"
DEALS_WRITE = "crm.objects.deals.write"
#: An https redirect URI: consent for it may be remembered (unlike a loopback one, RFC 8252 §8.6).
REDIRECT = "https://app.example/callback"


def _code(flow, client_id, scope: str, scopes: list[str]):
    """A code for `scope`: through the consent page, or at once when consent is remembered."""
    pkce = PKCE()
    params = authorize_params(client_id, pkce, redirect_uri=REDIRECT, scope=scope)
    response = flow.consent_page(params)
    if response.status_code != 302:
        response = flow.decide(params, scopes=scopes)
    assert response.status_code == 302, response.get_data(as_text=True)
    return query(response.headers["Location"])["code"], pkce


def _narrowed_family(flow, register):
    """The reproduction: read+write approved, then a second authorization for read only."""
    client_id = register(redirect_uris=[REDIRECT])["client_id"]
    code, pkce = _code(flow, client_id, f"{READ} {WRITE}", [READ, WRITE])
    assert flow.exchange(client_id, code, pkce, redirect_uri=REDIRECT).get_json()["scope"] == f"{READ} {WRITE}"
    code, pkce = _code(flow, client_id, READ, [READ])
    tokens = flow.exchange(client_id, code, pkce, redirect_uri=REDIRECT)
    assert tokens.status_code == 200, tokens.get_json()
    assert tokens.get_json()["scope"] == READ
    return client_id, tokens.get_json()


def test_refresh_keeps_the_scope_of_its_own_authorization(flow, register):
    client_id, tokens = _narrowed_family(flow, register)
    refreshed = flow.refresh(client_id, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert refreshed.get_json()["scope"] == READ
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["scope"] == READ


def test_refresh_asking_for_scope_the_authorization_did_not_grant_gets_none_of_it(flow, register):
    client_id, tokens = _narrowed_family(flow, register)
    wider = flow.refresh(client_id, tokens["refresh_token"], scope=f"{READ} {WRITE}")
    assert wider.status_code == 200 and wider.get_json()["scope"] == READ
    # Asking only for what this family was never authorized for (though the grant has it).
    assert_oauth_error(flow.refresh(client_id, wider.get_json()["refresh_token"], scope=WRITE), "invalid_scope")


def test_scope_never_exceeds_the_first_token_across_a_chain_of_refreshes(flow, register):
    """Whatever a chain of refreshes asks for (nothing, wider, other, narrower, ignored scopes),
    no token in it carries a scope the first token of the family did not have."""
    client_id, tokens = _narrowed_family(flow, register)
    first = set(tokens["scope"].split())
    refresh_token = tokens["refresh_token"]
    asks = [None, f"{READ} {WRITE}", WRITE, None, f"{WRITE} {DEALS_WRITE}", READ, None,
            f"offline_access {WRITE}", "offline_access", f"{READ} {WRITE} {DEALS_WRITE}", None]
    for ask in asks:
        response = flow.refresh(client_id, refresh_token, **({"scope": ask} if ask else {}))
        body = response.get_json()
        if response.status_code != 200:
            assert body["error"] in ("invalid_scope", "invalid_grant"), (ask, body)
            continue
        assert set(body["scope"].split()) <= first, (ask, body["scope"])
        assert set(flow.introspect(body["access_token"]).get_json()["scope"].split()) <= first
        refresh_token = body["refresh_token"]
