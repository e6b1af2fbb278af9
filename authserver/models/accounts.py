"""Users, hubs (CRM accounts) and memberships (a user's role and permission overrides in a hub)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import utcnow


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased and stripped, so the unique index is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Sessions are signed cookies, so none can be listed: every session signed in at or before
    # this moment is over (set when an operator sets the password or disables the account).
    sessions_ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class Hub(db.Model):
    __tablename__ = "hubs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The public, 8-digit hub id shown to people and returned as `hub_id` by introspection.
    public_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="hub", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Hub {self.public_id} {self.name}>"


class Membership(db.Model):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "hub_id", name="uq_memberships_user_hub"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    hub_id: Mapped[int] = mapped_column(ForeignKey("hubs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(50))
    # Explicit per-member overrides on top of the role preset: lists of scope names.
    granted: Mapped[list[str]] = mapped_column(JSON, default=list)
    denied: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    hub: Mapped[Hub] = relationship(back_populates="memberships")


class EndedSession(db.Model):
    """A signed-out session (SHA-256 of its random `sid`). Sessions are signed cookies, so a copy
    taken before sign-out would otherwise stay valid; kept until the cookie would expire anyway."""

    __tablename__ = "ended_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class UpstreamIdentity(db.Model):
    """A person's account at an operator's OpenID Connect provider, linked to a user: found by
    (provider, the provider's `sub`) alone, never by a name or an email."""

    __tablename__ = "upstream_identities"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_upstream_identities_provider_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The provider's `name` in UPSTREAM_PROVIDERS.
    provider: Mapped[str] = mapped_column(String(32))
    #: The provider's `sub` (OpenID Connect Core §2: at most 255 ASCII characters).
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The email the provider asserted when the link was made (a record, never a key).
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
