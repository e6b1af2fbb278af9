"""The ChatGPT profile: a metadata document shaped like ChatGPT's, end to end, and grants kept
per installation of a shared client_id."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, RESOURCE, authorize_params, query

from authserver.extensions import db
from authserver.models import Grant, ResourceServer

from .conftest import ASSERTION_TYPE, client_document

CONNECTOR = "g-4f1e2d3c"
DOCUMENT_PATH = f"/oauth/{CONNECTOR}/client.json"
JWKS_PATH = "/oauth/jwks.json"
PER_CONNECTOR = f"https://chatgpt.com/connector/oauth/{CONNECTOR}"
STABLE = "https://chatgpt.com/connector_platform_oauth_redirect"


@pytest.fixture
def chatgpt(origin, key):
    client_id = origin.url(DOCUMENT_PATH, host="chatgpt.com")
    origin.serve(DOCUMENT_PATH, client_document(
        client_id, [PER_CONNECTOR, STABLE], client_name="ChatGPT",
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_methods_supported=["none", "private_key_jwt"],
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        jwks_uri=origin.url(JWKS_PATH, host="chatgpt.com"),
    ), headers={"Cache-Control": "max-age=300"})
    origin.serve(JWKS_PATH, {"keys": [key.jwk]})
    return client_id


def default_scope(app) -> set[str]:
    with app.app_context():
        resource = db.session.scalar(db.select(ResourceServer).where(ResourceServer.uri == RESOURCE))
        return set(resource.default_scope_set)


def authorize(flow, client_id, redirect_uri, **params):
    """Authorize without `scope` (ChatGPT sends none), consenting when asked; the redirect's params."""
    pkce = PKCE()
    request = authorize_params(client_id, pkce, redirect_uri=redirect_uri, scope=None, **params)
    first = flow.consent_page(request)
    if first.status_code == 200:
        html = first.get_data(as_text=True)
        from oauth.support import csrf_token, shown_hub

        import re

        ticked = re.findall(r'name="scope" value="([^"]+)"[^>]*checked', html)
        first = flow.client.post("/oauth/authorize", query_string=request,
                                 data={"csrf_token": csrf_token(html), "hub": "10000001", "shown_hub": shown_hub(html),
                                       "scope": ticked, "decision": "allow"})
    assert first.status_code == 302, first.get_data(as_text=True)
    assert first.headers["Location"].startswith(redirect_uri + "?")
    result = query(first.headers["Location"])
    assert result["iss"] == flow.world.issuer and result["state"] == request["state"]
    return result, pkce


def assertion(key, client_id, flow):
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": key.assertion(client_id, f"{flow.world.issuer}/oauth/token")}


def test_chatgpt_document_completes_a_flow_with_private_key_jwt(app, flow, chatgpt, key, origin):
    page = flow.consent_page(authorize_params(chatgpt, PKCE(), redirect_uri=STABLE, scope=None))
    assert 'Verified domain: <strong class="verified-domain">chatgpt.com</strong>' in page.get_data(as_text=True)

    result, pkce = authorize(flow, chatgpt, STABLE)
    response = flow.exchange(chatgpt, result["code"], pkce, redirect_uri=STABLE, **assertion(key, chatgpt, flow))
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    assert tokens["refresh_token"], "a refresh token without offline_access"
    assert set(tokens["scope"].split()) == default_scope(app)

    body = flow.introspect(tokens["access_token"]).get_json()
    assert body["active"] is True
    assert body["client_id"] == chatgpt and body["aud"] == RESOURCE and body["hub_id"] == 10000001

    refreshed = flow.refresh(chatgpt, tokens["refresh_token"], resource=RESOURCE, **assertion(key, chatgpt, flow))
    assert refreshed.status_code == 200, refreshed.get_json()
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["aud"] == RESOURCE

    # Reconnecting (no scope again) is remembered: straight back with a code, default scopes.
    again, pkce = authorize(flow, chatgpt, STABLE)
    second = flow.exchange(chatgpt, again["code"], pkce, redirect_uri=STABLE, **assertion(key, chatgpt, flow))
    assert set(second.get_json()["scope"].split()) == default_scope(app)
    assert origin.hits[DOCUMENT_PATH] == 1  # cached for max-age=300
    assert origin.hits[JWKS_PATH] == 1

    apps = flow.client.get("/account/apps").get_data(as_text=True)
    assert "ChatGPT</strong>" in apps and "verified domain chatgpt.com<" in apps


@pytest.mark.app_config(PRIVATE_KEY_JWT_ENABLED=False)
def test_chatgpt_document_uses_none_when_private_key_jwt_is_off(client, flow, chatgpt):
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert "private_key_jwt" not in metadata["token_endpoint_auth_methods_supported"]
    result, pkce = authorize(flow, chatgpt, PER_CONNECTOR)
    response = flow.exchange(chatgpt, result["code"], pkce, redirect_uri=PER_CONNECTOR)
    assert response.status_code == 200, response.get_json()
    assert flow.introspect(response.get_json()["access_token"]).get_json()["client_id"] == chatgpt


def test_grants_are_per_installation_of_a_shared_client_id(app, flow, chatgpt, origin):
    other_connector = "https://chatgpt.com/connector/oauth/g-other"
    origin.serve(DOCUMENT_PATH, client_document(
        chatgpt, [PER_CONNECTOR, other_connector, STABLE], client_name="ChatGPT",
        token_endpoint_auth_methods_supported=["none"]))
    contacts, deals = "crm.objects.contacts.read", "crm.objects.deals.read"

    flow.get_code(chatgpt, redirect_uri=PER_CONNECTOR, scope=contacts)
    # Another installation is asked again: consent given to the first is not reused for it.
    assert flow.consent_page(authorize_params(chatgpt, PKCE(), redirect_uri=other_connector, scope=contacts)).status_code == 200
    flow.get_code(chatgpt, redirect_uri=other_connector, scope=contacts)

    def live_grants():
        with app.app_context():
            rows = db.session.scalars(db.select(Grant).where(Grant.revoked_at.is_(None)))
            return {g.redirect_uri: (g.id, g.scope) for g in rows}

    before = live_grants()
    assert set(before) == {PER_CONNECTOR, other_connector}

    # Re-authorizing the first installation with more scopes replaces its grant's scopes; the
    # other installation's grant is untouched.
    flow.get_code(chatgpt, redirect_uri=PER_CONNECTOR, scope=f"{contacts} {deals}")
    after = live_grants()
    assert after[PER_CONNECTOR] == (before[PER_CONNECTOR][0], f"{contacts} {deals}")
    assert after[other_connector] == before[other_connector]
