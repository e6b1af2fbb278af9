"""The consent page: what it shows, what it accepts, remembered consent, deny, headers."""

from __future__ import annotations

from .support import PKCE, assert_redirect_error, authorize_params, csrf_token, query


def test_consent_page_shows_client_redirect_hub_and_scopes(flow, register):
    client_id = register(client_name="Helpful Bot")["client_id"]
    params = authorize_params(client_id, PKCE(), scope="crm.objects.contacts.read crm.objects.contacts.write")
    page = flow.consent_page(params, hub="10000002")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Helpful Bot" in html and "not been verified" in html
    assert "127.0.0.1:7777" in html and "this computer" in html  # loopback warning
    assert "Acme" in html and "Globex" in html
    assert "View your contacts" in html and "Create and edit your contacts" in html
    # Viewer in Globex: the write scope is shown, disabled, with the reason.
    assert "Unavailable: you don't have this permission in Globex" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert 'name="csrf_token"' in html


def test_switching_hub_changes_available_scopes(flow, register):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), scope="crm.objects.contacts.write")
    acme = flow.consent_page(params, hub="10000001").get_data(as_text=True)
    globex = flow.consent_page(params, hub="10000002").get_data(as_text=True)
    assert "Unavailable" not in acme
    assert "Unavailable" in globex and "disabled>" not in acme


def test_unticked_scope_is_not_granted(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scopes=["crm.objects.contacts.read"])
    assert tokens["scope"] == "crm.objects.contacts.read"


def test_scopes_user_lacks_are_not_granted_even_if_ticked(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, hub="10000002", scopes=["crm.objects.contacts.read", "crm.objects.contacts.write"])
    assert tokens["scope"] == "crm.objects.contacts.read"


def test_empty_grant_cannot_be_approved(flow, register):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = flow.decide(params, scopes=[])
    assert response.status_code == 400 and "Location" not in response.headers
    assert "at least one permission" in response.get_data(as_text=True)


def test_hand_edited_hub_the_user_does_not_belong_to(app, client, world, register):
    from .conftest import FlowDriver

    bob = FlowDriver(client, world)
    bob.login("bob@example.com")
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = bob.decide(params, hub="10000002")  # Globex: bob is not a member
    assert response.status_code == 400 and "Location" not in response.headers
    response = bob.decide(params, hub="99999999")
    assert response.status_code == 400 and "Location" not in response.headers


def test_consent_without_csrf_token_is_refused(flow, register):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = flow.client.post(
        "/oauth/authorize", query_string=params,
        data={"hub": "10000001", "scope": ["crm.objects.contacts.read"], "decision": "allow"},
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_deny_redirects_access_denied_with_state_and_iss(flow, register, world):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = flow.decide(params, decision="deny")
    assert_redirect_error(response, "access_denied", params["state"], world.issuer)


def test_remembered_consent_skips_page_for_same_or_fewer_scopes(flow, register, world):
    # An https redirect URI: public clients on loopback are asked every time (test_loopback_consent).
    app_uri = "https://app.example/callback"
    client_id = register(redirect_uris=[app_uri])["client_id"]
    flow.get_code(client_id, hub="10000001", redirect_uri=app_uri,
                  scopes=["crm.objects.contacts.read", "crm.objects.contacts.write"])
    params = authorize_params(client_id, PKCE(), scope="crm.objects.contacts.read", redirect_uri=app_uri)
    response = flow.consent_page(params)
    assert response.status_code == 302
    result = query(response.headers["Location"])
    assert result["code"] and result["iss"] == world.issuer and result["state"] == params["state"]
    # Asking for more than was granted shows the page again.
    params = authorize_params(client_id, PKCE(), scope="crm.objects.contacts.read crm.objects.deals.read",
                              redirect_uri=app_uri)
    assert flow.consent_page(params).status_code == 200


def test_missing_scope_means_resource_default_scopes(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=None, scopes=[
        "crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read"])
    assert tokens["scope"] == "crm.objects.contacts.read crm.objects.companies.read crm.objects.deals.read"


def test_offline_access_prompt_and_id_token_hint_are_accepted_and_ignored(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(
        client_id, scope="crm.objects.contacts.read offline_access", prompt="consent", id_token_hint="x",
        scopes=["crm.objects.contacts.read"],
    )
    assert tokens["scope"] == "crm.objects.contacts.read" and "refresh_token" in tokens


def test_unauthenticated_user_is_sent_to_login_and_back(client, world, register):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = client.get("/oauth/authorize", query_string=params)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=%2Foauth%2Fauthorize")
    login = client.get(response.headers["Location"])
    assert 'value="/oauth/authorize?' in login.get_data(as_text=True)
    assert csrf_token(login.get_data(as_text=True))


def test_preregistered_client_allowed_scopes_limit_the_grant(flow, preregistered):
    client_id, secret = preregistered(allowed_scopes="crm.objects.contacts.read")
    code, pkce, _ = flow.get_code(
        client_id, scope="crm.objects.contacts.read crm.objects.deals.read",
        scopes=["crm.objects.contacts.read", "crm.objects.deals.read"],
    )
    response = flow.client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:7777/callback",
              "code_verifier": pkce.verifier},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "crm.objects.contacts.read"
