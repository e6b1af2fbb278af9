"""Access/refresh token pairs, stored as hashes, each with the sealed answer of its own rotation."""

from __future__ import annotations

from datetime import datetime

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import DateTime, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import to_epoch, utcnow
from .grants import Grant


class Token(db.Model, TokenMixin):
    """One access token and (optionally) its refresh token. Rows are marked, never deleted
    before expiry, so replays of rotated refresh tokens can be recognised."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    # The code this token family descends from (every refresh keeps it): a code replay revokes it.
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("authorization_codes.id", ondelete="SET NULL"), index=True
    )
    # The token whose refresh token was rotated into this one.
    # Indexed: deleting a token (purge) looks up its successor through this column.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"), index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(Text)
    # The scope the family's authorization code granted (copied along every refresh): a refresh
    # may never get more (RFC 6749 §6). NULL on rows from before it was recorded: use `scope`.
    authorized_scope: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # When the person approved the authorization this family descends from (its code's creation,
    # copied along every refresh): a JWT access token's `auth_time`. NULL on older rows.
    auth_time: Mapped[datetime | None] = mapped_column(DateTime)
    access_expires_at: Mapped[datetime] = mapped_column(DateTime)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set once by a conditional UPDATE when the refresh token is exchanged.
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Revokes the pair (refresh reuse, grant revoked, refresh token revoked).
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Revokes only the access token (RFC 7009 revocation of an access token, or rotation).
    access_revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The answer to the refresh that rotated this token, AES-GCM sealed under a key derived from the
    # refresh token itself (oauth/tokens.py seal): written by the rotating UPDATE, served to an
    # identical retry while rotated_at is inside REPLAY_GRACE_SECONDS. Only the token's holder can
    # read it. NULL when not rotated, or rotated with no grace window.
    replay: Mapped[bytes | None] = mapped_column(LargeBinary)

    grant: Mapped[Grant] = relationship()

    def get_authorized_scope(self) -> str:
        """The most any token of this family may carry: what its authorization code granted."""
        return self.scope if self.authorized_scope is None else self.authorized_scope

    # --- Authlib TokenMixin -------------------------------------------------------------------
    def check_client(self, client) -> bool:
        return self.client_pk == client.id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, to_epoch(self.access_expires_at) - to_epoch(self.issued_at))

    def is_expired(self) -> bool:
        return self.access_expires_at <= utcnow()

    def is_refresh_expired(self) -> bool:
        return self.refresh_expires_at is None or self.refresh_expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None or self.access_revoked_at is not None

    def get_user(self):
        return self.grant.user

    def get_client(self):
        return self.grant.client

