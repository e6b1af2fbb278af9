"""The official `mcp` SDK client, unmodified, against the example CRM MCP server and authserver,
all over real HTTP: discovery (RFC 9728, RFC 8414), dynamic registration, authorization with PKCE
and `resource`, hub choice and unticked scopes, 403 step-up, refresh by itself, and revocation."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from crm_mcp.client import MemoryStorage
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from .people import Person

CLIENT_NAME = "MCP SDK interop client"
REDIRECT_URI = "http://127.0.0.1:33418/callback"
LIFETIME = 3
MCP_CACHE = 0.25


class Declined(Exception):
    """The person said no; the app's callback received an error instead of a code."""


class Browser:
    """The SDK's redirect/callback handlers, backed by a Person who follows a script of decisions."""

    def __init__(self, person: Person, decisions: list[dict]):
        self.person = person
        self.decisions = decisions
        self.urls: list[str] = []
        self.callback: dict[str, str] | None = None

    async def redirect_handler(self, url: str) -> None:
        self.urls.append(url)
        decision = self.decisions.pop(0)
        self.callback = await anyio.to_thread.run_sync(lambda: self.person.authorize(url, **decision))

    async def callback_handler(self) -> AuthorizationCodeResult:
        params = self.callback
        if "code" not in params:
            raise Declined(params.get("error"))
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


class Wire:
    """Every request and response the client sent and got (an httpx event hook)."""

    def __init__(self):
        self.exchanges: list[tuple[str, str, int, str, bytes]] = []

    async def on_response(self, response: httpx2.Response):
        request = response.request
        self.exchanges.append((request.method, str(request.url), response.status_code,
                               response.headers.get("www-authenticate", ""), request.content))

    def find(self, *, url_part: str = "", status: int | None = None, body_part: bytes = b""):
        return [e for e in self.exchanges
                if url_part in e[1] and (status is None or e[2] == status) and body_part in e[4]]


class SdkClock:
    """The clock by which the SDK client decides that its access token has expired (it refreshes
    before sending a request with an expired one): moved on by the test, not slept through."""

    def __init__(self):
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def sdk_clock(monkeypatch):
    clock = SdkClock()
    for module in ("mcp.client.auth.oauth2", "mcp.shared.auth_utils"):  # expiry kept, and checked
        monkeypatch.setattr(f"{module}.time", clock)
    return clock


def texts(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.live_config(ACCESS_TOKEN_LIFETIME=LIFETIME, MCP_CACHE_SECONDS=MCP_CACHE)
def test_mcp_sdk_client_full_oauth_flow(live, sdk_clock):
    person = Person(live.issuer, live.email, live.password)
    browser = Browser(person, [
        {"hub": "10000001", "untick": ["crm.objects.notes.write"]},  # first connection
        # Asked again for notes.write (403 step-up): the person keeps it unticked.
        {"hub": "10000001", "untick": ["crm.objects.notes.write"]},
        {"decision": "deny"},  # asked to reconnect after revoking the app: no
    ])
    storage = MemoryStorage()
    wire = Wire()
    provider = OAuthClientProvider(
        server_url=live.resource,
        client_metadata=OAuthClientMetadata(
            client_name=CLIENT_NAME,
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )

    async def main():
        async with httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"response": [wire.on_response]}) as http:
            async with Client(streamable_http_client(live.resource, http_client=http)) as client:
                # Discovery, registration, authorization and token exchange happened on the way in.
                tools = {t.name for t in (await client.list_tools()).tools}
                assert tools == {"search", "fetch", "list_properties", "get_associations",
                                 "search_crm_objects", "get_crm_object", "create_note"}

                found = await client.call_tool("search_crm_objects", {"object_type": "contacts"})
                assert not found.is_error, texts(found)
                names = {r["properties"]["lastname"] for r in found.structured_content["results"]}
                assert names == {"Lovelace", "Hopper", "Gibbons"}  # Acme Sales only, never Globex
                assert found.structured_content["hub_id"] == 10000001
                deal = await client.call_tool("search_crm_objects", {"object_type": "deals", "filters": {"stage": "negotiation"}})
                assert [r["properties"]["name"] for r in deal.structured_content["results"]] == ["Initech TPS reports"]

                # The person unticked notes.write: 403 insufficient_scope naming it; the SDK asks for
                # it (step-up), the person again leaves it unticked, and the call fails.
                with pytest.raises(MCPError):
                    await client.call_tool("create_note", {"object_type": "contacts", "object_id": 1, "body": "hi"})
                refused = wire.find(url_part="/mcp", status=403)
                assert len(refused) == 2  # before and after the step-up
                for exchange in refused:
                    assert 'error="insufficient_scope"' in exchange[3]
                    assert 'scope="crm.objects.notes.write"' in exchange[3]
                assert "crm.objects.notes.write" in parse_qs(urlsplit(browser.urls[1]).query)["scope"][0]
                # Reading still works; nothing was written.
                ada = await client.call_tool("get_crm_object", {"object_type": "contacts", "object_id": 1})
                assert ada.structured_content["notes"] == []

                # After the access token expires, the client refreshes by itself and goes on.
                before = storage.tokens.access_token
                sdk_clock.offset += LIFETIME + 0.5
                again = await client.call_tool("get_crm_object", {"object_type": "contacts", "object_id": 1})
                assert not again.is_error, texts(again)
                assert again.structured_content["properties"]["email"] == "ada@acme.example"
                assert wire.find(url_part="/oauth/token", status=200, body_part=b"grant_type=refresh_token")
                assert storage.tokens.access_token != before

                # The person revokes the app on /account/apps: the next call is refused with 401, the
                # SDK asks the person to connect again, and they decline (which ends this session).
                revoked = storage.tokens.access_token
                await anyio.to_thread.run_sync(lambda: person.revoke_app(CLIENT_NAME))
                await anyio.sleep(MCP_CACHE + 0.1)  # the MCP server's positive cache (5 s at most)
                direct = await http_plain.post(live.resource, json={}, headers={"Authorization": f"Bearer {revoked}"})
                assert direct.status_code == 401 and 'error="invalid_token"' in direct.headers["www-authenticate"]
                await client.call_tool("search_crm_objects", {"object_type": "companies"})

    async def run():
        nonlocal http_plain
        async with httpx2.AsyncClient(timeout=10.0) as http_plain:
            with pytest.raises(BaseException) as ended:
                await main()
            assert _caused_by(ended.value, Declined), ended.value

    http_plain = None
    try:
        anyio.run(run)
    finally:
        person.close()

    # The whole transcript, as the spec describes it.
    first = wire.exchanges[0]
    assert first[1] == live.resource and first[2] == 401
    assert f'resource_metadata="{live.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")}"' in first[3]
    assert wire.find(url_part="/.well-known/oauth-protected-resource/mcp", status=200)
    assert wire.find(url_part="/.well-known/oauth-authorization-server", status=200)
    assert wire.find(url_part="/oauth/register", status=201)
    authorization = browser.urls[0]
    assert "code_challenge_method=S256" in authorization and "resource=http" in authorization
    assert browser.callback is not None
    last = wire.find(url_part="/mcp", status=401)[-1]
    assert last[0] == "POST" and b"search_crm_objects" in last[4] and 'error="invalid_token"' in last[3]
    assert len(browser.urls) == 3  # first connection, step-up, after revocation


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        stack.extend(getattr(current, "exceptions", ()))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False
