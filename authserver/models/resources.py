"""Resource servers (MCP servers): the audiences tokens are issued for, and introspection callers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import utcnow


class ResourceServer(db.Model):
    __tablename__ = "resource_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Canonical URI (authserver.resources.canonicalize): the token's `aud`.
    uri: Mapped[str] = mapped_column(String(2000), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Credentials the resource server presents to the introspection endpoint.
    credential_id: Mapped[str] = mapped_column(String(100), unique=True)
    credential_secret_hash: Mapped[str] = mapped_column(String(255))
    # Space-separated scope names this server accepts, and those granted when `scope` is absent.
    scopes: Mapped[str] = mapped_column(Text)
    default_scopes: Mapped[str] = mapped_column(Text)
    # The access tokens it is issued: `opaque` (introspected) or `jwt` (RFC 9068, verifiable
    # locally against the jwks_uri). authserver.resources.TOKEN_FORMATS.
    token_format: Mapped[str] = mapped_column(String(10), default="opaque", server_default="opaque")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    @property
    def default_scope_set(self) -> frozenset[str]:
        return frozenset(self.default_scopes.split())
