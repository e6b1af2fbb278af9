"""Upstream sign-in in a real browser, end to end: with password sign-in off and the operator's
OpenID Connect provider configured (tests/upstream's node-oidc-provider), the unmodified `mcp` SDK
client connects to the example CRM MCP server while nobody is signed in. Chromium opens the
authorization URL: the branded sign-in page names the waiting app and offers only "Sign in with
<provider>"; the person signs in on the provider's own pages, comes back, picks the second of
their two hubs and allows, and the SDK client calls a tool in that hub. The account was made and
given its hubs by the product's back end through the admin API (HTTP Basic, a credential from
`admin create-credential`), and linked at first sign-in by the provider's verified email. Then the
back end disables the account through the admin API: the same SDK session's next tool call is
refused with 401, and the connected-apps page in the same browser asks to sign in.

Screenshots of the sign-in and consent pages go to test-artifacts/screenshots/ (chromium.py)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from crm_mcp.client import MemoryStorage
from live import HOST, free_port
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from upstream.conftest import DISPLAY_NAME, NAME, PEOPLE, oidc_provider, provider_settings

from authserver import accounts

from .chromium import ARGS, SCREENSHOTS, require_chromium
from .conftest import HUBS
from .test_mcp_sdk_flow import Wire, _caused_by

ACME, GLOBEX = HUBS
PRODUCT = "Acme CRM"
CLIENT_NAME = "Upstream Browser Assistant"
REDIRECT_URI = "http://127.0.0.1:33420/callback"
LOGIN, (SUBJECT, EMAIL) = "vera", PEOPLE["vera"]


class SignedOut(Exception):
    """The SDK asked the person to connect again, and the browser was at the sign-in page."""


@pytest.fixture
def provider_port():
    """The provider's port, chosen before the live stack is built (its settings name the issuer);
    the provider starts once authserver's URL, its redirect URI, is known."""
    return free_port()


@pytest.fixture
def live_settings(provider_port):
    return {"UPSTREAM_PROVIDERS": [provider_settings(f"http://{HOST}:{provider_port}")]}


@pytest.fixture
def provider(live, live_settings, provider_port, tmp_path):
    with oidc_provider(tmp_path, redirect_uris=[f"{live.issuer}/login/upstream/{NAME}/callback"],
                       port=provider_port) as process:
        yield process


def admin_credential(app) -> tuple[str, str]:
    """`flask admin create-credential`, in process: (credential id, secret) from its output."""
    result = app.test_cli_runner().invoke(args=["admin", "create-credential", "--name", "CRM back end"])
    assert result.exit_code == 0, result.output
    return (re.search(r"credential id:\s+(\S+)", result.output).group(1),
            re.search(r"secret:\s+(\S+)", result.output).group(1))


@pytest.mark.live_config(PASSWORD_LOGIN_ENABLED=False, UPSTREAM_LINK_VERIFIED_EMAIL=True, PRODUCT_NAME=PRODUCT,
                         MCP_CACHE_SECONDS=0)
def test_mcp_connection_through_the_provider_in_chromium_until_the_account_is_disabled(live, provider):
    executable = require_chromium()
    from playwright.async_api import async_playwright, expect

    # The product's back end: the person's account, without a password, and their hubs.
    credential = admin_credential(live.app)
    admin = httpx2.Client(base_url=f"{live.issuer}/admin/api/v1", auth=credential, timeout=15.0)
    created = admin.post("/users", json={"email": EMAIL, "display_name": "Vera"})
    assert created.status_code == 201, created.text
    vera = created.json()
    assert vera["has_password"] is False
    for hub, role in ((ACME, "admin"), (GLOBEX, "viewer")):
        added = admin.post(f"/hubs/{hub}/members", json={"user_id": vera["id"], "role": role})
        assert added.status_code == 201, added.text

    storage, wire = MemoryStorage(), Wire()
    authorizations: list[str] = []
    callbacks: list[dict[str, str]] = []
    landed: list[str] = []

    async def run():
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=ARGS, headless=True)
            page = await (await browser.new_context(viewport={"width": 1000, "height": 900})).new_page()

            async def app_callback(route):  # the app's redirect URI, answered in the browser
                landed.append(route.request.url)
                await route.fulfill(status=200, content_type="text/html", body="<h1>Connected</h1>")

            await page.route(REDIRECT_URI + "**", app_callback)

            async def redirect_handler(url: str) -> None:
                """The SDK opens the authorization URL in the person's browser."""
                authorizations.append(url)
                await page.goto(url)
                # Signed out: the sign-in page, naming the app, with the provider as the only way in.
                await expect(page).to_have_url(re.compile("^" + re.escape(f"{live.issuer}/login?next=")))
                await expect(page).to_have_title(f"Sign in · {PRODUCT}")
                await expect(page.get_by_role("heading", level=1)).to_have_text(
                    f"Sign in to {PRODUCT} to connect {CLIENT_NAME}")
                await expect(page.locator("input[type=password]")).to_have_count(0)
                button = page.get_by_role("button", name=f"Sign in with {DISPLAY_NAME}")
                await expect(button).to_be_visible()
                if len(authorizations) > 1:  # after the account was disabled: no way back in
                    raise SignedOut(url)
                await page.screenshot(path=str(SCREENSHOTS / "sign-in-upstream.png"), full_page=True)
                await button.click()

                # The provider's own sign-in page, on its own origin.
                await expect(page).to_have_title("Test provider sign-in")
                assert page.url.startswith(provider.url + "/interaction/")
                await page.locator("select[name=login]").select_option(LOGIN)
                await page.get_by_role("button", name="Sign in").click()

                # Back at authserver, on the waiting authorization request: consent in a chosen hub.
                await expect(page.get_by_role("button", name="Allow")).to_be_visible()
                assert page.url.startswith(f"{live.issuer}/oauth/authorize?")
                await expect(page.locator("h1")).to_contain_text(CLIENT_NAME)
                await expect(page.get_by_role("radio", name="Acme Sales")).to_be_checked()  # the first shown
                await page.get_by_role("radio", name="Globex Support").check()
                await page.get_by_role("button", name="Show permissions for this hub").click()
                await expect(page.get_by_role("heading", name="Permissions in Globex Support")).to_be_visible()
                await expect(page.get_by_label("View your contacts")).to_be_checked()
                await expect(page.get_by_label("Create and edit your notes")).to_be_disabled()  # a viewer there
                await page.screenshot(path=str(SCREENSHOTS / "consent-upstream.png"), full_page=True)
                await page.get_by_role("button", name="Allow").click()
                await page.wait_for_url(REDIRECT_URI + "**")
                callbacks.append({k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()})

            async def callback_handler() -> AuthorizationCodeResult:
                params = callbacks[-1]
                return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

            oauth = OAuthClientProvider(
                server_url=live.resource,
                client_metadata=OAuthClientMetadata(
                    client_name=CLIENT_NAME, redirect_uris=[REDIRECT_URI], response_types=["code"],
                    grant_types=["authorization_code", "refresh_token"], token_endpoint_auth_method="none"),
                storage=storage, redirect_handler=redirect_handler, callback_handler=callback_handler,
            )

            async def session():
                async with (httpx2.AsyncClient(auth=oauth, timeout=30.0,
                                               event_hooks={"response": [wire.on_response]}) as http,
                            Client(streamable_http_client(live.resource, http_client=http)) as client):
                    found = await client.call_tool("search", {"query": ""})
                    assert not found.is_error, found.content[0].text
                    # Globex Support's records a person without a seat there may see: the unassigned one.
                    assert [r["id"] for r in found.structured_content["results"]] == ["contacts:6"]

                    # Signed in here: the connected-apps page shows the app.
                    await page.goto(f"{live.issuer}/account/apps")
                    await expect(page.locator(".grant", has_text=CLIENT_NAME)).to_be_visible()

                    # The back end disables the account: the next tool call is refused.
                    disabled = await anyio.to_thread.run_sync(
                        lambda: admin.patch(f"/users/{vera['id']}", json={"disabled": True}))
                    assert disabled.status_code == 200 and disabled.json()["disabled"] is True, disabled.text
                    await client.call_tool("search", {"query": "object_type:deals"})

            with pytest.raises(BaseException) as ended:
                await session()
            assert _caused_by(ended.value, SignedOut), ended.value

            # The same browser, asking for the connected-apps page: the sign-in page.
            await page.goto(f"{live.issuer}/account/apps")
            await expect(page).to_have_url(f"{live.issuer}/login?next=%2Faccount%2Fapps")
            await expect(page.get_by_role("heading", level=1)).to_have_text(f"Sign in to {PRODUCT}")
            await browser.close()

    try:
        anyio.run(run)
    finally:
        admin.close()

    # One consent, back at the app with the code, from this issuer.
    assert len(landed) == 1 and set(callbacks[0]) == {"code", "state", "iss"}
    assert callbacks[0]["iss"] == live.issuer
    assert "resource=" in authorizations[0] and len(authorizations) == 2
    # The provider's identity was linked (by its verified email) to the account the back end made.
    with live.app.app_context():
        user = accounts.get_user(vera["id"])
        assert [(i.provider, i.subject) for i in accounts.find_upstream_identities(user)] == [(NAME, SUBJECT)]
    # The tool calls on the wire: the first answered, the one after disabling refused with 401.
    calls = wire.find(url_part="/mcp", body_part=b"tools/call")
    assert [c[2] for c in calls if b"object_type:deals" not in c[4]] == [200]
    refused = [c for c in calls if b"object_type:deals" in c[4]]
    assert [c[2] for c in refused] == [401] and 'error="invalid_token"' in refused[0][3]
    # Nothing of the app is left: the grant went with the account.
    grants = httpx2.get(f"{live.issuer}/admin/api/v1/users/{vera['id']}/grants",
                        auth=credential).json()["grants"]
    assert grants == []
