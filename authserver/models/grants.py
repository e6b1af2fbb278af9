"""Grants (a user's consent for a client in a hub for a resource) and authorization codes."""

from __future__ import annotations

from datetime import datetime

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin
from sqlalchemy import DateTime, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import utcnow
from .accounts import Hub, User
from .clients import Client
from .resources import ResourceServer


class Grant(db.Model):
    """The consent record: its id is stamped on every code and token issued under it, so revoking
    the grant revokes the whole lineage."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_lookup", "user_id", "client_pk", "resource_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    hub_id: Mapped[int] = mapped_column(ForeignKey("hubs.id", ondelete="CASCADE"))
    client_pk: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resource_servers.id", ondelete="CASCADE"))
    # The scopes the user approved (space-separated); tokens never exceed these.
    scope: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()
    hub: Mapped[Hub] = relationship()
    client: Mapped[Client] = relationship()
    resource: Mapped[ResourceServer] = relationship()

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scope.split())


class AuthorizationCode(db.Model, AuthorizationCodeMixin):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the code; the code itself is never stored.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    # Whether the authorization request carried redirect_uri (then the token request must too).
    redirect_uri_sent: Mapped[bool] = mapped_column(default=True)
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    # Set by one conditional UPDATE when redeemed; used codes are kept to detect replay.
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The token response of that redemption, sealed under a key derived from the code (see
    # Token.replay): an identical retry gets it while consumed_at is inside REPLAY_GRACE_SECONDS.
    replay: Mapped[bytes | None] = mapped_column(LargeBinary)

    grant: Mapped[Grant] = relationship()

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri if self.redirect_uri_sent else None

    def get_scope(self) -> str:
        return self.scope
