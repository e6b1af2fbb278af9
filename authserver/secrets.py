"""Secret handling: random credentials with prefixes, SHA-256 and argon2id hashing, constant-time checks.

Everything we generate ourselves (codes, tokens, registration access tokens, client, resource-server
and admin secrets) carries 256 random bits and is stored as SHA-256 hex: a dump of the
database reveals nothing usable, a lookup is one indexed query, and a check costs microseconds
whether the presented value is right or wrong (no salt or slow hash adds anything to 256 bits).
Passwords, which people choose, are stored with argon2id at the parameters in the config.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

# Recognisable prefixes make leaked credentials easy to spot (and to scan for in logs).
ACCESS_TOKEN_PREFIX = "ast_"
REFRESH_TOKEN_PREFIX = "asr_"
AUTHORIZATION_CODE_PREFIX = "asc_"
CLIENT_SECRET_PREFIX = "ass_"
REGISTRATION_TOKEN_PREFIX = "asg_"
RESOURCE_SECRET_PREFIX = "asrs_"
ADMIN_SECRET_PREFIX = "asa_"

# Client and resource-server secrets used to be stored as argon2id hashes; such a stored value is
# still accepted once and replaced by its SHA-256 form (see verify_secret).
LEGACY_SECRET_HASH_PREFIX = "$argon2"
# Verifying reads the parameters from the stored hash itself, so any hasher verifies any hash.
_legacy_verifier = PasswordHasher()


def new_credential(prefix: str, nbytes: int = 32) -> str:
    """A fresh random credential: prefix + base64url of `nbytes` random bytes (256 bits)."""
    return prefix + _secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


# --- secrets we generate (client and resource-server secrets) ------------------------------------
def hash_secret(secret: str) -> str:
    """The stored form of a secret we generated: SHA-256 hex."""
    return sha256_hex(secret)


@dataclass(frozen=True)
class SecretCheck:
    """The outcome of verify_secret; true when the secret matched."""

    ok: bool
    # Set when the stored value is a legacy argon2 hash that just matched: the caller stores this
    # SHA-256 form instead, so the slow hash is verified at most once per secret.
    replacement: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def verify_secret(stored_hash: str | None, secret: str | None) -> SecretCheck:
    """Check a client or resource-server secret against its stored hash, in constant time."""
    if not secret or not stored_hash:
        return SecretCheck(False)
    if stored_hash.startswith(LEGACY_SECRET_HASH_PREFIX):
        try:
            matched = _legacy_verifier.verify(stored_hash, secret)
        except (VerificationError, InvalidHashError):
            matched = False
        return SecretCheck(matched, hash_secret(secret) if matched else None)
    return SecretCheck(constant_time_equals(hash_secret(secret), stored_hash))


# --- passwords -----------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _hasher_for(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def _password_hasher() -> PasswordHasher:
    """argon2id at the configured PASSWORD_HASH_* parameters."""
    config = current_app.config
    return _hasher_for(
        int(config["PASSWORD_HASH_TIME_COST"]),
        int(config["PASSWORD_HASH_MEMORY_KIB"]),
        int(config["PASSWORD_HASH_PARALLELISM"]),
    )


@lru_cache(maxsize=8)
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A valid hash at the current parameters, verified when the account does not exist, so that
    the time of a sign-in attempt does not reveal whether the email is registered."""
    return hasher.hash(_secrets.token_urlsafe(16))


#: The mark of a stored password hash that no password matches: the hash of an account that
#: signs in through an upstream provider only (never a valid argon2 hash, which starts with `$`).
UNUSABLE_PASSWORD_PREFIX = "!"


def unusable_password_hash() -> str:
    """A stored password hash that verify_password never accepts, unique per account."""
    return UNUSABLE_PASSWORD_PREFIX + _secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    """argon2id hash of a password at the configured parameters."""
    return _password_hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password; costs the same when there is no stored hash or an unusable one (an
    account with no password would otherwise answer faster, and so be told apart)."""
    hasher = _password_hasher()
    usable = stored_hash is not None and not stored_hash.startswith(UNUSABLE_PASSWORD_PREFIX)
    try:
        matched = hasher.verify(stored_hash if usable else _dummy_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and usable


def password_needs_rehash(stored_hash: str) -> bool:
    """True when a stored password hash was made with other parameters than the configured ones."""
    try:
        return _password_hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def has_usable_password(stored_hash: str | None) -> bool:
    """Whether some password can match this stored hash (not an account without one)."""
    return stored_hash is not None and not stored_hash.startswith(UNUSABLE_PASSWORD_PREFIX)
