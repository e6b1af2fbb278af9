"""Admin credentials: what the product's back end presents to the admin API (HTTP Basic)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import utcnow


class AdminCredential(db.Model):
    """One admin API credential. The secret is generated (256 bits) and stored only as SHA-256
    (authserver/secrets.py); a revoked credential is kept, so the audit trail's ids stay readable."""

    __tablename__ = "admin_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The public half, the Basic user name (`adm_...`): named in every audit event it causes.
    credential_id: Mapped[str] = mapped_column(String(100), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    # Who or what holds it, for people reading `admin list-credentials`.
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
