"""Signing keys for JWT access tokens (RFC 9068): creation, encryption at rest, rotation, the JWKS.

A key's private half is stored AES-256-GCM encrypted under a key derived (HKDF-SHA256) from
SIGNING_KEY_ENCRYPTION_KEY, which lives in configuration only, with the key's `kid` as associated
data (a sealed key cannot be moved to another row). Every published key is in the JWKS; the
schedule is on the rows (models/keys.py), so every instance reads the same one with its clock:
a rotated-in key is published SIGNING_KEY_PREPUBLISH_SECONDS before it signs, and a retired key
stays published until every token it signed has expired.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import or_, select

from .extensions import db
from .models import SigningKey
from .timeutil import utcnow

log = logging.getLogger(__name__)

#: The algorithms a signing key may have, and how a key of each is made.
ALGORITHMS = {
    "ES256": lambda: ECKey.generate_key("P-256"),
    "RS256": lambda: RSAKey.generate_key(2048),
}


class SigningKeyError(ValueError):
    """A key operation that cannot be carried out (the message is for the operator)."""


# --- encryption at rest --------------------------------------------------------------------------
def _encryption_key() -> bytes:
    """The AES key sealing private keys, from SIGNING_KEY_ENCRYPTION_KEY; under --debug or in tests
    only, when that is unset, from SECRET_KEY (with another HKDF label). Never from nothing."""
    config = current_app.config
    secret, label = config.get("SIGNING_KEY_ENCRYPTION_KEY"), b"authserver signing-key encryption v1"
    if not secret:
        if not (config.get("DEBUG") or config.get("TESTING")):
            raise SigningKeyError(
                "Set AUTHSERVER_SIGNING_KEY_ENCRYPTION_KEY (32+ random characters, the same on every "
                "instance) before making or using JWT signing keys."
            )
        secret, label = config["SECRET_KEY"], b"authserver signing-key encryption (debug) v1"
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(str(secret).encode())


def check_configured() -> None:
    """SigningKeyError unless keys can be made and used here (the encryption key is configured)."""
    _encryption_key()


def _seal(kid: str, private_jwk: dict) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_encryption_key()).encrypt(nonce, json.dumps(private_jwk).encode(), kid.encode())


def _unseal(kid: str, sealed: bytes):
    """The private joserfc key of a row; SigningKeyError if the encryption key does not open it."""
    try:
        data = AESGCM(_encryption_key()).decrypt(bytes(sealed[:12]), bytes(sealed[12:]), kid.encode())
    except InvalidTag:
        raise SigningKeyError(
            f"Signing key {kid} cannot be decrypted: AUTHSERVER_SIGNING_KEY_ENCRYPTION_KEY is not the key it "
            "was sealed with."
        ) from None
    private = json.loads(data)
    return (ECKey if private["kty"] == "EC" else RSAKey).import_key(private)


# --- the schedule --------------------------------------------------------------------------------
def _seconds(name: str) -> timedelta:
    return timedelta(seconds=int(current_app.config[name]))


def publication_after_retirement() -> timedelta:
    """How long a retired key stays published: the longest a token it signed can live, plus how
    long an instance may still sign with it from its cache."""
    return _seconds("JWT_ACCESS_TOKEN_LIFETIME") + _seconds("SIGNING_KEY_CACHE_SECONDS")


def is_signing(key: SigningKey, now: datetime) -> bool:
    return key.active_at <= now and (key.retired_at is None or key.retired_at > now)


def is_published(key: SigningKey, now: datetime) -> bool:
    return key.published_until is None or key.published_until > now


def state(key: SigningKey, now: datetime) -> str:
    """`pending` (published, not signing yet), `signing`, `retired` (published) or `unpublished`."""
    if not is_published(key, now):
        return "unpublished"
    if key.retired_at is not None and key.retired_at <= now:
        return "retired"
    return "signing" if key.active_at <= now else "pending"


def _new_key(alg: str, now: datetime, active_at: datetime) -> SigningKey:
    if alg not in ALGORITHMS:
        raise SigningKeyError(f"Unknown signing algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}.")
    jwk = ALGORITHMS[alg]()
    # The RFC 7638 thumbprint, in hex: base64url may begin with "-", which a command line reads
    # as an option (`keys retire KID`).
    thumbprint = jwk.thumbprint()
    kid = base64.urlsafe_b64decode(thumbprint + "=" * (-len(thumbprint) % 4)).hex()
    public = {**jwk.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    key = SigningKey(kid=kid, alg=alg, public_jwk=json.dumps(public), private_jwk_sealed=_seal(kid, jwk.as_dict(private=True)),
                     created_at=now, active_at=active_at)
    db.session.add(key)
    db.session.flush()
    return key


def find_keys() -> list[SigningKey]:
    return list(db.session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.id)))


def _published() -> list[SigningKey]:
    now = utcnow()
    return list(db.session.scalars(
        select(SigningKey)
        .where(or_(SigningKey.published_until.is_(None), SigningKey.published_until > now))
        .order_by(SigningKey.active_at, SigningKey.id)
    ))


def rotate(alg: str | None = None) -> SigningKey:
    """A new key, published now and signing after the pre-publication time; the keys signing or
    pending now are retired when it starts. With no key signing, the new key signs at once."""
    now = utcnow()
    current = [k for k in _published() if k.retired_at is None or k.retired_at > now]
    signing = any(is_signing(k, now) for k in current)
    active_at = now + _seconds("SIGNING_KEY_PREPUBLISH_SECONDS") if signing else now
    key = _new_key(alg or current_app.config["SIGNING_KEY_ALGORITHM"], now, active_at)
    for old in current:
        _retire(old, active_at)  # a pending key of an earlier rotation never signs
    return key


def _retire(key: SigningKey, at: datetime) -> None:
    key.retired_at = at
    key.published_until = at + publication_after_retirement()


def retire(kid: str) -> SigningKey:
    """Stop signing with a key now (a compromised or unwanted key); it stays published until the
    tokens it signed have expired. The next JWT issued makes a new key if none is left signing."""
    key = db.session.scalar(select(SigningKey).where(SigningKey.kid == kid))
    now = utcnow()
    if key is None:
        raise SigningKeyError(f"No signing key {kid}. See `flask --app wsgi keys list`.")
    if key.retired_at is not None and key.retired_at <= now:
        raise SigningKeyError(f"Signing key {kid} is already retired.")
    _retire(key, now)
    db.session.flush()
    return key


def jwks() -> dict:
    """The JWKS document (RFC 7517 §5): every published key's public half, read afresh."""
    return {"keys": [json.loads(k.public_jwk) for k in _published()]}


# --- signing, from a per-process cache -----------------------------------------------------------
@dataclass
class Signer:
    """A key as the token generator uses it."""

    kid: str
    alg: str
    active_at: datetime
    retired_at: datetime | None
    sealed: bytes = field(repr=False)
    _private: object = field(default=None, repr=False)

    @property
    def private(self):
        """The decrypted private key (decrypted once per process)."""
        if self._private is None:
            self._private = _unseal(self.kid, self.sealed)
        return self._private


def _cache() -> dict:
    return current_app.extensions.setdefault("authserver.signing_keys", {"until": datetime.min, "signers": []})


def _load() -> list[Signer]:
    """Read the published keys into this process's cache (decrypted keys kept across reads)."""
    cache = _cache()
    known = {s.kid: s for s in cache["signers"]}
    signers = []
    for key in _published():
        signer = known.get(key.kid) or Signer(key.kid, key.alg, key.active_at, key.retired_at, key.private_jwk_sealed)
        signer.active_at, signer.retired_at = key.active_at, key.retired_at
        signers.append(signer)
    cache["signers"] = signers
    # On the same clock as the schedule: a retirement reaches every instance within this time.
    cache["until"] = utcnow() + _seconds("SIGNING_KEY_CACHE_SECONDS")
    return signers


def _choose(signers: list[Signer], now: datetime) -> Signer | None:
    eligible = [s for s in signers if s.active_at <= now and (s.retired_at is None or s.retired_at > now)]
    return max(eligible, key=lambda s: s.active_at) if eligible else None


def signing_key() -> Signer:
    """The key that signs now: the newest active one, from this process's cache (read again every
    SIGNING_KEY_CACHE_SECONDS, and whenever the cache has no key signing now). With none signing
    (the signing key retired early), a pending successor signs early; with none at all (a fresh
    installation, or the only key retired), one is made, signing at once, in the request's
    transaction: it is cached only once read back committed."""
    now = utcnow()
    cache = _cache()
    signer = _choose(cache["signers"], now) if cache["until"] > now else None
    if signer is None:
        signers = _load()
        signer = _choose(signers, now)
        if signer is None:
            # The signing key was retired with a successor still pending: the successor is already
            # published, so it is the safer one to sign early with.
            pending = [s for s in signers if s.active_at > now and s.retired_at is None]
            signer = max(pending, key=lambda s: s.active_at) if pending else None
    if signer is None:
        key = _new_key(current_app.config["SIGNING_KEY_ALGORITHM"], now, now)
        log.warning("No signing key was signing: made %s (%s), signing at once.", key.kid, key.alg)
        signer = Signer(key.kid, key.alg, key.active_at, key.retired_at, key.private_jwk_sealed)
    return signer
