"""OAuth clients: dynamically registered (RFC 7591) or pre-registered with the CLI."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import utcnow

#: Longest client name shown to people. The name is whatever the client registered (RFC 7591 §2):
#: a page-long one would push what matters (where the app sends people back) out of sight.
CLIENT_NAME_SHOWN = 60

#: Loopback hosts (RFC 8252 §7.3) as urlsplit() gives a URI's hostname: lowercase, IPv6 unbracketed.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback_redirect(uri: str) -> bool:
    """An http redirect URI on a loopback host (RFC 8252 §7.3): it reaches whatever program listens
    on the person's own device, on any port. The one loopback rule: registration, matching,
    installations and the consent warning all ask here."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def without_loopback_port(uri: str) -> str | None:
    """For an http loopback URI, the same URI with the port removed; otherwise None."""
    if "#" in uri or "@" in uri or not is_loopback_redirect(uri):
        return None
    parts = urlsplit(uri)
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def redirect_host(uri: str) -> str:
    """Where a redirect URI sends people back to, as shown to them: host[:port] for http(s); for
    any other scheme the whole `scheme://authority` (or `scheme:`), because a private-use scheme
    such as claude://claude.ai goes to whichever program claimed it, not to that web host."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        return parts.netloc
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


class Client(db.Model, ClientMixin):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2000), unique=True)
    # SHA-256 hex of the client secret (a legacy argon2id hash until its first use); None for
    # public clients (token_endpoint_auth_method none).
    client_secret_hash: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the RFC 7592 registration access token; None for CLI-created clients.
    registration_access_token_hash: Mapped[str | None] = mapped_column(String(64))
    # The registered metadata (RFC 7591 §2), as echoed to the client.
    client_metadata: Mapped[dict] = mapped_column(JSON, default=dict)
    # How the client came to exist: "dynamic" (RFC 7591) or "cli" (pre-registered).
    registration: Mapped[str] = mapped_column(String(20))
    # Space-separated scopes a pre-registered client may receive; None means no client limit.
    allowed_scopes: Mapped[str | None] = mapped_column(Text)
    client_id_issued_at: Mapped[int] = mapped_column(default=0)
    # For public dynamic clients: a digest of the identifying metadata, so that re-registering
    # an identical client returns the existing one instead of a new row.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)

    def __repr__(self) -> str:
        return f"<Client {self.client_id}>"

    # --- metadata accessors -------------------------------------------------------------------
    @property
    def client_name(self) -> str:
        return self.client_metadata.get("client_name") or self.client_id

    @property
    def display_name(self) -> str:
        """client_name as pages show it: without control or invisible formatting characters (a
        right-to-left override can make a name read as another), at most CLIENT_NAME_SHOWN
        characters. Pages escape it like any text."""
        name = "".join(c for c in self.client_name if unicodedata.category(c) not in ("Cc", "Cf"))
        name = " ".join(name.split()) or self.client_id[:CLIENT_NAME_SHOWN]
        return name if len(name) <= CLIENT_NAME_SHOWN else name[: CLIENT_NAME_SHOWN - 1] + "…"

    @property
    def verified_domain(self) -> str | None:
        """For a metadata-document client: the host its client_id URL was fetched from over
        verified TLS (unlike its name, which it chose itself). None for registered clients."""
        return urlsplit(self.client_id).hostname if self.registration == "cimd" else None

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.client_metadata.get("redirect_uris") or [])

    @property
    def token_endpoint_auth_method(self) -> str:
        return self.client_metadata.get("token_endpoint_auth_method", "client_secret_basic")

    @property
    def grant_types(self) -> list[str]:
        return list(self.client_metadata.get("grant_types") or ["authorization_code"])

    @property
    def response_types(self) -> list[str]:
        return list(self.client_metadata.get("response_types") or ["code"])

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def allowed_scope_set(self) -> frozenset[str] | None:
        return None if self.allowed_scopes is None else frozenset(self.allowed_scopes.split())

    # --- Authlib ClientMixin (RFC 6749) -------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 §3.1.2.3: only unambiguous when exactly one URI is registered.
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Requested ∩ the client's allowed scopes (pre-registered clients only); '' if none asked."""
        if not scope:
            return ""
        requested = scope.split()
        allowed = self.allowed_scope_set
        if allowed is None:
            return " ".join(dict.fromkeys(requested))
        return " ".join(s for s in dict.fromkeys(requested) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match (OAuth 2.1 §4.1.1), except that the port of an http loopback
        redirect URI is ignored (RFC 8252 §7.3)."""
        registered = self.redirect_uris
        if redirect_uri in registered:
            return True
        portless = without_loopback_port(redirect_uri)
        if portless is None:
            return False
        return any(without_loopback_port(uri) == portless for uri in registered)

    def check_client_secret(self, client_secret: str) -> bool:
        from ..secrets import verify_secret

        if not self.client_secret_hash:
            return False
        check = verify_secret(self.client_secret_hash, client_secret)
        if check.replacement:
            # A legacy argon2 hash: store the SHA-256 form (the view commits).
            self.client_secret_hash = check.replacement
            db.session.flush()
        return check.ok

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # The registered method is the only one accepted, at the token and revocation endpoints
        # alike: a public client presenting a secret, or a confidential one without, is refused.
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types
