"""Admin API credentials: created and revoked by the operator (CLI), checked on every admin request.

The secret is 256 random bits shown once and stored as SHA-256 (secrets.py), so a check is one
indexed lookup by the public credential id and a constant-time comparison; nothing is cached, so a
revoked credential stops working on every instance at once."""

from __future__ import annotations

from sqlalchemy import select

from . import audit, store
from .extensions import db
from .models import AdminCredential
from .secrets import ADMIN_SECRET_PREFIX, hash_secret, new_credential, verify_secret
from .timeutil import utcnow

#: The public credential id's prefix: `adm_` and 16 random base64url characters.
CREDENTIAL_ID_PREFIX = "adm_"


class AdminCredentialError(ValueError):
    """An admin-credential request that cannot be carried out (message is public)."""


def create(name: str) -> tuple[AdminCredential, str]:
    """A new credential and its secret (shown once; only its hash is kept)."""
    name = (name or "").strip()
    if not name or len(name) > 200 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise AdminCredentialError("A credential needs a name of 1 to 200 printable characters.")
    secret = new_credential(ADMIN_SECRET_PREFIX)
    credential = AdminCredential(
        credential_id=new_credential(CREDENTIAL_ID_PREFIX, 12), secret_hash=hash_secret(secret), name=name,
    )
    db.session.add(credential)
    db.session.flush()
    audit.record("admin_credential.created", admin_credential=credential.credential_id, name=name)
    return credential, secret


def find_all() -> list[AdminCredential]:
    return list(db.session.scalars(select(AdminCredential).order_by(AdminCredential.id)))


def get(credential_id: str | None) -> AdminCredential | None:
    if not credential_id or not isinstance(credential_id, str) or len(credential_id) > 100:
        return None
    return db.session.scalar(select(AdminCredential).where(AdminCredential.credential_id == credential_id))


def revoke(credential_id: str) -> AdminCredential:
    """Revoke a credential: every request presenting it is refused from now on."""
    credential = get(credential_id)
    if credential is None:
        raise AdminCredentialError(f"No admin credential {credential_id!r}. See `admin list-credentials`.")
    if credential.revoked_at is None:
        credential.revoked_at = utcnow()
        db.session.flush()
        audit.record("admin_credential.revoked", admin_credential=credential.credential_id)
    return credential


def authenticate(credential_id: str | None, secret: str | None) -> AdminCredential | None:
    """The live credential these are, or None (unknown id, wrong secret, revoked). Marks it used
    (at most once a minute: store.touch)."""
    credential = get(credential_id)
    if credential is None or not verify_secret(credential.secret_hash, secret) or credential.revoked_at is not None:
        return None
    store.touch(credential)
    return credential
