"""Fetch a small JSON document (a Client ID Metadata Document, a JWKS) from a URL a client chose.

The URL comes from an untrusted party, so the fetch must not become a way to reach the server's
own network (SSRF) or to tie up a worker. Hence: https only, the host resolved once and every
address checked before connecting, the connection made to the checked address (so DNS rebinding
cannot swap it), the certificate always verified against the hostname, no redirects, and an
overall deadline and size cap. Every failure is a FetchError whose message a developer can act on
and which never quotes what the server sent (it reaches people's pages); that goes in its `detail`.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header, parse_date

DEFAULT_PORT = 443
USER_AGENT = "authserver"
#: The well-known NAT64 prefix (RFC 6052): its last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Checked in this order, so the most specific word wins (127.0.0.1 and 240.0.0.1 are also "private").
_FORBIDDEN = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchPolicy:
    timeout: float = 3.0
    """Total seconds for resolving, connecting and reading."""
    max_bytes: int = 5120
    """Largest body accepted; anything larger is refused."""
    max_url_length: int = 2000
    """Longest URL accepted (the width of the columns that store client_ids and document URLs)."""
    ca_bundle: str | None = None
    """Path to a PEM CA bundle; None trusts the system's default store."""
    allowed_private_hosts: frozenset[str] = frozenset()
    """Exact hostnames that may resolve to loopback or private addresses (tests, on-premises)."""
    allowed_ports: frozenset[int] = frozenset()
    """Ports other than 443 that URLs may name (443 is always allowed)."""
    resolver: Callable[[str, int], list[str]] | None = None
    """Turns (hostname, port) into IP address strings; None uses socket.getaddrinfo."""
    host_overrides: Mapping[str, str] = field(default_factory=dict)
    """Static lowercase hostname -> IP address answers (like curl --resolve), checked like any other."""

    @classmethod
    def from_config(cls, config: Mapping) -> FetchPolicy:
        """The operator's policy (the CIMD_* settings), for every fetch of a URL a client chose."""
        return cls(
            timeout=float(config["CIMD_FETCH_TIMEOUT"]),
            max_bytes=int(config["CIMD_MAX_BYTES"]),
            ca_bundle=config["CIMD_CA_BUNDLE"],
            allowed_private_hosts=frozenset(h.lower() for h in config["CIMD_ALLOWED_PRIVATE_HOSTS"]),
            allowed_ports=frozenset(int(p) for p in config["CIMD_ALLOWED_PORTS"]),
            host_overrides={host.lower(): ip for host, ip in (config["CIMD_HOST_OVERRIDES"] or {}).items()},
        )


class FetchError(Exception):
    """The document could not be fetched or is unusable; the message says why in plain words of
    our own. `detail` holds what the server sent (for the operator's log only), if anything."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail[:200] if detail else None


@dataclass(frozen=True)
class Fetched:
    document: dict
    """The parsed JSON object."""
    max_age: int | None
    """Seconds the origin lets us cache the document; 0 for no-store/no-cache; None if it said nothing."""


@dataclass(frozen=True)
class _Target:
    hostname: str
    port: int
    path: str


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse URLs that are not plain https URLs on an allowed port, before any network use."""
    _parse(url, policy)


def fetch_json(url: str, policy: FetchPolicy) -> Fetched:
    """GET a JSON object from `url` under `policy`; raise FetchError for anything unsafe or wrong."""
    target = _parse(url, policy)
    deadline = time.monotonic() + policy.timeout
    addresses = _resolve(target, policy, deadline)
    try:
        context = ssl.create_default_context(cafile=policy.ca_bundle)
    except (OSError, ValueError) as exc:
        raise FetchError(f"cannot load the CA bundle {policy.ca_bundle}: {exc}") from exc
    context.sslsocket_class = _DeadlineSSLSocket
    connection = _PinnedHTTPSConnection(target, addresses, context, deadline)
    try:
        connection.request("GET", target.path, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
        with connection.getresponse() as response:
            _check_response(response, policy)
            body = response.read(policy.max_bytes + 1)
    except FetchError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(f"TLS certificate verification failed: {exc.verify_message}") from exc
    except TimeoutError as exc:
        raise FetchError(f"the server did not answer within {policy.timeout:g} seconds") from exc
    except ssl.SSLError as exc:
        raise FetchError(f"the TLS handshake with {target.hostname} failed: {exc.reason or exc}") from exc
    except http.client.HTTPException as exc:
        raise FetchError("the server sent a malformed HTTP response", detail=repr(exc)) from exc
    except OSError as exc:
        raise FetchError(f"could not connect to {target.hostname} port {target.port}: {exc}") from exc
    finally:
        connection.close()
    if len(body) > policy.max_bytes:
        raise FetchError(f"the document is larger than {policy.max_bytes} bytes")
    return Fetched(document=_parse_document(body), max_age=_max_age(response.headers))


def _parse(url: str, policy: FetchPolicy) -> _Target:
    if len(url) > policy.max_url_length:
        raise FetchError(f"the URL is longer than {policy.max_url_length} characters")
    if not url.isascii() or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise FetchError("the URL contains spaces, control characters or non-ASCII characters")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise FetchError(f"the URL must use https, not {parts.scheme or 'no scheme'}")
    if "@" in parts.netloc:
        raise FetchError("the URL must not contain a user name or password")
    if "#" in url:
        raise FetchError("the URL must not contain a fragment (#...)")
    if not parts.hostname:
        raise FetchError("the URL has no host")
    try:
        # What TLS will do with it (SNI): an empty or overlong label would fail there, later.
        parts.hostname.encode("idna")
    except UnicodeError as exc:
        raise FetchError("the URL's host is not a valid DNS name") from exc
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise FetchError("the URL's port is not a number between 1 and 65535") from exc
    if port != DEFAULT_PORT and port not in policy.allowed_ports:
        raise FetchError(f"the URL uses port {port}; only port {DEFAULT_PORT} is allowed")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(hostname=parts.hostname.lower(), port=port, path=path)


def _resolve(target: _Target, policy: FetchPolicy, deadline: float) -> list[str]:
    """Resolve the host once (by the deadline) and check every address, so the one we connect
    to was checked."""
    hostname = target.hostname
    try:
        literal = ipaddress.ip_address(hostname)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [hostname]
    else:
        try:
            if hostname in policy.host_overrides:
                addresses = [policy.host_overrides[hostname]]
            else:
                addresses = _by_deadline(policy.resolver or _system_resolver, hostname, target.port, deadline)
        except TimeoutError as exc:
            raise FetchError(f"the DNS lookup of {hostname} did not answer within {policy.timeout:g} seconds") from exc
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"cannot resolve {hostname}: {exc}") from exc
        if not addresses:
            raise FetchError(f"{hostname} does not resolve to any address")
    if hostname in {host.lower() for host in policy.allowed_private_hosts}:
        return addresses
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError as exc:
            raise FetchError(f"{hostname} resolves to {address!r}, which is not an IP address") from exc
        if reason := _forbidden(ip):
            subject = f"{hostname} is" if literal is not None else f"{hostname} resolves to {address},"
            raise FetchError(f"{subject} {reason}")
    return addresses


def _by_deadline(resolve: Callable[[str, int], list[str]], hostname: str, port: int, deadline: float) -> list[str]:
    """`resolve(hostname, port)`, waited for only until the deadline (TimeoutError after it).

    getaddrinfo has no timeout of its own and a resolver may take many seconds, so the lookup runs
    on a daemon thread; one that outlives the wait ends on its own, unobserved. (A thread per
    lookup rather than a shared pool: a pool copied into a forked worker has no threads left.)"""
    wait = _remaining(deadline)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["addresses"] = resolve(hostname, port)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, re-raised there
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fetch-resolve", daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        raise TimeoutError("the DNS lookup did not finish by the deadline")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["addresses"]  # type: ignore[return-value]


def _system_resolver(hostname: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _forbidden(ip: IPAddress) -> str | None:
    """Why the address must not be contacted, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        )
        if embedded is not None:
            reason = _forbidden(embedded)
            return f"{reason} (IPv4 {embedded} inside an IPv6 address)" if reason else None
    for attribute, words in _FORBIDDEN:
        if getattr(ip, attribute):
            return words
    return None if ip.is_global else "not a public address"


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return left


class _DeadlineSSLSocket(ssl.SSLSocket):
    """A TLS socket whose every send and receive gets only the time left before the deadline,
    so a server that trickles bytes cannot stretch the fetch past the policy's timeout."""

    deadline: float = math.inf

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_remaining(self.deadline))
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data, flags: int = 0) -> int:
        self.settimeout(_remaining(self.deadline))
        return super().send(data, flags)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to addresses that were checked in advance, never to a fresh lookup of the hostname.

    The hostname still drives SNI, certificate verification and the Host header (which
    http.client writes as hostname[:port], leaving out the port when it is 443)."""

    def __init__(self, target: _Target, addresses: list[str], context: ssl.SSLContext, deadline: float) -> None:
        super().__init__(target.hostname, target.port, context=context)
        self._addresses = addresses
        self._tls_context = context
        self._deadline = deadline

    def connect(self) -> None:
        sock = self._connect_tcp()
        try:
            sock.settimeout(_remaining(self._deadline))
            tls = self._tls_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        tls.deadline = self._deadline
        self.sock = tls

    def _connect_tcp(self) -> socket.socket:
        """Try each checked address in turn, as a dual-stack host may not answer on all of them."""
        error: OSError | None = None
        for address in self._addresses:
            try:
                return socket.create_connection((address, self.port), timeout=_remaining(self._deadline))
            except TimeoutError:
                raise
            except OSError as exc:
                error = exc
        assert error is not None  # _resolve never returns an empty list
        raise error


def _check_response(response: http.client.HTTPResponse, policy: FetchPolicy) -> None:
    """Refuse redirects, errors, wrong media types and announced oversize bodies before reading."""
    status = response.status
    if 300 <= status < 400:
        raise FetchError(f"the server answered with a redirect (HTTP {status}); redirects are not followed")
    if status != 200:
        raise FetchError(f"the server answered with HTTP {status}; expected 200", detail=response.reason)
    content_type = response.getheader("Content-Type")
    if content_type is None:
        raise FetchError("the server sent no Content-Type; expected application/json")
    media_type = response.headers.get_content_type()
    if media_type != "application/json" and not (media_type.startswith("application/") and media_type.endswith("+json")):
        raise FetchError("the server sent a Content-Type other than JSON; expected application/json",
                         detail=f"Content-Type: {content_type}")
    if response.length is not None and response.length > policy.max_bytes:
        raise FetchError(f"the document is larger than {policy.max_bytes} bytes")


def _parse_document(body: bytes) -> dict:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FetchError("the document is not valid UTF-8") from exc
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FetchError(f"the document is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:
        raise FetchError(f"the document is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise FetchError("the document is nested too deeply") from exc
    if not isinstance(document, dict):
        raise FetchError(f"the document must be a JSON object, not a JSON {type(document).__name__}")
    return document


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _max_age(headers: http.client.HTTPMessage) -> int | None:
    """Seconds the origin allows caching: Cache-Control first, then Expires against Date (RFC 9111)."""
    value = ", ".join(headers.get_all("Cache-Control") or [])
    # Directive names are case-insensitive (RFC 9111 §5.2); werkzeug's keys are as sent.
    control = parse_cache_control_header(value.lower(), cls=ResponseCacheControl)
    if value.strip(" ,\t") and not control:
        return 0  # werkzeug reads nothing from a malformed header (an unclosed quote): not a licence to cache
    # A no-cache naming fields (no-cache="set-cookie") forbids reusing those fields, not the document.
    if control.no_store or control.no_cache is True:
        return 0
    if "max-age" in control:
        return max(control.max_age or 0, 0)  # RFC 9111 §4.2.1: an invalid max-age means stale
    expires = headers.get("Expires")
    if expires is None:
        return None
    expires_at = parse_date(expires)
    if expires_at is None:
        return 0  # RFC 9111 §5.3: an invalid Expires, such as "0", means already expired
    now = parse_date(headers.get("Date")) or datetime.now(UTC)
    return max(0, int((expires_at - now).total_seconds()))
