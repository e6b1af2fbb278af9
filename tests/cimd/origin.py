"""A real HTTPS origin for metadata documents and JWKS, with a test CA generated per run.

Routes are set by the test (`origin.serve(path, body, ...)`); every request is counted, so tests
can tell a cache hit from a refetch. The server listens on 127.0.0.1; authserver reaches it under
public-looking names (chatgpt.com, client.test) through the CIMD_HOST_OVERRIDES setting, and the
certificate names them, so TLS is verified for real against the test CA (CIMD_CA_BUNDLE).
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAMES = ("client.test", "chatgpt.com", "cimd.test", "localhost")


def write_pki(directory: Path, names: tuple[str, ...] = NAMES) -> tuple[Path, Path, Path]:
    """A CA (CA:TRUE) and a server certificate it signed for `names` and 127.0.0.1."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authserver test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


@dataclass
class Route:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] | None = None
    delay: float = 0.0
    reason: str | None = None


class Origin:
    """The running server: `url(path, host)`, `serve(...)`, `hits[path]`."""

    def __init__(self, port: int, ca_bundle: str):
        self.port = port
        self.ca_bundle = ca_bundle
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()

    def url(self, path: str, host: str = "client.test") -> str:
        return f"https://{host}:{self.port}{path}"

    def serve(self, path: str, document=None, *, raw: bytes | None = None, status: int = 200,
              content_type: str = "application/json", headers: dict[str, str] | None = None, delay: float = 0.0,
              reason: str | None = None):
        body = raw if raw is not None else json.dumps(document).encode()
        self.routes[path] = Route(status, body, content_type, headers, delay, reason)

    def reset(self) -> None:
        self.routes.clear()
        self.hits.clear()


def start(directory: Path) -> tuple[Origin, ThreadingHTTPServer, threading.Thread]:
    ca_path, cert_path, key_path = write_pki(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    origin: Origin

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            origin.hits[path] += 1
            route = origin.routes.get(path, Route(404, b"not found", "text/plain"))
            if route.delay:
                time.sleep(route.delay)
            self.send_response_only(route.status, route.reason)
            for name, value in {"Content-Type": route.content_type, "Content-Length": str(len(route.body)),
                                **(route.headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            """Clients that give up (timeouts) break pipes; expected."""

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    origin = Origin(httpd.server_address[1], str(ca_path))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return origin, httpd, thread
