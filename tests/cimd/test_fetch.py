"""The SSRF-safe fetcher against a real local HTTPS server whose certificate a test CA signed.

The server listens on 127.0.0.1; tests reach it as "cimd.test" through an injected resolver, and
allow that name to resolve to a loopback address. Each path of the server misbehaves in one way.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from authserver.oauth.fetch import FetchError, FetchPolicy, check_url, fetch_json

from .origin import write_pki

HOST = "cimd.test"
TIMEOUT = 1.0
#: The deadline of the fetches that must run out of time (short: each test waits it out), the most
#: such a fetch may take past it to give up, and how long the slow server and resolvers here take:
#: longer than both, so a fetch that waited for them could not pass for one that kept its deadline.
DEADLINE = 0.25
SLACK = 0.5
SLOW = 2 * (DEADLINE + SLACK)
DATE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Server:
    port: int
    ca_bundle: str

    def url(self, path: str, host: str = HOST) -> str:
        return f"https://{host}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    """Chooses its behaviour by path; every response is written by hand so headers are exact."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/good.json":
            echo = {
                "client_id": "https://cimd.test/good.json",
                "host": self.headers["Host"],
                "accept": self.headers["Accept"],
                "user_agent": self.headers["User-Agent"],
                "target": self.path,
            }
            self._send(200, json.dumps(echo).encode(), "application/json; charset=utf-8")
        elif path == "/jwks.json":
            self._send(200, b'{"keys": []}', "application/jwk-set+json")
        elif path == "/cached.json":
            self._send(200, b"{}", "application/json", {"Cache-Control": "public, max-age=120"})
        elif path == "/nostore.json":
            self._send(200, b"{}", "application/json", {"Cache-Control": "no-store"})
        elif path == "/nocache.json":
            self._send(200, b"{}", "application/json", {"Cache-Control": "no-cache"})
        elif path == "/expires.json":
            expires = {"Date": format_datetime(DATE, usegmt=True), "Expires": format_datetime(DATE + timedelta(seconds=300), usegmt=True)}
            self._send(200, b"{}", "application/json", expires)
        elif path == "/expired.json":
            expired = {"Date": format_datetime(DATE, usegmt=True), "Expires": format_datetime(DATE - timedelta(seconds=60), usegmt=True)}
            self._send(200, b"{}", "application/json", expired)
        elif path == "/expires-nodate.json":
            later = datetime.now(UTC) + timedelta(seconds=600)
            self._send(200, b"{}", "application/json", {"Expires": format_datetime(later, usegmt=True)})
        elif path == "/headers.json":
            # Sends the response headers named in the query string, repeats kept, in order.
            self.send_response_only(200)
            for name, value in [("Content-Type", "application/json"), ("Content-Length", "2"),
                                *parse_qsl(urlsplit(self.path).query)]:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(b"{}")
        elif path == "/big.json":
            self._send(200, _big_document(), "application/json")
        elif path == "/big-chunked.json":
            self._send_chunked(_big_document())
        elif path == "/big-unsized.json":
            self._send_unsized(_big_document())
        elif path == "/slow.json":
            time.sleep(SLOW)
            self._send(200, b"{}", "application/json")
        elif path == "/trickle.json":
            self._trickle(b'{"a": "0123456789"}')
        elif path == "/redirect":
            self._send(302, b"", "text/plain", {"Location": "/good.json"})
        elif path == "/html":
            self._send(200, b"<html></html>", "text/html; charset=utf-8")
        elif path == "/notobject":
            self._send(200, b"[1, 2]", "application/json")
        elif path == "/invalid.json":
            self._send(200, b"{not json", "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response_only(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, body: bytes) -> None:
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 1000):
            chunk = body[start : start + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _send_unsized(self, body: bytes) -> None:
        """No Content-Length: the body ends when the connection closes."""
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _trickle(self, body: bytes) -> None:
        """One byte every half second: each read is quick, the whole is far past the deadline."""
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.5)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that give up (timeouts, refused certificates) break pipes; that is expected."""


def _big_document() -> bytes:
    return json.dumps({"padding": "x" * 6000}).encode()


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    return write_pki(directory, (HOST, "localhost"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ca_path, cert_path, key_path = _write_pki(tmp_path_factory.mktemp("pki"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    # The handshake happens on the first read, in the handler's thread, not in the accept loop.
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Server(port=httpd.server_address[1], ca_bundle=str(ca_path))
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _resolve_test_host(hostname: str, port: int) -> list[str]:
    if hostname != HOST:
        raise OSError(f"unknown test host {hostname}")
    return ["127.0.0.1"]


def _resolver_to(*addresses: str):
    return lambda hostname, port: list(addresses)


def _never_resolve(hostname: str, port: int) -> list[str]:
    raise AssertionError("the resolver must not be called")


def _policy(server: Server, **overrides: object) -> FetchPolicy:
    policy = FetchPolicy(
        timeout=TIMEOUT,
        ca_bundle=server.ca_bundle,
        allowed_private_hosts=frozenset({HOST}),
        allowed_ports=frozenset({server.port}),
        resolver=_resolve_test_host,
    )
    return replace(policy, **overrides)


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the fetcher opens any connection (an AssertionError is not caught by it)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fetcher connected although it should have refused first")

    monkeypatch.setattr(socket, "create_connection", refuse)


def _refused(url: str, policy: FetchPolicy) -> str:
    with pytest.raises(FetchError) as caught:
        fetch_json(url, policy)
    return str(caught.value)


# --- documents that are fetched -------------------------------------------------------------


def test_good_document_is_parsed_and_the_request_names_the_host(server: Server) -> None:
    fetched = fetch_json(server.url("/good.json?v=1"), _policy(server))
    assert fetched.document == {
        "client_id": "https://cimd.test/good.json",
        "host": f"{HOST}:{server.port}",
        "accept": "application/json",
        "user_agent": "authserver",
        "target": "/good.json?v=1",
    }
    assert fetched.max_age is None


def test_structured_json_media_type_is_accepted(server: Server) -> None:
    assert fetch_json(server.url("/jwks.json"), _policy(server)).document == {"keys": []}


@pytest.mark.parametrize(
    ("path", "max_age"),
    [
        ("/cached.json", 120),
        ("/nostore.json", 0),
        ("/nocache.json", 0),
        ("/expires.json", 300),
        ("/expired.json", 0),
    ],
)
def test_cache_headers_give_the_max_age(server: Server, path: str, max_age: int) -> None:
    assert fetch_json(server.url(path), _policy(server)).max_age == max_age


@pytest.mark.parametrize(
    ("headers", "max_age"),
    [
        ([("Cache-Control", "max-age=60")], 60),
        ([("Cache-Control", 'max-age="60"')], 60),
        ([("Cache-Control", "Public, MAX-AGE=45")], 45),  # directive names are case-insensitive
        ([("Cache-Control", "public"), ("Cache-Control", "max-age=30")], 30),  # header lines combine
        ([("Cache-Control", 'private="a, b", max-age=70')], 70),  # a comma inside quotes separates nothing
        ([("Cache-Control", "max-age=600, no-cache")], 0),
        ([("Cache-Control", "max-age=600"), ("Cache-Control", "No-Store")], 0),
        ([("Cache-Control", 'no-cache="Set-Cookie", max-age=90')], 90),  # forbids reusing one field, not the body
        ([("Cache-Control", "max-age=soon")], 0),  # RFC 9111 §4.2.1: an invalid max-age means stale
        ([("Cache-Control", "max-age=-5")], 0),
        ([("Cache-Control", "max-age")], 0),
        ([("Cache-Control", 'no-store, x="unclosed')], 0),  # an unreadable header is not a licence to cache
        ([("Cache-Control", "max-age=120"), ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")], 120),  # max-age wins
        ([("Cache-Control", "public"), ("Date", "Thu, 01 Jan 2026 12:00:00 GMT"),
          ("Expires", "Thu, 01 Jan 2026 12:05:00 GMT")], 300),
        ([("Expires", "0")], 0),  # RFC 9111 §5.3: an invalid Expires means already expired
        ([("Cache-Control", "public")], None),
        ([], None),
    ],
)
def test_cache_control_and_expires_are_read_as_rfc_9111_says(server: Server, headers, max_age) -> None:
    assert fetch_json(server.url(f"/headers.json?{urlencode(headers)}"), _policy(server)).max_age == max_age


def test_expires_without_date_counts_from_now(server: Server) -> None:
    max_age = fetch_json(server.url("/expires-nodate.json"), _policy(server)).max_age
    assert max_age is not None and 595 <= max_age <= 600


def test_ip_literal_is_fetched_when_allowed(server: Server) -> None:
    policy = _policy(server, allowed_private_hosts=frozenset({"127.0.0.1"}), resolver=_never_resolve)
    assert fetch_json(server.url("/jwks.json", host="127.0.0.1"), policy).document == {"keys": []}


def test_host_is_resolved_once_so_dns_rebinding_cannot_swap_the_address(server: Server) -> None:
    calls: list[str] = []

    def rebinding(hostname: str, port: int) -> list[str]:
        calls.append(hostname)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.9.9.9"]

    fetched = fetch_json(server.url("/good.json"), _policy(server, resolver=rebinding))
    assert fetched.document["host"] == f"{HOST}:{server.port}"
    assert calls == [HOST]


# --- what the server sends that is refused --------------------------------------------------


@pytest.mark.parametrize("path", ["/big.json", "/big-chunked.json", "/big-unsized.json"])
def test_oversized_document_is_refused(server: Server, path: str) -> None:
    assert _refused(server.url(path), _policy(server)) == "the document is larger than 5120 bytes"


def test_slow_server_times_out(server: Server) -> None:
    started = time.monotonic()
    message = _refused(server.url("/slow.json"), _policy(server, timeout=DEADLINE))
    assert message == f"the server did not answer within {DEADLINE:g} seconds"
    assert time.monotonic() - started < DEADLINE + SLACK


def _slow_resolver(seconds: float):
    def resolve(hostname: str, port: int) -> list[str]:
        time.sleep(seconds)
        return _resolve_test_host(hostname, port)

    return resolve


@pytest.mark.parametrize(("lookup", "path"), [
    (SLOW * 2, "/good.json"),  # a resolver that hangs
    (SLOW, "/good.json"),  # one that answers too late
    (DEADLINE * 0.6, "/slow.json"),  # a slow lookup, then a slow server: together too long
], ids=["hanging resolver", "late resolver", "slow resolver and server"])
def test_dns_resolution_counts_against_the_overall_deadline(server: Server, lookup: float, path: str) -> None:
    """Issue 11 item 10 (f): the fetch as a whole, resolving included, ends at its deadline."""
    started = time.monotonic()
    message = _refused(server.url(path), _policy(server, timeout=DEADLINE, resolver=_slow_resolver(lookup)))
    assert message.endswith(f"did not answer within {DEADLINE:g} seconds"), message
    assert time.monotonic() - started < DEADLINE + SLACK


def test_resolver_errors_still_reach_the_caller(server: Server) -> None:
    def broken(hostname: str, port: int) -> list[str]:
        raise OSError("no such host")

    assert _refused(server.url("/good.json"), _policy(server, resolver=broken)) == "cannot resolve cimd.test: no such host"


def test_trickling_server_times_out_at_the_overall_deadline(server: Server) -> None:
    started = time.monotonic()
    message = _refused(server.url("/trickle.json"), _policy(server, timeout=DEADLINE))
    assert message == f"the server did not answer within {DEADLINE:g} seconds"
    assert time.monotonic() - started < DEADLINE + SLACK


def test_redirect_is_refused(server: Server) -> None:
    message = _refused(server.url("/redirect"), _policy(server))
    assert message == "the server answered with a redirect (HTTP 302); redirects are not followed"


def test_non_json_content_type_is_refused(server: Server) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_json(server.url("/html"), _policy(server))
    # The message is ours (people see it); what the server sent is only in the detail, for logs.
    assert str(caught.value) == "the server sent a Content-Type other than JSON; expected application/json"
    assert caught.value.detail == "Content-Type: text/html; charset=utf-8"


def test_top_level_array_is_refused(server: Server) -> None:
    assert "must be a JSON object, not a JSON list" in _refused(server.url("/notobject"), _policy(server))


def test_invalid_json_is_refused(server: Server) -> None:
    assert "the document is not valid JSON" in _refused(server.url("/invalid.json"), _policy(server))


def test_not_found_is_refused(server: Server) -> None:
    assert "HTTP 404" in _refused(server.url("/404"), _policy(server))


def test_certificate_from_an_unknown_ca_is_refused(server: Server) -> None:
    message = _refused(server.url("/good.json"), _policy(server, ca_bundle=None))
    assert message.startswith("TLS certificate verification failed")


def test_certificate_for_another_hostname_is_refused(server: Server) -> None:
    policy = _policy(server, resolver=_resolver_to("127.0.0.1"), allowed_private_hosts=frozenset({"other.test"}))
    message = _refused(server.url("/good.json", host="other.test"), policy)
    assert message.startswith("TLS certificate verification failed") and "other.test" in message


def test_closed_port_is_reported(server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    policy = _policy(server, allowed_ports=frozenset({closed_port}))
    assert "could not connect to cimd.test port" in _refused(f"https://{HOST}:{closed_port}/", policy)


# --- URLs and addresses refused before connecting -------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://cimd.test/good.json", "must use https, not http"),
        ("https://user:secret@cimd.test/good.json", "must not contain a user name or password"),
        ("https://user@cimd.test/good.json", "must not contain a user name or password"),
        ("https://cimd.test/good.json#section", "must not contain a fragment"),
        ("https://cimd.test:8443/good.json", "uses port 8443; only port 443 is allowed"),
        ("https:///good.json", "has no host"),
        ("https://cimd.test:99999/", "port is not a number"),
        ("https://cimd.test/a b", "spaces, control characters or non-ASCII"),
    ],
)
def test_bad_url_is_refused(url: str, words: str, no_connections: None) -> None:
    policy = FetchPolicy(resolver=_never_resolve)
    with pytest.raises(FetchError, match=words):
        check_url(url, policy)
    with pytest.raises(FetchError, match=words):
        fetch_json(url, policy)


def test_query_string_is_allowed() -> None:
    check_url("https://cimd.test/client?id=1", FetchPolicy())


def test_allowed_port_passes_the_url_check() -> None:
    check_url("https://cimd.test:8443/good.json", FetchPolicy(allowed_ports=frozenset({8443})))


def test_loopback_host_is_refused_unless_allowed(server: Server, no_connections: None) -> None:
    message = _refused(server.url("/good.json"), _policy(server, allowed_private_hosts=frozenset()))
    assert message == "cimd.test resolves to 127.0.0.1, a loopback address"


def test_private_address_is_refused_before_connecting(server: Server, no_connections: None) -> None:
    message = _refused(server.url("/good.json"), _policy(server, resolver=_resolver_to("10.0.0.1"), allowed_private_hosts=frozenset()))
    assert message == "cimd.test resolves to 10.0.0.1, a private address"


def test_ipv4_mapped_loopback_is_refused(server: Server, no_connections: None) -> None:
    policy = _policy(server, resolver=_resolver_to("::ffff:127.0.0.1"), allowed_private_hosts=frozenset())
    message = _refused(server.url("/good.json"), policy)
    assert message == "cimd.test resolves to ::ffff:127.0.0.1, a loopback address (IPv4 127.0.0.1 inside an IPv6 address)"


def test_one_private_address_among_public_ones_is_refused(server: Server, no_connections: None) -> None:
    policy = _policy(server, resolver=_resolver_to("93.184.216.34", "10.0.0.1"), allowed_private_hosts=frozenset())
    assert _refused(server.url("/good.json"), policy) == "cimd.test resolves to 10.0.0.1, a private address"


def test_ip_literal_is_refused_unless_allowed(server: Server, no_connections: None) -> None:
    policy = _policy(server, resolver=_never_resolve)
    assert _refused(server.url("/good.json", host="127.0.0.1"), policy) == "127.0.0.1 is a loopback address"


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("169.254.169.254", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "not a public address"),
        ("192.168.1.1", "a private address"),
        ("::1", "a loopback address"),
        ("::", "an unspecified address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("2002:7f00:1::", "a loopback address (IPv4 127.0.0.1 inside an IPv6 address)"),
        ("64:ff9b::a00:1", "a private address (IPv4 10.0.0.1 inside an IPv6 address)"),
    ],
)
def test_non_public_addresses_are_refused(server: Server, address: str, words: str, no_connections: None) -> None:
    policy = _policy(server, resolver=_resolver_to(address), allowed_private_hosts=frozenset())
    assert _refused(server.url("/good.json"), policy) == f"cimd.test resolves to {address}, {words}"
