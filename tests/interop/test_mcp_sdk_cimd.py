"""The official `mcp` SDK client identifying itself with a Client ID Metadata Document (its
`client_metadata_url`), unmodified, over real HTTP: no registration; authserver fetches the
document from a real HTTPS origin (test CA), shows the verified domain, and the flow completes."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from cimd.conftest import _origin, cimd_settings, client_document, origin  # noqa: F401  (fixtures)
from crm_mcp.client import MemoryStorage
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from .test_mcp_sdk_flow import Browser, Wire
from .people import Person

DOCUMENT = "/mcp-sdk/client.json"
REDIRECT_URI = "http://127.0.0.1:33419/callback"


@pytest.fixture
def live_settings(origin):  # noqa: F811
    return cimd_settings(origin)


def test_mcp_sdk_client_with_a_client_id_metadata_document(live_settings, live, origin):  # noqa: F811
    client_id = origin.url(DOCUMENT)
    origin.serve(DOCUMENT, client_document(client_id, [REDIRECT_URI], client_name="MCP SDK (CIMD)"))
    metadata = httpx2.get(f"{live.issuer}/.well-known/oauth-authorization-server").json()
    assert metadata["client_id_metadata_document_supported"] is True

    person = Person(live.issuer, live.email, live.password)
    browser = Browser(person, [{"hub": "10000002"}])
    wire = Wire()
    provider = OAuthClientProvider(
        server_url=live.resource,
        client_metadata=OAuthClientMetadata(client_name="MCP SDK (CIMD)", redirect_uris=[REDIRECT_URI],
                                            grant_types=["authorization_code", "refresh_token"],
                                            response_types=["code"], token_endpoint_auth_method="none"),
        storage=MemoryStorage(), redirect_handler=browser.redirect_handler, callback_handler=browser.callback_handler,
        client_metadata_url=client_id,
    )

    async def main():
        async with httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"response": [wire.on_response]}) as http:
            async with Client(streamable_http_client(live.resource, http_client=http)) as client:
                found = await client.call_tool("search_crm_objects", {"object_type": "contacts"})
                assert not found.is_error
                return found.structured_content

    try:
        result = anyio.run(main)
    finally:
        person.close()
    assert result["hub_id"] == 10000002
    assert {r["properties"]["lastname"] for r in result["results"]} == {"Scorpio", "Simpson"}
    assert not wire.find(url_part="/oauth/register"), "a metadata-document client never registers"
    assert f"client_id={client_id.replace(':', '%3A').replace('/', '%2F')}" in browser.urls[0]
    assert 'Verified domain: <strong class="verified-domain">client.test</strong>' in person.consent_pages[0]
    assert origin.hits[DOCUMENT] == 1
