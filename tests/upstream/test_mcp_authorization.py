"""An MCP client's authorization that starts signed out and completes through the operator's
OpenID Connect provider: Authlib's OAuth client registers (RFC 7591), sends the person to
/oauth/authorize with PKCE and `resource`, the person signs in at the provider, consents, and the
client exchanges the code; the token is the linked user's, in the hub they chose."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from authserver import accounts
from authserver.extensions import db

from .conftest import NAME, PEOPLE

REDIRECT_URI = "http://127.0.0.1:33419/callback"
SCOPE = "crm.objects.contacts.read crm.objects.deals.read"


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_mcp_authorization_signs_in_through_the_provider(upstream, browser, make_user, make_hub, make_resource,
                                                        stage):
    app = upstream(PASSWORD_LOGIN_ENABLED=False)
    resource, resource_secret = make_resource()
    hub = make_hub("Acme Sales", 10000001)
    vera = make_user(PEOPLE["vera"][1], role="viewer", hubs=[hub])
    with app.app_context():
        accounts.link_upstream_identity(accounts.get_user(vera.id), NAME, PEOPLE["vera"][0], PEOPLE["vera"][1])
        db.session.commit()
    issuer = stage.live.url
    metadata = httpx2.get(f"{issuer}/.well-known/oauth-authorization-server").json()
    registration = httpx2.post(metadata["registration_endpoint"], json={
        "client_name": "Upstream MCP client", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"]}).json()

    with OAuth2Client(client_id=registration["client_id"], token_endpoint_auth_method="none",
                      redirect_uri=REDIRECT_URI, scope=SCOPE, code_challenge_method="S256") as oauth:
        verifier = generate_token(48)
        url, state = oauth.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                    resource=resource.uri)

        # Signed out: sent to the sign-in page, which offers the provider only.
        response = browser.http.get(url)
        assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
        next_path = query(response.headers["Location"])["next"]
        page = browser.http.get(browser.url(response.headers["Location"])).text
        assert "Sign in with Corp Identity" in page and 'type="password"' not in page

        # Through the provider and back to the waiting authorization request.
        back = browser.sign_in("vera", next_path=next_path)
        assert back.status_code == 302 and back.headers["Location"] == next_path
        consent = browser.http.get(browser.url(next_path))
        assert consent.status_code == 200 and "Upstream MCP client" in consent.text and "Acme Sales" in consent.text
        token_field = consent.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        decided = browser.http.post(browser.url(next_path), data={
            "csrf_token": token_field, "hub": "10000001", "shown_hub": "10000001", "scope": SCOPE.split(),
            "decision": "allow"})
        assert decided.status_code == 302 and decided.headers["Location"].startswith(REDIRECT_URI)
        params = query(decided.headers["Location"])
        assert params["state"] == state and params["iss"] == issuer

        token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=decided.headers["Location"],
                                  code_verifier=verifier, resource=resource.uri)
    assert token["token_type"] == "Bearer" and set(token["scope"].split()) == set(SCOPE.split())

    answer = httpx2.post(metadata["introspection_endpoint"], data={"token": token["access_token"]},
                         auth=(resource.credential_id, resource_secret)).json()
    assert answer["active"] is True
    assert answer["user_id"] == vera.id and answer["hub_id"] == 10000001 and answer["aud"] == resource.uri
