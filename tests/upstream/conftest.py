"""Fixtures for upstream sign-in: a real OpenID Connect provider (node-oidc-provider, installed by
`make test` from tests/upstream/provider/package-lock.json) as a subprocess behind a loopback
proxy that can tamper with its answers, authserver over real HTTP, and a browser that signs in.

The provider and the live server are started once per module; each test gets a new authserver
app (its own settings) on the same port, and the provider's people (provider/server.mjs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from base64 import urlsafe_b64decode, urlsafe_b64encode
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import httpx2
import pytest
from live import HOST, LiveFlask, Process, free_port

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
CLIENT_ID = "authserver-test"
CLIENT_SECRET = "upstream-client-secret-for-tests"
#: The provider's name in UPSTREAM_PROVIDERS, and its sign-in button's text.
NAME, DISPLAY_NAME = "corp", "Corp Identity"
#: People at the provider (provider/server.mjs ACCOUNTS): login -> (sub, email).
PEOPLE = {
    "vera": ("u-1001-vera", "vera@example.com"),  # email_verified: true
    "una": ("u-1002-una", "una@example.com"),  # email_verified: false
    "nina": ("u-1003-nina", "nina@example.com"),  # email_verified: true
}
_FORM = re.compile(r'<form method="post" action="([^"]+/login)"')


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"the test OpenID provider is not installed: run `make test` (it runs `npm ci` in "
                    f"{PROVIDER_DIR.relative_to(PROVIDER_DIR.parents[2])}), or that `npm ci` yourself; "
                    f"node found: {node or 'no'}", pytrace=False)
    return node


@contextmanager
def oidc_provider(tmp_path: Path, *, redirect_uris: list[str], issuer: str | None = None, port: int | None = None,
                  **env: str):
    """Run provider/server.mjs on a free loopback port (or `port`); yields its Process with .url
    (where it listens) and .issuer.

    A start that fails on a port the kernel handed out (another socket took it between
    free_port() and node's bind, or node never answered there) is tried once more on a new port,
    with the first attempt's output kept for the error."""
    attempts, failures = (1 if port else 2), []
    for _ in range(attempts):
        chosen = port or free_port()
        own_issuer = issuer or f"http://{HOST}:{chosen}"
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(chosen), "ISSUER": own_issuer,
                       "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET,
                       "REDIRECT_URIS": " ".join(redirect_uris), **env}
        process = Process([_node(), str(PROVIDER_DIR / "server.mjs")], environment,
                          tmp_path / f"provider-{chosen}.log")
        process.url, process.issuer = f"http://{HOST}:{chosen}", own_issuer
        try:
            process.wait_ready(f"{process.url}/.well-known/openid-configuration", timeout=30.0)
        except RuntimeError as failure:
            process.stop()
            failures.append(str(failure))
            continue
        try:
            yield process
        finally:
            process.stop()
        return
    raise RuntimeError("the test OpenID provider did not start:\n" + "\n---\n".join(failures))


class TamperingProxy:
    """A loopback HTTP proxy in front of the provider, passing everything through unchanged (the
    Host header too, so the provider's URLs name the proxy) unless told to flip one byte of the
    signature of the ID tokens its token endpoint returns."""

    def __init__(self):
        self.target: str | None = None
        self.tamper_id_token = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._forward()

            def do_POST(self):
                self._forward()

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")]
                answer = httpx2.request(self.command, proxy.target + self.path, headers=headers, content=body,
                                        follow_redirects=False, timeout=10)
                content = answer.content
                if proxy.tamper_id_token and urlsplit(self.path).path == "/token" and answer.status_code == 200:
                    token = answer.json()
                    token["id_token"] = flip_signature_byte(token["id_token"])
                    content = json.dumps(token).encode()
                self.send_response(answer.status_code)
                for key, value in answer.headers.multi_items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def flip_signature_byte(jwt: str) -> str:
    """The same JWT with one bit of its signature's first byte flipped."""
    header, payload, signature = jwt.split(".")
    raw = bytearray(urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    return ".".join([header, payload, urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])


def provider_settings(issuer: str, name: str = NAME, display_name: str = DISPLAY_NAME) -> dict:
    return {"name": name, "display_name": display_name, "issuer": issuer, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET}


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """Module-wide: the live server's port (the apps come later), the provider behind the proxy,
    its issuer being the proxy's URL."""
    live = LiveFlask()
    live.start(None)
    proxy = TamperingProxy()
    callbacks = [f"{live.url}/login/upstream/{name}/callback" for name in (NAME, "late")]
    try:
        with oidc_provider(tmp_path_factory.mktemp("provider"), redirect_uris=callbacks, issuer=proxy.url) as provider:
            proxy.target = provider.url
            yield SimpleNamespace(live=live, proxy=proxy, provider=provider, issuer=proxy.url, callbacks=callbacks)
    finally:
        proxy.stop()
        live.stop()


@pytest.fixture
def upstream(stage, make_app):
    """upstream(**settings) -> the live authserver app, new for this test with `settings` over
    the provider "corp" (the proxied provider): served at stage.live.url."""
    stage.proxy.tamper_id_token = False

    def serve(providers=None, **settings):
        app = make_app(ISSUER=stage.live.url, UPSTREAM_PROVIDERS=providers or [provider_settings(stage.issuer)],
                       **settings)
        stage.live.server.app = app
        return app

    return serve


class Browser:
    """One person's browser: a cookie jar and manual redirects, over real HTTP to authserver and
    the provider."""

    def __init__(self, base: str):
        self.base = base
        self.http = httpx2.Client(follow_redirects=False, timeout=15.0)

    def close(self):
        self.http.close()

    def url(self, location: str) -> str:
        return urljoin(self.base + "/", location)

    def start_upstream(self, next_path: str = "/", name: str = NAME) -> httpx2.Response:
        """Press "Sign in with ..." on the sign-in page."""
        page = self.http.get(self.url("/login"), params={"next": next_path})
        assert page.status_code == 200, page.status_code
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return self.http.post(self.url(f"/login/upstream/{name}"), data={"csrf_token": token, "next": next_path})

    def at_provider(self, url: str, login: str | None = "vera", cancel: bool = False) -> httpx2.Response:
        """Follow the provider's redirects from `url`, sign in there as `login` (or press Cancel)
        when it asks; returns the redirect back to authserver (not followed)."""
        response = self.http.get(url)
        for _ in range(10):
            if response.status_code in (302, 303):
                location = urljoin(str(response.url), response.headers["Location"])
                if location.startswith(self.base):
                    return response
                response = self.http.get(location)
                continue
            assert response.status_code == 200, (response.status_code, response.text[:500])
            action = _FORM.search(response.text).group(1)
            if cancel:
                action = action[: -len("/login")] + "/abort"
            response = self.http.post(urljoin(str(response.url), action), data={"login": login})
        raise AssertionError("the provider never sent the browser back")

    def sign_in(self, login: str = "vera", next_path: str = "/", name: str = NAME) -> httpx2.Response:
        """The whole round trip; returns authserver's answer to the provider's redirect back."""
        started = self.start_upstream(next_path, name)
        assert started.status_code == 302, (started.status_code, started.text[:500])
        back = self.at_provider(started.headers["Location"], login)
        return self.http.get(back.headers["Location"])


@pytest.fixture
def browser(stage):
    person = Browser(stage.live.url)
    yield person
    person.close()
