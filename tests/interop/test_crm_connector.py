"""The connector end to end: the unmodified `mcp` SDK client, through authserver's real OAuth flow,
calls `search` with query-language strings and `fetch` on a result, in two hubs and as two people
with different record access in one hub; each sees exactly their records and never a hidden
property, and a token without the needed scope is refused with 403 insufficient_scope."""

from __future__ import annotations

import json

import anyio
import httpx2
from crm_mcp.client import MemoryStorage
from crm_mcp.data import CRM
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from authserver import accounts
from authserver.extensions import db

from .people import Person
from .test_mcp_sdk_flow import Browser

ACME, GLOBEX = 10000001, 10000002
REDIRECT_URI = "http://127.0.0.1:33419/callback"


def connect(live, email: str, hub: int, untick=(), work=None):
    """Connect the SDK client as `email` to `hub` (consenting in the browser), then run `work`."""
    person = Person(live.issuer, email, live.password)
    browser = Browser(person, [{"hub": str(hub), "untick": list(untick)}])
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=live.resource,
        client_metadata=OAuthClientMetadata(
            client_name=f"Connector test ({email})", redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage, redirect_handler=browser.redirect_handler, callback_handler=browser.callback_handler,
    )

    async def main():
        async with (httpx2.AsyncClient(auth=provider, timeout=30.0) as http,
                    Client(streamable_http_client(live.resource, http_client=http)) as client):
            return await work(client, storage)

    try:
        return anyio.run(main)
    finally:
        person.close()


async def search(client, query: str) -> list[str]:
    result = await client.call_tool("search", {"query": query})
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return [r["id"] for r in result.structured_content["results"]]


async def fetch(client, record_id: str):
    return await client.call_tool("fetch", {"id": record_id})


def test_each_person_sees_exactly_their_records_in_each_hub(live):
    with live.app.app_context():
        alice = accounts.get_user_by_email(live.email)
        bob = accounts.create_user("bob@example.com", live.password, "Bob")
        accounts.add_member(bob, accounts.get_hub(ACME), "admin")
        db.session.commit()
        alice_id, bob_id = alice.id, bob.id
    # The CRM's own permissions, keyed by authserver's user ids (the MCP server reads this file).
    crm = CRM(live.crm_database)
    crm.assign_seat(ACME, bob_id, "fox@acme.example")
    crm.set_access(ACME, bob_id, "own", hidden=("deals.amount",))  # Alice: the hub's rule, every record
    crm.assign_seat(GLOBEX, alice_id, "demo@example.com")  # the hub's rule: own + unassigned, no amounts

    async def alice_in_acme(client, storage):
        assert await search(client, "") == ["contacts:1", "contacts:2", "contacts:3"]
        assert await search(client, "object_type:contacts associated_companies:in:acme,initech") == [
            "contacts:1", "contacts:2", "contacts:3"]
        assert await search(client, "object_type:deals amount:gt:50000") == ["deals:1"]
        deal = await fetch(client, "deals:2")
        assert not deal.is_error and "Amount: 45000" in deal.structured_content["text"]
        assert deal.structured_content["metadata"]["amount"] == "45000"
        # The url is the record's stable address on the example server, which shows no data unasked.
        url = deal.structured_content["url"]
        assert url == live.resource.replace("/mcp", f"/records/{ACME}/deals/2")
        async with httpx2.AsyncClient() as plain:
            page = await plain.get(url)
        assert page.status_code == 200 and "deals 2" in page.text and "45000" not in page.text

    async def bob_in_acme(client, storage):
        assert await search(client, "") == ["contacts:3"]
        assert await search(client, "object_type:deals") == ["deals:2"]
        assert await search(client, "object_type:companies") == ["companies:2"]
        deal = await fetch(client, "deals:2")
        assert not deal.is_error
        assert "amount" not in deal.content[0].text.lower() and "45000" not in deal.content[0].text
        hidden = await client.call_tool("search", {"query": "object_type:deals amount:gt:5"})
        assert hidden.is_error and 'Unknown property "amount" for deals' in hidden.content[0].text
        properties = await client.call_tool("list_properties", {"object_type": "deals"})
        assert "amount" not in [p["name"] for p in properties.structured_content["properties"]]
        ada = await fetch(client, "contacts:1")  # Alice's colleague's record: not his
        assert ada.is_error and "Not found: no record contacts:1 in this hub." in ada.content[0].text
        # He left tickets unticked: a token without the scope is refused before any tool runs.
        refused = httpx2.post(live.resource, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": "object_type:tickets"}},
        }, headers={"Authorization": f"Bearer {storage.tokens.access_token}",
                    "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"})
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert 'scope="crm.objects.tickets.read"' in refused.headers["www-authenticate"]

    async def alice_in_globex(client, storage):
        assert await search(client, "") == ["contacts:4", "contacts:6"]  # her own Hank and unassigned Lisa
        assert await search(client, "simpson") == ["contacts:6"]  # not Homer, Marge's
        assert await search(client, "object_type:deals") == ["deals:3"]
        deal = await fetch(client, "deals:3")
        assert not deal.is_error and deal.structured_content["title"] == "Globex support plan"
        assert "amount" not in deal.content[0].text.lower() and "30000" not in deal.content[0].text
        acme = await fetch(client, "contacts:1")  # another hub's record
        assert acme.is_error and "Not found" in acme.content[0].text

    connect(live, live.email, ACME, work=alice_in_acme)
    connect(live, "bob@example.com", ACME, untick=["crm.objects.tickets.read"], work=bob_in_acme)
    connect(live, live.email, GLOBEX, work=alice_in_globex)


def test_metadata_lists_exactly_the_scopes_the_tools_use(live):
    from crm_mcp.auth import SCOPES_SUPPORTED

    metadata = httpx2.get(live.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).json()
    assert metadata["scopes_supported"] == SCOPES_SUPPORTED


def test_the_demo_resource_server_grants_by_default_exactly_what_the_tools_use(app, runner):
    from crm_mcp.auth import SCOPES_SUPPORTED

    from authserver import resources
    from authserver.cli import DEMO_RESOURCE_URI

    result = runner.invoke(args=["demo", "seed", "--resource-secret", "asrs_demo-secret-for-the-test"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert resources.get_by_uri(DEMO_RESOURCE_URI).default_scope_set == frozenset(SCOPES_SUPPORTED)
