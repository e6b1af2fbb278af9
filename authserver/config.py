"""Configuration defaults, load order, and the fail-fast check for unsafe production settings.

Load order (later wins): these defaults, ``instance/config.py`` if present, ``AUTHSERVER_*``
environment variables (``AUTHSERVER_DATABASE_URL`` sets ``DATABASE_URL``; values are parsed as
JSON when they parse), then the ``test_config`` mapping given to ``create_app``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .faults import postgresql_connect_args

#: Placeholder secret; the app refuses to start with it outside debug/testing.
DEFAULT_SECRET_KEY = "dev-insecure-change-me"


class Defaults:
    """Every setting authserver reads, with its default. Override with AUTHSERVER_<NAME>."""

    # Signs the session cookie and CSRF tokens. Must be set (long and random) in production.
    SECRET_KEY = DEFAULT_SECRET_KEY
    # The issuer identifier (RFC 8414 §2): scheme://host[:port], no path, no trailing slash.
    # Used byte-identically in metadata, `iss` response parameters and introspection.
    ISSUER = "http://127.0.0.1:5000"
    # SQLAlchemy URL. None means a SQLite file in the instance folder.
    DATABASE_URL: str | None = None
    # Redis URL for rate limits and shared short-lived state. None means in-process memory.
    REDIS_URL: str | None = None
    # Seconds to wait for Redis to connect or answer. Redis is an optimisation: past this, the
    # instance counts its rate limits in its own memory until Redis answers again.
    REDIS_TIMEOUT = 0.5
    # While Redis is unreachable, look for it again at most this often (seconds).
    REDIS_RECHECK_SECONDS = 5
    # PostgreSQL only. Longest a statement may run (server-side statement_timeout, in ms; 0: no
    # limit); a database too hung to enforce it is given up on one second later by the client.
    # It bounds CLI commands and migrations too: raise it for a long migration.
    DATABASE_STATEMENT_TIMEOUT_MS = 5000
    # Seconds to wait for a new database connection (libpq's connect_timeout; at least 2).
    DATABASE_CONNECT_TIMEOUT = 3
    # Seconds a request waits for a free pooled connection before it is answered 503.
    DATABASE_POOL_TIMEOUT = 3

    # Lifetimes, in seconds.
    AUTHORIZATION_CODE_LIFETIME = 60
    ACCESS_TOKEN_LIFETIME = 3600
    REFRESH_TOKEN_LIFETIME = 30 * 24 * 3600
    # An identical retry of a code redemption or a refresh within this many seconds gets the same
    # answer again instead of an error; after it, a replay revokes the token family / grant.
    REPLAY_GRACE_SECONDS = 10

    # Dynamic client registration (RFC 7591): "open" lets anyone register a client; "token"
    # requires an initial access token (below); "closed" refuses every registration request.
    REGISTRATION_MODE = "open"
    # With REGISTRATION_MODE "token": SHA-256 hex digests of the initial access tokens that may
    # register clients (RFC 7591 §3); `flask clients initial-token` makes one.
    REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES: list[str] = []
    # Largest registration request body, in bytes.
    REGISTRATION_MAX_BYTES = 8192
    # Dynamically registered clients not used for this many days are deleted by
    # `flask clients purge-unused` (with their grants and tokens).
    UNUSED_CLIENT_DAYS = 30
    # Redirect hosts refused at registration (a host or any subdomain of it).
    REDIRECT_HOST_DENYLIST: list[str] = []
    # Client ID Metadata Documents: a client_id that is an https URL names a JSON document
    # describing the client, fetched (safely) instead of a registration. False refuses URL client_ids.
    CIMD_ENABLED = True
    # client_id hosts accepted / refused (a host or any subdomain of it). An empty allow list
    # accepts every host not denied.
    CIMD_ALLOWED_DOMAINS: list[str] = []
    CIMD_DENIED_DOMAINS: list[str] = []
    # Fetching documents and JWKS: total seconds, largest body in bytes, and a PEM CA bundle to
    # trust instead of the system store (None: the system store). TLS is always verified.
    CIMD_FETCH_TIMEOUT = 3.0
    CIMD_MAX_BYTES = 5120
    CIMD_CA_BUNDLE: str | None = None
    # Cache bounds: the origin's Cache-Control/Expires, clamped to [MIN, MAX] seconds (DEFAULT when
    # it says nothing); a copy past its freshness is still served for STALE seconds if the origin fails.
    CIMD_CACHE_MIN_SECONDS = 60
    CIMD_CACHE_DEFAULT_SECONDS = 3600
    CIMD_CACHE_MAX_SECONDS = 86400
    CIMD_STALE_SECONDS = 86400
    # Hosts allowed to resolve to loopback/private addresses, extra ports allowed besides 443, and
    # static host -> IP address overrides (like curl --resolve): for on-premises clients and tests.
    CIMD_ALLOWED_PRIVATE_HOSTS: list[str] = []
    CIMD_ALLOWED_PORTS: list[int] = []
    CIMD_HOST_OVERRIDES: dict[str, str] = {}
    # Outbound document fetches (cache misses) allowed per client IP address: a damper on
    # requests that name ever-new URL client_ids to make the server fetch (Flask-Limiter syntax).
    CIMD_FETCH_RATE_LIMIT = "30 per minute"
    # private_key_jwt client authentication (RFC 7523) for CIMD and registered clients with keys.
    PRIVATE_KEY_JWT_ENABLED = True
    # Longest accepted client assertion lifetime (exp - now, and exp - iat), in seconds.
    CLIENT_ASSERTION_MAX_LIFETIME = 300
    # Canonical URI of the resource server used when an authorization request has no `resource`.
    # None: if exactly one resource server is registered, that one; otherwise `invalid_target`.
    DEFAULT_RESOURCE: str | None = None

    # Scope catalog override: a mapping name -> {"description": ..., "group": ...}
    # replacing the built-in CRM catalog (authserver.scopes.DEFAULT_CATALOG). None keeps it.
    SCOPE_CATALOG: dict | None = None
    # Role presets override: a mapping role -> list of scope names (or ["*"] for every scope).
    # None keeps authserver.accounts.DEFAULT_ROLES.
    ROLES: dict | None = None

    # Passwords are hashed with argon2id at these parameters: one of the five equally strong
    # minimum settings of the OWASP Password Storage Cheat Sheet (46 MiB x 1, 19 MiB x 2,
    # 12 MiB x 3, 9 MiB x 4, 7 MiB x 5 iterations, p=1), chosen because it costs the least CPU of
    # those measured here (13.9 ms against 15.9 ms for 19 MiB x 2) and a third less memory per
    # concurrent sign-in. Raising them slows every sign-in; stored hashes made with other
    # parameters are rehashed at the owner's next successful sign-in.
    PASSWORD_HASH_TIME_COST = 3  # iterations
    PASSWORD_HASH_MEMORY_KIB = 12288  # memory per hash, in KiB
    PASSWORD_HASH_PARALLELISM = 1  # lanes (threads) per hash

    # Sign-in throttling (Flask-Limiter syntax), counted *before* the password is checked, so
    # concurrent attempts cannot slip past a limit. Per (account, address): every attempt counts,
    # a successful sign-in clears the count. Per address: every attempt counts, whatever account.
    LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP = "5 per 5 minutes"
    LOGIN_ATTEMPTS_PER_IP = "30 per 5 minutes"
    # Per account across all addresses sign-in is never refused (that would let anyone who knows
    # an email lock its owner out); it is slowed instead: each attempt first waits
    # LOGIN_DELAY_PER_FAILURE seconds for every failed attempt on the account within the last
    # LOGIN_DELAY_WINDOW seconds, at most LOGIN_DELAY_MAX seconds.
    LOGIN_DELAY_WINDOW = 15 * 60
    LOGIN_DELAY_PER_FAILURE = 0.2
    LOGIN_DELAY_MAX = 2.0
    # A signed-in session ends this many seconds after the sign-in (its auth_time), however
    # active it is: a stolen or forgotten session cookie does not work forever.
    SESSION_ABSOLUTE_LIFETIME = 12 * 3600

    # Trust this many X-Forwarded-For hops when finding the client IP (set behind a proxy).
    PROXY_FIX_HOPS = 0

    # Documentation URL advertised as `service_documentation` in the metadata document.
    SERVICE_DOCUMENTATION = "https://github.com/authserver/authserver#readme"

    # Logging: "json" (one object per line, with request_id) or "text"; and the level.
    LOG_FORMAT = "json"
    LOG_LEVEL = "INFO"
    # Expose Prometheus metrics at /metrics. Off by default: enable it where only your
    # monitoring can reach it.
    METRICS_ENABLED = False

    # Rate limits (Flask-Limiter syntax), shared across instances when REDIS_URL is set.
    # Hosted AI clients register and refresh from a few shared IP addresses, so per-IP limits
    # are generous; the global registration limit is a ceiling against floods.
    # Limits never key on a name the request merely claims (that would let anyone spend a
    # victim's budget): per address before client authentication, per identity after it.
    # Token requests per client address, whatever client they name.
    TOKEN_RATE_LIMIT_PER_IP = "6000 per minute"
    # Token requests per authenticated client; for a public client (nothing proven) per
    # (client_id, address).
    TOKEN_RATE_LIMIT = "1200 per minute"
    REGISTRATION_RATE_LIMIT_PER_IP = "30 per minute"
    REGISTRATION_RATE_LIMIT_GLOBAL = "1200 per minute"
    # Introspection requests per caller address, and per authenticated resource server.
    INTROSPECTION_RATE_LIMIT_PER_IP = "24000 per minute"
    INTROSPECTION_RATE_LIMIT = "12000 per minute"
    # Seconds an instance remembers a resource server's introspection credentials (so that an
    # introspection is one query). A rotated secret works at once; the old one keeps working on
    # other instances for at most this long. 0 reads them on every introspection.
    RESOURCE_SERVER_CACHE_SECONDS = 30
    # Failed client authentications (token, introspection, revocation) per address; over it, the
    # address gets 429 before any authentication is attempted.
    CLIENT_AUTH_FAILURES_PER_IP = "60 per minute"

    # Longest query or form parameter accepted, in characters (longer ones get 400).
    MAX_PARAMETER_CHARS = 4096
    # Largest request body accepted, in bytes (larger bodies get 413).
    MAX_CONTENT_LENGTH = 64 * 1024

    # Session cookie: HttpOnly and SameSite=Lax always; Secure is set when ISSUER is https.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_NAME = "authserver_session"
    # CSRF tokens live as long as the session; the consent page may be left open a while.
    WTF_CSRF_TIME_LIMIT = None
    # Flask-WTF's extra https Referer check is off: every page sends Referrer-Policy: no-referrer
    # (codes and tokens never leak through Referer), so browsers send none. The per-session CSRF
    # token plus SameSite=Lax cookies are the CSRF defence.
    WTF_CSRF_SSL_STRICT = False
    SQLALCHEMY_TRACK_MODIFICATIONS = False


class ConfigError(RuntimeError):
    """Raised at start-up when the configuration is unsafe or malformed."""


def finalize(config, instance_path: str) -> None:
    """Derive settings from the loaded ones and refuse unsafe production configuration."""
    issuer = str(config["ISSUER"])
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"AUTHSERVER_ISSUER must be an absolute URL, got {issuer!r}.")
    if parts.path not in ("",) or parts.query or parts.fragment:
        raise ConfigError(
            "AUTHSERVER_ISSUER must have no path, query or fragment "
            f"(for example https://auth.example.com), got {issuer!r}."
        )
    config["ISSUER"] = issuer
    config["SESSION_COOKIE_SECURE"] = parts.scheme == "https"

    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{instance_path}/authserver.sqlite3"
    config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(config["DATABASE_URL"])
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    else:
        options = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 300,
                   "pool_timeout": config["DATABASE_POOL_TIMEOUT"]}
        if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            options["connect_args"] = postgresql_connect_args(
                config["DATABASE_STATEMENT_TIMEOUT_MS"], config["DATABASE_CONNECT_TIMEOUT"])
        # No pool_pre_ping: it costs a round trip on every checkout, and hot paths check out
        # once per request. A connection found dead is detected by SQLAlchemy, which discards
        # the pool's connections; pool_recycle retires idle ones before servers drop them.
        config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", options)

    renamed = {"LOGIN_FAILURES_PER_ACCOUNT": "LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP",
               "LOGIN_FAILURES_PER_IP": "LOGIN_ATTEMPTS_PER_IP"}
    for old, new in renamed.items():
        if old in config:  # silently ignoring it would leave the operator's limit unapplied
            raise ConfigError(f"AUTHSERVER_{old} is no longer read; set AUTHSERVER_{new} instead.")

    if config["REGISTRATION_MODE"] not in ("open", "token", "closed"):
        raise ConfigError("AUTHSERVER_REGISTRATION_MODE must be 'open', 'token' or 'closed'.")

    if not (config.get("DEBUG") or config.get("TESTING")):
        if config["SECRET_KEY"] == DEFAULT_SECRET_KEY or len(str(config["SECRET_KEY"])) < 32:
            raise ConfigError(
                "Refusing to start: set AUTHSERVER_SECRET_KEY to a long random value "
                "(at least 32 characters, for example the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
            )
        # Plain http is only as private as the network it crosses: on a loopback host it never
        # leaves the machine (a local benchmark, a server behind a local TLS proxy), anywhere else
        # it carries passwords and tokens in the clear.
        if parts.scheme != "https" and not is_loopback_host(parts.hostname):
            raise ConfigError(
                "Refusing to start: AUTHSERVER_ISSUER must be an https URL in production "
                f"(got {issuer!r}); plain http is allowed only on a loopback host "
                "(127.0.0.1, localhost, [::1]). Use `flask --debug` or `make run` for local http."
            )


def is_loopback_host(host: str | None) -> bool:
    """Whether a URL's host is this machine: localhost or a loopback IP address."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_database_url(url: str) -> str:
    """Make plain postgres URLs use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
