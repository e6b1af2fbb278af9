"""The example CRM MCP server in `jwt` mode (CRM_MCP_TOKEN_MODE=jwt), through the unmodified `mcp`
SDK client's whole OAuth flow: reads are verified locally against authserver's JWKS with no
introspection, writes are introspected first, so a revoked grant reads until its JWT expires but
cannot write."""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import anyio
import httpx2
import pytest
from crm_mcp import auth, config
from crm_mcp.client import MemoryStorage
from joserfc import jwt as josejwt
from joserfc.jwk import ECKey
from live import CRM_MCP_DIR, HOST, Process, free_port, live_flask
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from authserver import accounts, resources
from authserver.extensions import db

from .conftest import MCP_SCOPES
from .people import Person
from .test_mcp_sdk_flow import REDIRECT_URI, Browser, Declined, Wire, _caused_by, texts

CLIENT_NAME = "MCP SDK client, jwt mode"


@pytest.fixture
def jwt_stack(request, make_app, tmp_path):
    """authserver (its resource server set to `jwt`, its introspections counted) and the example
    server in jwt mode, both live; alice is admin in Acme Sales (10000001)."""
    port = free_port()
    ns = SimpleNamespace(resource=f"http://{HOST}:{port}/mcp", introspections=0)

    def build(url):
        app = make_app(ISSUER=url)
        with app.app_context():
            alice = accounts.create_user("alice@example.com", "correct horse battery", "Alice")
            accounts.add_member(alice, accounts.create_hub("Acme Sales", 10000001), "admin")
            resource, ns.secret = resources.create(ns.resource, "Example CRM MCP server", None, MCP_SCOPES,
                                                   token_format=resources.JWT)
            ns.credential_id = resource.credential_id
            db.session.commit()
        inner = app.wsgi_app

        def counting(environ, start_response):
            ns.introspections += environ["PATH_INFO"] == "/oauth/introspect"
            return inner(environ, start_response)

        app.wsgi_app = counting
        return app

    with live_flask(build) as server:
        ns.issuer = server.url
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_MCP_", "AUTHSERVER_"))}
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(CRM_MCP_DIR), os.environ.get("PYTHONPATH")])),
                   CRM_MCP_TOKEN_MODE="jwt", CRM_MCP_ISSUER=server.url, CRM_MCP_RESOURCE=ns.resource,
                   CRM_MCP_CLIENT_ID=ns.credential_id, CRM_MCP_CLIENT_SECRET=ns.secret,
                   CRM_MCP_DATABASE=str(tmp_path / "crm.sqlite3"), CRM_MCP_HOST=HOST, CRM_MCP_PORT=str(port))
        process = Process([sys.executable, "-m", "crm_mcp"], env, tmp_path / "crm_mcp.log")
        request.addfinalizer(process.stop)
        process.wait_ready(f"http://{HOST}:{port}/.well-known/oauth-protected-resource/mcp")
        yield ns


def test_jwt_mode_reads_locally_and_introspects_writes(jwt_stack):
    live = jwt_stack
    person = Person(live.issuer, "alice@example.com", "correct horse battery")
    browser = Browser(person, [{"hub": "10000001"}, {"decision": "deny"}])
    storage = MemoryStorage()
    wire = Wire()
    provider = OAuthClientProvider(
        server_url=live.resource,
        client_metadata=OAuthClientMetadata(client_name=CLIENT_NAME, redirect_uris=[REDIRECT_URI],
                                            grant_types=["authorization_code", "refresh_token"],
                                            response_types=["code"], token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=browser.redirect_handler, callback_handler=browser.callback_handler,
    )

    async def main():
        http = httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"response": [wire.on_response]})
        async with http, Client(streamable_http_client(live.resource, http_client=http)) as client:
            assert storage.tokens.access_token.count(".") == 2  # a JWT, not an opaque token
            found = await client.call_tool("search_crm_objects", {"object_type": "contacts"})
            assert not found.is_error, texts(found)
            assert found.structured_content["hub_id"] == 10000001
            assert live.introspections == 0  # every read so far was verified locally

            note = await client.call_tool("create_note", {"object_type": "contacts", "object_id": 1, "body": "hi"})
            assert not note.is_error, texts(note)
            assert live.introspections == 1  # the write was introspected first

            # The person revokes the app: the JWT still reads until it expires (5 minutes at
            # most), but a write is refused with 401; the SDK asks to connect again: declined.
            await anyio.to_thread.run_sync(lambda: person.revoke_app(CLIENT_NAME))
            again = await client.call_tool("get_crm_object", {"object_type": "contacts", "object_id": 1})
            assert not again.is_error, texts(again)
            assert [n["body"] for n in again.structured_content["notes"]] == ["hi"]
            await client.call_tool("create_note", {"object_type": "contacts", "object_id": 1, "body": "no"})

    async def run():
        with pytest.raises(BaseException) as ended:
            await main()
        assert _caused_by(ended.value, Declined), ended.value

    try:
        anyio.run(run)
    finally:
        person.close()
    refused = wire.find(url_part="/mcp", status=401)[-1]
    assert refused[0] == "POST" and b"create_note" in refused[4] and 'error="invalid_token"' in refused[3]
    assert live.introspections == 2


# --- the verifier on its own ---------------------------------------------------------------------
ISSUER, RESOURCE = "https://auth.test", "https://mcp.test/mcp"


def _settings(**overrides):
    env = {"CRM_MCP_ISSUER": ISSUER, "CRM_MCP_RESOURCE": RESOURCE, "CRM_MCP_CLIENT_ID": "rs",
           "CRM_MCP_CLIENT_SECRET": "s", "CRM_MCP_TOKEN_MODE": "jwt", **overrides}
    return config.from_env(env)


def _signed(key: ECKey, kid: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": RESOURCE, "sub": "1", "client_id": "c", "hub_id": 10000001, "user_id": 1,
            "scope": "crm.objects.contacts.read", "iat": now, "exp": now + 300, "jti": kid + str(now), **claims}
    header = {"typ": claims.pop("typ", "at+jwt"), "kid": kid, "alg": "ES256"}
    return josejwt.encode(header, {k: v for k, v in body.items() if k != "typ"}, key, algorithms=["ES256"])


class FakeAuthserver:
    """Metadata and a JWKS whose keys the test changes, counting JWKS fetches."""

    def __init__(self):
        self.keys: dict[str, ECKey] = {}
        self.fetches = 0

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx2.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        self.fetches += 1
        return httpx2.Response(200, json={"keys": [{**k.as_dict(private=False), "kid": kid, "alg": "ES256"}
                                                   for kid, k in self.keys.items()]})


@pytest.mark.parametrize("mode, refused", [("introspect", False), ("jwt", False), ("JWT", True), ("", True)])
def test_the_token_mode_setting(mode, refused):
    if refused:
        with pytest.raises(config.ConfigError, match="CRM_MCP_TOKEN_MODE"):
            _settings(CRM_MCP_TOKEN_MODE=mode)
    else:
        assert _settings(CRM_MCP_TOKEN_MODE=mode).token_mode == mode


def test_introspect_is_the_default_mode():
    assert config.from_env({"CRM_MCP_CLIENT_ID": "rs", "CRM_MCP_CLIENT_SECRET": "s"}).token_mode == "introspect"


@pytest.mark.parametrize("interval, fetches", [(3600, 1), (0, 2)])
def test_an_unknown_kid_refetches_the_jwks_at_most_once_per_interval(interval, fetches):
    fake = FakeAuthserver()
    old, new = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    fake.keys["old"] = old
    verifier = auth.JWTVerifier(_settings(CRM_MCP_JWKS_REFETCH_SECONDS=str(interval)),
                                httpx2.AsyncClient(transport=httpx2.MockTransport(fake.handler)))

    async def main():
        assert await verifier.verify_token(_signed(old, "old")) is not None  # first fetch
        fake.keys["new"] = new  # rotated in at authserver after the verifier cached the JWKS
        for _ in range(2):
            found = await verifier.verify_token(_signed(new, "new"))
            assert (found is not None) == (interval == 0)
        return fake.fetches

    assert anyio.run(main) == fetches


@pytest.mark.parametrize("claims", [
    {"typ": "JWT"}, {"iss": "https://evil.test"}, {"aud": "https://other.test/mcp"},
    {"exp": int(time.time()) - 1}, {"hub_id": None},
], ids=["typ", "iss", "aud", "exp", "no hub"])
def test_jwt_mode_refuses_what_rfc_9068_refuses(claims):
    fake = FakeAuthserver()
    fake.keys["k"] = key = ECKey.generate_key("P-256")
    verifier = auth.JWTVerifier(_settings(), httpx2.AsyncClient(transport=httpx2.MockTransport(fake.handler)))

    async def main():
        assert await verifier.verify_token(_signed(key, "k")) is not None
        assert await verifier.verify_token(_signed(key, "k", **claims)) is None
        assert await verifier.verify_token(_signed(ECKey.generate_key("P-256"), "k")) is None  # forged

    anyio.run(main)
