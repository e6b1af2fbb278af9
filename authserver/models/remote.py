"""Documents fetched from URLs clients chose (Client ID Metadata Documents, JWKS), and the
single-use record of client assertions (private_key_jwt `jti`), both shared by every instance."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class RemoteDocument(db.Model):
    """The last good copy of a fetched document. Fresh until `expires_at` (the origin's cache
    headers, clamped by the operator's bounds); after that it is refetched, and served only if
    the origin fails and `stale_until` has not passed."""

    __tablename__ = "remote_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    # "client" (a Client ID Metadata Document) or "jwks".
    kind: Mapped[str] = mapped_column(String(20))
    document: Mapped[dict] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    stale_until: Mapped[datetime] = mapped_column(DateTime, index=True)


class UsedAssertion(db.Model):
    """A client assertion's (client_id, jti), as SHA-256, kept until the assertion expires: the
    unique index makes a second use fail on every instance at once."""

    __tablename__ = "used_assertions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
