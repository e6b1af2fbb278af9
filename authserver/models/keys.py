"""Signing keys for JWT access tokens: the public half published, the private half encrypted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import utcnow


class SigningKey(db.Model):
    """One key's life: published from created_at, signing from active_at until retired_at, and
    published until published_until (when every token it signed has expired)."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The RFC 7638 thumbprint of the public key (hex): the JWT header's `kid`.
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(10))
    # The public JWK (JSON), as served at the jwks_uri.
    public_jwk: Mapped[str] = mapped_column(Text)
    # The private JWK, AES-256-GCM encrypted under SIGNING_KEY_ENCRYPTION_KEY (authserver/keys.py).
    private_jwk_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Signs from here on: created_at plus the pre-publication time, so verifiers caching the JWKS
    # have seen the key before any token signed with it reaches them.
    active_at: Mapped[datetime] = mapped_column(DateTime)
    # Signs nothing from here on (NULL: not retired).
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Leaves the JWKS here: retired_at plus the longest lifetime of a token it signed.
    published_until: Mapped[datetime | None] = mapped_column(DateTime)
