"""A whole flow driven by Authlib's own OAuth2 client (httpx), with the browser part over HTTP."""

from __future__ import annotations

import httpx2
from authlib.integrations.httpx_client import OAuth2Client
from authlib.common.security import generate_token

from .support import PASSWORD, REDIRECT_URI, RESOURCE, csrf_token, query, shown_hub


def test_public_client_full_flow_with_authlib_client(app, world):
    transport = httpx2.WSGITransport(app=app)
    base = world.issuer  # https, served in-process by the WSGI transport
    browser = httpx2.Client(transport=transport, base_url=base, follow_redirects=False)

    metadata = browser.get("/.well-known/oauth-authorization-server").json()
    registration = browser.post(
        "/oauth/register",
        json={
            "client_name": "Authlib test client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        },
    ).json()

    oauth = OAuth2Client(
        client_id=registration["client_id"],
        token_endpoint_auth_method="none",
        redirect_uri=REDIRECT_URI,
        scope="crm.objects.contacts.read crm.objects.companies.read crm.objects.deals.read",
        code_challenge_method="S256",
        transport=transport,
    )
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, resource=RESOURCE
    )

    # The browser: redirected to login, logs in, comes back to the consent page.
    response = browser.get(url)
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    login_page = browser.get(response.headers["Location"])
    response = browser.post(
        "/login",
        data={
            "csrf_token": csrf_token(login_page.text),
            "email": "alice@example.com",
            "password": PASSWORD,
            "next": query(response.headers["Location"])["next"],
        },
    )
    consent_page = browser.get(response.headers["Location"])
    assert consent_page.status_code == 200
    assert "Authlib test client" in consent_page.text and "Globex" in consent_page.text

    # Choose Globex (viewer): show its permissions, then untick companies and allow.
    consent_page = browser.post(
        url,
        data={"csrf_token": csrf_token(consent_page.text), "hub": "10000002", "shown_hub": shown_hub(consent_page.text),
              "scope": ["crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read"],
              "decision": "switch"},
    )
    assert consent_page.status_code == 200 and shown_hub(consent_page.text) == "10000002"
    response = browser.post(
        url,
        data={
            "csrf_token": csrf_token(consent_page.text),
            "hub": "10000002",
            "shown_hub": shown_hub(consent_page.text),
            "scope": ["crm.objects.contacts.read", "crm.objects.deals.read"],
            "decision": "allow",
        },
    )
    callback = response.headers["Location"]
    assert callback.startswith(REDIRECT_URI + "?")
    assert query(callback)["iss"] == world.issuer

    token = oauth.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        resource=RESOURCE,
    )
    assert token["token_type"] == "Bearer"
    assert isinstance(token["expires_in"], int)
    assert token["scope"] == "crm.objects.contacts.read crm.objects.deals.read"
    assert token["access_token"].startswith("ast_") and token["refresh_token"].startswith("asr_")

    def introspect(value):
        return browser.post("/oauth/introspect", data={"token": value}, headers=world.mcp_auth).json()

    answer = introspect(token["access_token"])
    assert answer["active"] is True
    assert answer["client_id"] == registration["client_id"]
    assert answer["hub_id"] == 10000002
    assert answer["user_id"] == world.alice_id and answer["sub"] == str(world.alice_id)
    assert answer["scope"] == "crm.objects.contacts.read crm.objects.deals.read"
    assert answer["aud"] == RESOURCE
    assert answer["iss"] == world.issuer == metadata["issuer"]
    assert answer["token_type"] == "Bearer" and answer["exp"] > answer["iat"]

    refreshed = oauth.refresh_token(
        metadata["token_endpoint"], refresh_token=token["refresh_token"]
    )
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert introspect(refreshed["access_token"])["active"] is True
    assert introspect(token["access_token"]) == {"active": False}

    response = oauth.revoke_token(
        metadata["revocation_endpoint"],
        token=refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert response.status_code == 200
    assert introspect(refreshed["access_token"]) == {"active": False}
