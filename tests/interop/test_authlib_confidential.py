"""Authlib's OAuth2 client as a confidential, pre-registered client (client_secret_basic), over real
HTTP against authserver, then calling the example CRM MCP server with the token it got."""

from __future__ import annotations

from urllib.parse import urlencode

import anyio
import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from authserver import clients
from authserver.extensions import db

from .people import Person, scope_boxes

REDIRECT_URI = "https://crm-app.example/oauth/callback"
SCOPES = "crm.objects.contacts.read crm.objects.companies.read crm.objects.deals.read"


async def call(resource: str, access_token: str, tool: str, arguments: dict):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {access_token}"}, timeout=15.0) as http:
        async with Client(streamable_http_client(resource, http_client=http)) as client:
            try:
                return await client.call_tool(tool, arguments)
            except MCPError as error:  # raised out of the client's task group it would be wrapped
                return error


@pytest.mark.live_config(MCP_CACHE_SECONDS=1)
def test_authlib_confidential_client_full_flow(live):
    with live.app.app_context():
        client, secret = clients.create_preregistered("Acme CRM Reports", [REDIRECT_URI])
        client_id = client.client_id
        db.session.commit()

    metadata = httpx2.get(f"{live.issuer}/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == live.issuer
    assert "client_secret_basic" in metadata["token_endpoint_auth_methods_supported"]

    oauth = OAuth2Client(
        client_id=client_id, client_secret=secret, token_endpoint_auth_method="client_secret_basic",
        redirect_uri=REDIRECT_URI, scope=SCOPES, code_challenge_method="S256",
    )
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                resource=live.resource)

    person = Person(live.issuer, live.email, live.password)
    try:
        # Globex Support, where Alice is a viewer; she unticks deals.
        params = person.authorize(url, hub="10000002", untick=["crm.objects.deals.read"])
        consent = person.consent_pages[-1]
    finally:
        person.close()
    assert "Acme CRM Reports" in consent and "crm-app.example" in consent
    assert "has not been verified" not in consent  # an operator registered this client
    assert {b.name for b in scope_boxes(consent)} >= set(SCOPES.split())
    assert params["state"] == state and params["iss"] == live.issuer

    token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=f"{REDIRECT_URI}?{urlencode(params)}",
                              code_verifier=verifier, resource=live.resource)
    assert token["token_type"] == "Bearer" and isinstance(token["expires_in"], int)
    assert token["scope"] == "crm.objects.contacts.read crm.objects.companies.read"
    assert token["refresh_token"]

    # The MCP server answers from Globex only, and refuses deals (unticked) with 403.
    result = anyio.run(call, live.resource, token["access_token"], "search_crm_objects", {"object_type": "contacts"})
    assert {r["properties"]["lastname"] for r in result.structured_content["results"]} == {"Scorpio", "Simpson"}
    refused = anyio.run(call, live.resource, token["access_token"], "search_crm_objects", {"object_type": "deals"})
    assert isinstance(refused, MCPError)
    raw = httpx2.post(live.resource, headers={"Authorization": f"Bearer {token['access_token']}"}, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "search_crm_objects", "arguments": {"object_type": "deals"}},
    })
    assert raw.status_code == 403
    assert 'error="insufficient_scope"' in raw.headers["www-authenticate"]
    assert 'scope="crm.objects.deals.read"' in raw.headers["www-authenticate"]

    # Refresh (rotated), authenticating with the secret; then revoke (RFC 7009): the MCP server says 401.
    refreshed = oauth.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    revoked = oauth.revoke_token(metadata["revocation_endpoint"], refreshed["refresh_token"],
                                 token_type_hint="refresh_token")
    assert revoked.status_code == 200
    oauth.close()
    # No wait for the MCP server's positive cache: it has never seen the refreshed access token.
    after = httpx2.post(live.resource, headers={"Authorization": f"Bearer {refreshed['access_token']}"}, json={})
    assert after.status_code == 401 and 'error="invalid_token"' in after.headers["www-authenticate"]
