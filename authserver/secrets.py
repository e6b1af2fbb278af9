"""Secret handling: random credentials with prefixes, SHA-256 and argon2id hashing, constant-time checks.

High-entropy credentials that are looked up (codes, tokens, registration access tokens) are
stored as SHA-256 hex: a lookup by hash is one indexed query and a database dump reveals nothing
usable. Passwords and long-lived shared secrets (client and resource-server secrets) are stored
with argon2id; verifying those on every introspection would cost ~50 ms, so a successful
verification is remembered in-process for a short time, keyed by the stored hash and a digest of
the presented secret (rotating the secret changes the stored hash, which invalidates the entry).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
import threading
import time
from collections import OrderedDict

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

# A valid-looking hash to verify against when the account does not exist, so that the time of
# a login attempt does not reveal whether the email is registered.
_DUMMY_HASH = _hasher.hash(_secrets.token_urlsafe(16))

# Recognisable prefixes make leaked credentials easy to spot (and to scan for in logs).
ACCESS_TOKEN_PREFIX = "ast_"
REFRESH_TOKEN_PREFIX = "asr_"
AUTHORIZATION_CODE_PREFIX = "asc_"
CLIENT_SECRET_PREFIX = "ass_"
REGISTRATION_TOKEN_PREFIX = "asg_"
RESOURCE_SECRET_PREFIX = "asrs_"


def new_credential(prefix: str, nbytes: int = 32) -> str:
    """A fresh random credential: prefix + base64url of `nbytes` random bytes (256 bits)."""
    return prefix + _secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def hash_secret(secret: str) -> str:
    """argon2id hash for a password or a long-lived shared secret."""
    return _hasher.hash(secret)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password; burns the same time when there is no stored hash."""
    if stored_hash is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, VerifyMismatchError, InvalidHashError):
        return False


class _VerifiedCache:
    """Bounded, time-limited memory of successful (stored hash, presented secret) checks."""

    def __init__(self, size: int = 4096, ttl: float = 300.0):
        self._size = size
        self._ttl = ttl
        self._items: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(stored_hash: str, secret: str) -> str:
        return hashlib.sha256(stored_hash.encode() + b"\0" + secret.encode("utf-8", "surrogatepass")).hexdigest()

    def hit(self, stored_hash: str, secret: str) -> bool:
        key = self._key(stored_hash, secret)
        with self._lock:
            expires = self._items.get(key)
            if expires is None:
                return False
            if expires < time.monotonic():
                del self._items[key]
                return False
            self._items.move_to_end(key)
            return True

    def add(self, stored_hash: str, secret: str) -> None:
        key = self._key(stored_hash, secret)
        with self._lock:
            self._items[key] = time.monotonic() + self._ttl
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_verified = _VerifiedCache()


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Check a client or resource-server secret against its argon2id hash (cached on success)."""
    if not secret or not stored_hash:
        return False
    if _verified.hit(stored_hash, secret):
        return True
    if verify_password(stored_hash, secret):
        _verified.add(stored_hash, secret)
        return True
    return False
