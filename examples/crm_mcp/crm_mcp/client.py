"""Try the server with the official MCP SDK client: `python -m crm_mcp.client [MCP URL]`.

It discovers authserver from the server's protected resource metadata, registers itself, opens
your browser to sign in and consent, receives the redirect on a loopback port, then lists the
tools, runs `search` with a query (`python -m crm_mcp.client URL "object_type:deals amount:gt:10000"`)
and `fetch`es the first result."""

from __future__ import annotations

import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata


DEFAULT_QUERY = "object_type:contacts associated_companies:in:acme,globex"


class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory (a real client would keep these on disk)."""

    def __init__(self):
        self.tokens = self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class _Callback(BaseHTTPRequestHandler):
    result: dict[str, str] = {}
    done = threading.Event()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        if parts.path != "/callback":  # the browser also asks for /favicon.ico and the like
            self.send_error(404)
            return
        type(self).result = {k: v[0] for k, v in parse_qs(parts.query).items()}
        type(self).done.set()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        try:
            self.wfile.write(b"<p>Done. You can close this tab and go back to the terminal.</p>")
        except (BrokenPipeError, ConnectionResetError):  # the tab was closed already: nothing lost
            pass

    def log_message(self, *args):
        pass


async def main(url: str, query: str = DEFAULT_QUERY) -> None:
    callback_server = HTTPServer(("127.0.0.1", 0), _Callback)
    redirect_uri = f"http://127.0.0.1:{callback_server.server_port}/callback"

    async def open_browser(authorization_url: str) -> None:
        print(f"Opening your browser to sign in and choose a hub:\n  {authorization_url}")
        webbrowser.open(authorization_url)

    async def wait_for_redirect() -> AuthorizationCodeResult:
        _Callback.done.clear()
        while not _Callback.done.is_set():
            await anyio.to_thread.run_sync(callback_server.handle_request)
        params = _Callback.result
        if "code" not in params:
            raise SystemExit(f"Authorization failed: {params.get('error')} {params.get('error_description', '')}")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="MCP SDK example client", redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryStorage(), redirect_handler=open_browser, callback_handler=wait_for_redirect,
    )
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=300.0) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                tools = await client.list_tools()
                print("Tools:", ", ".join(t.name for t in tools.tools))
                found = await client.call_tool("search", {"query": query})
                print(f"search {query!r}:")
                if found.is_error:
                    print("  " + " ".join(getattr(c, "text", "") for c in found.content))
                    return
                results = found.structured_content["results"]
                for row in results:
                    print(f"  {row['id']:14} {row['title']}")
                if results:
                    document = await client.call_tool("fetch", {"id": results[0]["id"]})
                    print(f"fetch {results[0]['id']!r}:")
                    print("  " + "\n  ".join(document.structured_content["text"].splitlines()))
    finally:
        callback_server.server_close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8001/mcp",
              sys.argv[2] if len(sys.argv) > 2 else DEFAULT_QUERY)
