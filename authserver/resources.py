"""Resource servers: canonical resource URIs (RFC 8707), registration and credentials."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from flask import current_app
from sqlalchemy import bindparam, func, select, update

from . import rawsql, scopes, store
from .extensions import db
from .models import ResourceServer
from .secrets import LEGACY_SECRET_HASH_PREFIX, RESOURCE_SECRET_PREFIX, hash_secret, new_credential, verify_secret

DEFAULT_PORTS = {"http": 80, "https": 443}
#: ResourceServer.token_format values: opaque tokens the resource server introspects, or RFC 9068
#: JWTs it can verify locally against the jwks_uri (oauth/tokens.py).
OPAQUE, JWT = "opaque", "jwt"
TOKEN_FORMATS = (OPAQUE, JWT)


class ResourceError(ValueError):
    """A resource URI or resource-server request that cannot be accepted (message is public)."""


def canonicalize(uri: str) -> str:
    """The canonical form of a resource URI, so one server never becomes two audiences.

    Lower-case scheme and host, default port dropped, no trailing slash, no fragment (RFC 8707 §2:
    a resource MUST be absolute and MUST NOT have a fragment). Raises ResourceError."""
    if not isinstance(uri, str) or not uri or len(uri) > 2000:
        raise ResourceError("The resource must be an absolute URI.")
    return _canonical(uri)


@lru_cache(maxsize=1024)
def _canonical(uri: str) -> str:
    """canonicalize's answer for a string: a pure function of it, remembered for the few URIs a
    deployment sees (every authorization request canonicalizes its resource twice: read ahead,
    then resolved)."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in uri):
        raise ResourceError("The resource must not contain spaces or control characters.")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ResourceError("The resource is not a valid URI.") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ResourceError("The resource must be an absolute http(s) URI.")
    if "#" in uri:
        raise ResourceError("The resource must not contain a fragment.")
    if parts.username is not None or parts.password is not None:
        raise ResourceError("The resource must not contain user information.")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def get_by_uri(uri: str) -> ResourceServer | None:
    """The resource server for a (possibly non-canonical) URI, or None."""
    read = uri_read(uri)
    if read is None:
        return None
    row = rawsql.read(*read)
    return store.adopt(ResourceServer, row) if row is not None else None


def uri_read(uri: str | None) -> tuple[rawsql.Statement, dict] | None:
    """The read get_by_uri makes for `uri` (for rawsql.read_ahead); None when it makes none."""
    try:
        return _BY_URI, {"uri": canonicalize(uri)}
    except ResourceError:
        return None


# Built once: every authorization request resolves its resource with this lookup.
_BY_URI = rawsql.Statement(select(*ResourceServer.__table__.columns).where(ResourceServer.uri == bindparam("uri")))


# Built once: every introspection authenticates its caller with this lookup (on a cache miss).
_CREDENTIALS = rawsql.Statement(
    select(ResourceServer.id, ResourceServer.uri, ResourceServer.credential_id, ResourceServer.credential_secret_hash).where(
        ResourceServer.credential_id == bindparam("credential_id")
    )
)


@dataclass(frozen=True)
class Caller:
    """An authenticated resource server, as the introspection endpoint needs it."""

    id: int
    uri: str
    credential_id: str
    secret_hash: str


def _credentials_cache() -> dict[str, tuple[float, Caller | None]]:
    return current_app.extensions.setdefault("authserver.resource_credentials", {})


def _remembered(credential_id: str) -> Caller | None:
    """The caller get_caller remembers for this credential id, while still within
    RESOURCE_SERVER_CACHE_SECONDS; else None."""
    found = _credentials_cache().get(credential_id)
    return found[1] if found is not None and found[0] > time.monotonic() else None


def get_caller(credential_id: str, fresh: bool = False) -> Caller | None:
    """A resource server's credentials by credential id, remembered in this process for
    RESOURCE_SERVER_CACHE_SECONDS: introspection then needs no query to know its caller. Unknown ids
    are not remembered (anyone can invent them). `fresh` reads the database again."""
    if not fresh:
        remembered = _remembered(credential_id)
        if remembered is not None:
            return remembered
    cache = _credentials_cache()
    now = time.monotonic()
    row = rawsql.read_one(_CREDENTIALS, {"credential_id": credential_id})
    caller = Caller(row.id, row.uri, row.credential_id, row.credential_secret_hash) if row else None
    if caller is not None:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[credential_id] = (now + float(current_app.config["RESOURCE_SERVER_CACHE_SECONDS"]), caller)
    else:
        cache.pop(credential_id, None)
    return caller


#: Most resource servers remembered per process (there are few; this only bounds memory).
_CACHE_SIZE = 1024


def find_all() -> list[ResourceServer]:
    return list(db.session.scalars(select(ResourceServer).order_by(ResourceServer.id)))


def get_default() -> ResourceServer | None:
    """The resource used when a request has no `resource`: the configured DEFAULT_RESOURCE, or the
    only registered resource server; None when that is ambiguous."""
    configured = current_app.config.get("DEFAULT_RESOURCE")
    if configured:
        return get_by_uri(configured)
    if db.session.scalar(select(func.count()).select_from(ResourceServer)) == 1:
        return db.session.scalar(select(ResourceServer))
    return None


def known_caller(credential_id: str | None, secret: str | None) -> Caller | None:
    """The resource server these credentials prove when this process remembers it (get_caller's
    cache) and its secret's hash is SHA-256: no database read and no slow hash, so this may run
    before the rate limits. None means only "ask `authenticate`" (the secret may have been
    rotated, or the caller not been seen here yet)."""
    if not credential_id or not secret or len(credential_id) > 100:
        return None
    caller = _remembered(credential_id)
    if caller is None or caller.secret_hash.startswith(LEGACY_SECRET_HASH_PREFIX):
        return None
    return caller if verify_secret(caller.secret_hash, secret) else None


def authenticate(credential_id: str | None, secret: str | None) -> Caller | None:
    """The resource server whose introspection credentials these are, or None. A secret that does
    not match the remembered one is checked against the database once more, so a rotated secret
    works at once; the old one keeps working on other instances for at most
    RESOURCE_SERVER_CACHE_SECONDS."""
    if not credential_id or not secret or len(credential_id) > 100:
        return None
    caller = get_caller(credential_id)
    if caller is None:
        return None
    check = verify_secret(caller.secret_hash, secret)
    if not check:
        fresh = get_caller(credential_id, fresh=True)
        if fresh is None or fresh.secret_hash == caller.secret_hash:
            return None
        caller, check = fresh, verify_secret(fresh.secret_hash, secret)
        if not check:
            return None
    if check.replacement:
        # A legacy argon2 hash that just matched: store its SHA-256 form, in a transaction of its
        # own (introspection writes nothing else), so the slow hash is verified once.
        with rawsql.transaction() as tx:
            tx.execute(_REPLACE_SECRET_HASH, {"id": caller.id, "old": caller.secret_hash, "new": check.replacement})
        _credentials_cache().pop(credential_id, None)
    return caller


_REPLACE_SECRET_HASH = rawsql.Statement(
    update(ResourceServer)
    .where(ResourceServer.id == bindparam("id"), ResourceServer.credential_secret_hash == bindparam("old"))
    .values(credential_secret_hash=bindparam("new"))
)


def create(
    uri: str, name: str, scope_names: list[str] | None = None, default_scope_names: list[str] | None = None,
    credential_id: str | None = None, token_format: str = OPAQUE,
) -> tuple[ResourceServer, str]:
    """Register a resource server; returns it and its introspection secret (shown once). The
    credential id is random unless given (the demo uses a fixed one)."""
    _check_format(token_format)
    canonical = canonicalize(uri)
    if get_by_uri(canonical) is not None:
        raise ResourceError(f"A resource server for {canonical} already exists.")
    accepted = scopes.validate_names(scope_names or scopes.all_names())
    defaults = scopes.validate_names(default_scope_names or accepted, what="default scope")
    outside = [s for s in defaults if s not in accepted]
    if outside:
        raise ResourceError(f"Default scopes must be accepted scopes; not accepted: {', '.join(outside)}.")
    secret = new_credential(RESOURCE_SECRET_PREFIX)
    resource = ResourceServer(
        uri=canonical,
        name=(name or canonical).strip()[:200],
        credential_id=credential_id or "rs_" + new_credential("", 12),
        credential_secret_hash=hash_secret(secret),
        scopes=scopes.to_string(accepted),
        default_scopes=scopes.to_string(defaults),
        token_format=token_format,
    )
    db.session.add(resource)
    db.session.flush()
    return resource, secret


def rotate_secret(resource: ResourceServer, secret: str | None = None) -> str:
    """Replace the introspection secret (a fresh random one unless given); the old one stops
    working at once."""
    secret = secret or new_credential(RESOURCE_SECRET_PREFIX)
    resource.credential_secret_hash = hash_secret(secret)
    db.session.flush()
    _credentials_cache().pop(resource.credential_id, None)
    return secret


def _check_format(token_format: str) -> None:
    if token_format not in TOKEN_FORMATS:
        raise ResourceError(f"The token format must be one of {', '.join(TOKEN_FORMATS)}.")


def set_token_format(resource: ResourceServer, token_format: str) -> None:
    """Issue `opaque` or `jwt` access tokens for this resource server from now on; tokens issued
    before keep working (introspection and revocation find both the same way)."""
    _check_format(token_format)
    resource.token_format = token_format
    db.session.flush()
