"""Configuration defaults, load order, and the fail-fast check for unsafe production settings.

Load order (later wins): these defaults, ``instance/config.py`` if present, ``AUTHSERVER_*``
environment variables (``AUTHSERVER_DATABASE_URL`` sets ``DATABASE_URL``; values are parsed as
JSON when they parse), then the ``test_config`` mapping given to ``create_app``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

import click

from .faults import postgresql_connect_args

#: Placeholder secret; the app refuses to start with it outside debug/testing.
DEFAULT_SECRET_KEY = "dev-insecure-change-me"


class Defaults:
    """Every setting authserver reads, with its default. Override with AUTHSERVER_<NAME>.

    Each setting's ``#:`` comment is its row in docs/configuration.md, written there by
    ``make docs`` (a ``default:`` line says how to show a default that is not a plain value);
    tests/test_docs.py fails when the two disagree.
    """

    #: default: placeholder (refused in production)
    #: signs session cookies and CSRF tokens; 32+ random characters, the same on every instance
    SECRET_KEY = DEFAULT_SECRET_KEY
    #: the issuer (RFC 8414 §2: scheme://host[:port], no path, no trailing slash); appears
    #: byte-identical in metadata, `iss` and introspection. Must be https in production; http is
    #: accepted without `--debug` only on a loopback host
    ISSUER = "http://127.0.0.1:5000"
    #: default: SQLite file `instance/authserver.sqlite3`
    #: SQLAlchemy URL; `postgresql://user:pw@host/db` uses psycopg 3 (pool of 10 + 20 overflow per
    #: process, connections recycled after 300 s)
    DATABASE_URL: str | None = None
    #: default: none (in-process memory)
    #: rate limits and shared short-lived state, shared by every instance
    REDIS_URL: str | None = None
    # Redis is an optimisation, not a single point of failure: past REDIS_TIMEOUT an instance
    # counts its rate limits in its own memory until Redis answers again.
    #: seconds to wait for Redis to connect or answer; past it the instance counts its rate limits
    #: in its own memory (no retries: an outage costs a request one wait)
    REDIS_TIMEOUT = 0.5
    #: while Redis is unreachable, how often (at most) an instance looks for it again; `/readyz`
    #: looks on every call
    REDIS_RECHECK_SECONDS = 5
    #: PostgreSQL: the server's `statement_timeout` for every connection (`0`: none); the client
    #: gives up one second later on a server too hung to enforce it. It bounds CLI commands and
    #: migrations too: raise it for a long migration
    DATABASE_STATEMENT_TIMEOUT_MS = 5000
    #: PostgreSQL: seconds to wait for a new connection (libpq's `connect_timeout`, at least 2)
    DATABASE_CONNECT_TIMEOUT = 3
    #: seconds a request waits for a free pooled connection before it is answered 503
    DATABASE_POOL_TIMEOUT = 3

    #: seconds
    AUTHORIZATION_CODE_LIFETIME = 60
    #: seconds
    ACCESS_TOKEN_LIFETIME = 3600
    #: seconds (30 days)
    REFRESH_TOKEN_LIFETIME = 30 * 24 * 3600
    #: an identical retry of a code redemption or refresh within this window gets the same answer;
    #: later reuse revokes the token family / grant (`0`: every reuse is theft)
    REPLAY_GRACE_SECONDS = 10
    #: seconds a JWT access token (resource servers with token format `jwt`) lives: shorter than
    #: `ACCESS_TOKEN_LIFETIME`, since a verifier that never calls back learns of a revocation only
    #: at expiry
    JWT_ACCESS_TOKEN_LIFETIME = 300

    #: default: none (required outside debug/testing before any signing key is made or used)
    #: encrypts the JWT signing keys' private halves in the database (AES-256-GCM under a key
    #: derived from it); 32+ random characters, the same on every instance, never stored in the
    #: database. Under `--debug` or in tests, when unset, a key derived from `SECRET_KEY` is used
    SIGNING_KEY_ENCRYPTION_KEY: str | None = None
    #: algorithm of new signing keys: `ES256` (P-256) or `RS256` (RSA 2048)
    SIGNING_KEY_ALGORITHM = "ES256"
    #: seconds a new key (`keys rotate`) is published in the JWKS before it signs anything: at least
    #: `JWKS_MAX_AGE`, and as long as any verifier caches the JWKS
    SIGNING_KEY_PREPUBLISH_SECONDS = 3600
    #: seconds an instance keeps the signing keys it read (so issuing a JWT reads no key); a retired
    #: key stays published this much longer
    SIGNING_KEY_CACHE_SECONDS = 60
    #: `Cache-Control: max-age` of the JWKS document, seconds (at most
    #: `SIGNING_KEY_PREPUBLISH_SECONDS`)
    JWKS_MAX_AGE = 300

    #: dynamic registration (RFC 7591): `open` (anyone), `token` (needs an initial access token) or
    #: `closed` (refused)
    REGISTRATION_MODE = "open"
    #: with mode `token`: SHA-256 hex digests of the initial access tokens (RFC 7591 §3) that may
    #: register; `flask --app wsgi clients initial-token` makes one
    REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES: list[str] = []
    #: largest registration request body, bytes
    REGISTRATION_MAX_BYTES = 8192
    #: `flask --app wsgi clients purge-unused` deletes dynamically registered clients unused this many
    #: days, with their grants and tokens
    UNUSED_CLIENT_DAYS = 30
    #: redirect hosts (and their subdomains) refused at registration; matched without trailing dots
    REDIRECT_HOST_DENYLIST: list[str] = []
    #: accept https URL client_ids (Client ID Metadata Documents); `false` refuses them
    CIMD_ENABLED = True
    #: client_id hosts (and subdomains, trailing dots ignored) accepted; empty accepts any host not
    #: denied
    CIMD_ALLOWED_DOMAINS: list[str] = []
    #: client_id hosts (and subdomains, trailing dots ignored) refused
    CIMD_DENIED_DOMAINS: list[str] = []
    #: total seconds for a document or JWKS fetch: the DNS lookup, connecting and reading
    CIMD_FETCH_TIMEOUT = 3.0
    #: largest document or JWKS body, bytes
    CIMD_MAX_BYTES = 5120
    #: default: none (system trust store)
    #: PEM bundle trusted for document fetches instead of the system store (TLS is always verified)
    CIMD_CA_BUNDLE: str | None = None
    #: lower bound on the origin's `Cache-Control`/`Expires`
    CIMD_CACHE_MIN_SECONDS = 60
    #: cache time when the origin sends neither
    CIMD_CACHE_DEFAULT_SECONDS = 3600
    #: upper bound on the origin's `Cache-Control`/`Expires`
    CIMD_CACHE_MAX_SECONDS = 86400
    #: how long past its freshness a cached document is still used while its origin fails
    CIMD_STALE_SECONDS = 86400
    #: on-premises clients and tests: hosts allowed to resolve to loopback or private addresses
    CIMD_ALLOWED_PRIVATE_HOSTS: list[str] = []
    #: ports allowed besides 443
    CIMD_ALLOWED_PORTS: list[int] = []
    #: static `{host: ip}` resolution (like `curl --resolve`)
    CIMD_HOST_OVERRIDES: dict[str, str] = {}
    #: outbound document fetches (cache misses) per client address: a damper on requests naming
    #: ever-new URL client_ids
    CIMD_FETCH_RATE_LIMIT = "30 per minute"
    #: accept `private_key_jwt` (RFC 7523) client authentication, for metadata-document and registered
    #: clients with keys
    PRIVATE_KEY_JWT_ENABLED = True
    #: longest accepted client assertion (`exp - now`, and `exp - iat`), seconds
    CLIENT_ASSERTION_MAX_LIFETIME = 300
    #: resource used when an authorization request names none (none: the only resource server if
    #: exactly one is registered, else `invalid_target`)
    DEFAULT_RESOURCE: str | None = None

    #: default: built-in CRM catalog
    #: `{name: {"description": ..., "group": ...}}` replacing `authserver.scopes.DEFAULT_CATALOG`
    SCOPE_CATALOG: dict | None = None
    #: default: admin / sales / viewer
    #: `{role: [scopes] or ["*"]}` replacing `authserver.accounts.DEFAULT_ROLES`
    ROLES: dict | None = None

    # Passwords are hashed with argon2id at these parameters: one of the five equally strong
    # minimum settings of the OWASP Password Storage Cheat Sheet (46 MiB x 1, 19 MiB x 2,
    # 12 MiB x 3, 9 MiB x 4, 7 MiB x 5 iterations, p=1), chosen because it costs the least CPU of
    # those measured here (13.9 ms against 15.9 ms for 19 MiB x 2) and a third less memory per
    # concurrent sign-in. Raising them slows every sign-in; stored hashes made with other
    # parameters are rehashed at the owner's next successful sign-in.
    #: argon2id iterations for passwords (with 12 MiB and p=1, one of the OWASP Password Storage Cheat
    #: Sheet's equally strong minimums, the cheapest in CPU here)
    PASSWORD_HASH_TIME_COST = 3  # iterations
    #: argon2id memory per password hash, KiB
    PASSWORD_HASH_MEMORY_KIB = 12288  # memory per hash, in KiB
    #: argon2id lanes; raising any of the three slows every sign-in, and a password hashed with other
    #: parameters is rehashed at its owner's next successful sign-in
    PASSWORD_HASH_PARALLELISM = 1  # lanes (threads) per hash

    # Sign-in throttling (Flask-Limiter syntax), counted *before* the password is checked, so
    # concurrent attempts cannot slip past a limit. Per (account, address): every attempt counts,
    # a successful sign-in clears the count. Per address: every attempt counts, whatever account.
    #: sign-in attempts per (account, address), counted before the password is checked; a successful
    #: sign-in clears the count (replaces `LOGIN_FAILURES_PER_ACCOUNT`)
    LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP = "5 per 5 minutes"
    #: sign-in attempts per address, whatever the account, counted before checking (replaces
    #: `LOGIN_FAILURES_PER_IP`)
    LOGIN_ATTEMPTS_PER_IP = "30 per 5 minutes"
    # Per account across all addresses sign-in is never refused (that would let anyone who knows
    # an email lock its owner out); it is slowed instead: each attempt first waits
    # LOGIN_DELAY_PER_FAILURE seconds for every failed attempt on the account within the last
    # LOGIN_DELAY_WINDOW seconds, at most LOGIN_DELAY_MAX seconds.
    #: per-account slow-down, never a lock-out: seconds of failed attempts on the account (from any
    #: address) that count
    LOGIN_DELAY_WINDOW = 15 * 60
    #: seconds each attempt waits per failed attempt in the window
    LOGIN_DELAY_PER_FAILURE = 0.2
    #: longest such wait, seconds
    LOGIN_DELAY_MAX = 2.0
    #: seconds a sign-in lasts (12 h from its `auth_time`), however active the session
    SESSION_ABSOLUTE_LIFETIME = 12 * 3600

    # Sign-in through the operator's own OpenID Connect providers (authserver/upstream.py).
    #: default: none
    #: OpenID Connect providers people may sign in with (docs/identity.md): a JSON list of objects
    #: with `name` (the slug in `/login/upstream/<name>`, `[a-z0-9-]{1,32}`), `display_name`,
    #: `issuer` (discovery at `<issuer>/.well-known/openid-configuration`; https unless on a
    #: loopback host or under `--debug`), `client_id`, `client_secret`, and optionally `scopes`
    #: (default `openid email profile`, must include `openid`) and `name_claim` (the claim that
    #: gives a new account's display name, default `name`). People are linked by (provider, `sub`)
    UPSTREAM_PROVIDERS: list[dict] = []
    #: offer the email and password form on the sign-in page; `false` hides it and refuses
    #: `POST /login` (people sign in through `UPSTREAM_PROVIDERS` only)
    PASSWORD_LOGIN_ENABLED = True
    #: link a first upstream sign-in to the existing account with the same email, only when the
    #: provider asserts `email_verified: true` for it
    UPSTREAM_LINK_VERIFIED_EMAIL = False
    #: create an account, with no hub memberships and no usable password, at a first upstream
    #: sign-in that matches no account
    UPSTREAM_CREATE_USERS = False
    #: seconds to wait for each call to a provider (discovery, JWKS, token, userinfo); past it the
    #: sign-in ends on a 503 page
    UPSTREAM_TIMEOUT = 5.0

    #: trusted `X-Forwarded-*` hops when finding the client address (1 behind one reverse proxy)
    PROXY_FIX_HOPS = 0

    #: `service_documentation` in the metadata document
    SERVICE_DOCUMENTATION = "https://github.com/authserver/authserver#readme"

    #: the product's name on every page (header and title), where people sign in and consent: the
    #: operator's product, not ours; at most 80 characters
    PRODUCT_NAME = "authserver"
    #: logo shown beside the name: an https URL (its origin, and nothing wider, is added to the
    #: pages' Content-Security-Policy `img-src`), http only on a loopback host, or a path beginning
    #: with `/static/`
    PRODUCT_LOGO_URL: str | None = None
    #: link behind the product's name and logo: an https URL (http only on a loopback host)
    PRODUCT_HOME_URL: str | None = None

    #: `json` (one object per line, with `request_id`) or `text`
    LOG_FORMAT = "json"
    #: log level
    LOG_LEVEL = "INFO"
    #: Prometheus metrics at `/metrics`; enable it where only your monitoring can reach it
    METRICS_ENABLED = False

    # Rate limits (Flask-Limiter syntax), shared across instances when REDIS_URL is set.
    # Hosted AI clients register and refresh from a few shared IP addresses, so per-IP limits
    # are generous; the global registration limit is a ceiling against floods.
    # Limits never key on a name the request merely claims (that would let anyone spend a
    # victim's budget): per address before client authentication, per identity after it.
    #: token requests per client address, whatever client they name
    TOKEN_RATE_LIMIT_PER_IP = "6000 per minute"
    #: token requests per authenticated client; public clients per (client_id, address)
    TOKEN_RATE_LIMIT = "1200 per minute"
    #: registrations per address (generous: hosted AI clients register from a few shared addresses)
    REGISTRATION_RATE_LIMIT_PER_IP = "30 per minute"
    #: registrations in all: a ceiling against floods
    REGISTRATION_RATE_LIMIT_GLOBAL = "1200 per minute"
    #: introspections per caller address
    INTROSPECTION_RATE_LIMIT_PER_IP = "24000 per minute"
    #: introspections per authenticated resource server
    INTROSPECTION_RATE_LIMIT = "12000 per minute"
    #: seconds an instance remembers a resource server's introspection credentials (so an
    #: introspection is one query); a rotated secret works at once, the old one keeps working on other
    #: instances for at most this long; `0` reads them every time
    RESOURCE_SERVER_CACHE_SECONDS = 30
    #: PostgreSQL: seconds a worker may answer a repeated introspection from the row it read
    #: (changes reach every worker through NOTIFY within milliseconds, and in the worker that made
    #: them at once; this is the bound whatever happens to the notifications, and for the one change
    #: not announced, a refresh ending the rotated pair's own access token: authserver/changes.py);
    #: `0` reads the database for every introspection. SQLite: always off
    INTROSPECTION_CACHE_SECONDS = 5.0
    #: PostgreSQL: how many tokens' rows each worker keeps at most (the oldest go first)
    INTROSPECTION_CACHE_ENTRIES = 20000
    #: failed client authentications (token, introspection, revocation) per address; over it, 429
    #: before any authentication is attempted
    CLIENT_AUTH_FAILURES_PER_IP = "60 per minute"

    #: longer query or form parameters get 400
    MAX_PARAMETER_CHARS = 4096
    #: larger request bodies get 413
    MAX_CONTENT_LENGTH = 64 * 1024

    #: Flask: the session cookie is `HttpOnly` (`Secure` is set automatically when `ISSUER` is https)
    SESSION_COOKIE_HTTPONLY = True
    #: Flask: the session cookie's `SameSite`
    SESSION_COOKIE_SAMESITE = "Lax"
    #: Flask: the session cookie's name
    SESSION_COOKIE_NAME = "authserver_session"
    #: Flask-WTF: CSRF tokens live as long as the session (a consent page may be left open a while)
    WTF_CSRF_TIME_LIMIT = None
    #: Flask-WTF's https Referer check, off: every page sends `Referrer-Policy: no-referrer`, so
    #: browsers send none; the per-session CSRF token and `SameSite=Lax` cookies are the CSRF defence
    WTF_CSRF_SSL_STRICT = False
    #: Flask-SQLAlchemy's event system, off
    SQLALCHEMY_TRACK_MODIFICATIONS = False


class ConfigError(click.ClickException, ValueError):
    """Raised at start-up when the configuration is unsafe or malformed.

    A ClickException because every `flask` command loads the app first: click then prints the
    message as one line, `Error: ...`, and exits with status 1, where any other exception would
    end the command in a traceback."""


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

    if config["SIGNING_KEY_ALGORITHM"] not in ("ES256", "RS256"):
        raise ConfigError("AUTHSERVER_SIGNING_KEY_ALGORITHM must be 'ES256' or 'RS256'.")
    if int(config["JWKS_MAX_AGE"]) > int(config["SIGNING_KEY_PREPUBLISH_SECONDS"]):
        raise ConfigError(
            "AUTHSERVER_JWKS_MAX_AGE must not exceed AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS: a verifier "
            "must see a new key before it signs anything."
        )
    kek = config.get("SIGNING_KEY_ENCRYPTION_KEY")
    if kek is not None and len(str(kek)) < 32:
        raise ConfigError("AUTHSERVER_SIGNING_KEY_ENCRYPTION_KEY must be at least 32 random characters.")

    check_product(config)
    config["UPSTREAM_PROVIDERS"] = upstream_providers(
        config["UPSTREAM_PROVIDERS"], relaxed=bool(config.get("DEBUG") or config.get("TESTING")))
    if not config["PASSWORD_LOGIN_ENABLED"] and not config["UPSTREAM_PROVIDERS"]:
        raise ConfigError("AUTHSERVER_PASSWORD_LOGIN_ENABLED is false and AUTHSERVER_UPSTREAM_PROVIDERS names "
                          "no provider: nobody could sign in.")

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


#: Longest product name shown on the pages.
PRODUCT_NAME_MAX = 80
#: A host as a Content-Security-Policy source may name it (CSP3 host-source): letters, digits,
#: dots and hyphens. Anything else (`;`, quotes, spaces, an IPv6 literal) could not be written into
#: the header, or would add to it.
_CSP_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


def check_product(config) -> None:
    """The operator's name, logo and home link: text and URLs a page may show and link to."""
    name = config["PRODUCT_NAME"]
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("AUTHSERVER_PRODUCT_NAME must be a non-empty text (quote a name that is a "
                          "number: AUTHSERVER_PRODUCT_NAME='\"1984\"').")
    if len(name.strip()) > PRODUCT_NAME_MAX or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise ConfigError(f"AUTHSERVER_PRODUCT_NAME must be at most {PRODUCT_NAME_MAX} printable characters.")
    config["PRODUCT_NAME"] = name.strip()
    config["PRODUCT_LOGO_URL"] = _product_url("PRODUCT_LOGO_URL", config.get("PRODUCT_LOGO_URL"), logo=True)
    config["PRODUCT_HOME_URL"] = _product_url("PRODUCT_HOME_URL", config.get("PRODUCT_HOME_URL"), logo=False)


def _product_url(setting: str, value, *, logo: bool) -> str | None:
    """`value` if a browser may load it (a logo) or follow it (the home link) from our pages: https,
    http only on a loopback host, or for a logo a path under /static/; never javascript:, data: or
    any other scheme, credentials in the URL, or a host a CSP source cannot name."""
    if value is None or value == "":
        return None
    what = "an https URL or a path beginning with /static/" if logo else "an https URL"
    if not isinstance(value, str) or len(value) > 2000:
        raise ConfigError(f"AUTHSERVER_{setting} must be {what}.")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value) or "\\" in value:
        raise ConfigError(f"AUTHSERVER_{setting} must be {what}, without spaces, backslashes or "
                          "non-ASCII characters (percent-encode them).")
    if logo and value.startswith("/static/"):
        if ".." in value.split("?")[0].split("/"):
            raise ConfigError(f"AUTHSERVER_{setting} must not leave /static/, got {value!r}.")
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigError(f"AUTHSERVER_{setting} must be {what}, got {value!r}.") from None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in ("https", "http") or not host:
        raise ConfigError(f"AUTHSERVER_{setting} must be {what}, got {value!r}.")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"AUTHSERVER_{setting} must not contain a user name or password.")
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigError(f"AUTHSERVER_{setting} must be https (http is allowed only on a loopback host), "
                          f"got {value!r}.")
    if logo and not _CSP_HOST.match(host):
        raise ConfigError(f"AUTHSERVER_{setting}: the host {host!r} cannot be named in a Content-Security-"
                          "Policy (use a DNS name in ASCII, or 127.0.0.1; not an IPv6 address).")
    return value


def image_origin(logo_url: str | None) -> str | None:
    """The origin a checked PRODUCT_LOGO_URL loads from, as a CSP source (None: our own, or none)."""
    if not logo_url or logo_url.startswith("/"):
        return None
    parts = urlsplit(logo_url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme.lower()}://{parts.hostname}{port}"


#: An upstream provider's slug: the last part of its sign-in URLs.
UPSTREAM_NAME = re.compile(r"^[a-z0-9-]{1,32}$")
_UPSTREAM_REQUIRED = ("name", "display_name", "issuer", "client_id", "client_secret")
_UPSTREAM_DEFAULTS = {"scopes": "openid email profile", "name_claim": "name"}


def upstream_providers(raw, *, relaxed: bool) -> list[dict]:
    """UPSTREAM_PROVIDERS checked and completed with its defaults; a ConfigError names the first
    problem. `relaxed` (debug or testing) accepts an http issuer on any host, as ISSUER does."""
    where = "AUTHSERVER_UPSTREAM_PROVIDERS"
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a JSON list of provider objects.")
    providers, names = [], set()
    for number, entry in enumerate(raw, 1):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: provider {number} must be an object.")
        label = f"{where}: provider {entry.get('name', number)!r}"
        unknown = sorted(set(entry) - set(_UPSTREAM_REQUIRED) - set(_UPSTREAM_DEFAULTS))
        if unknown:  # a misspelt key would otherwise be a silently ignored setting
            raise ConfigError(f"{label} has unknown keys: {', '.join(unknown)}.")
        provider = {**_UPSTREAM_DEFAULTS, **entry}
        for key in (*_UPSTREAM_REQUIRED, *_UPSTREAM_DEFAULTS):
            if not isinstance(provider.get(key), str) or not provider[key].strip():
                raise ConfigError(f"{label} needs `{key}` as a non-empty string.")
        if not UPSTREAM_NAME.match(provider["name"]):
            raise ConfigError(f"{label}: `name` must match [a-z0-9-]{{1,32}} (it is part of a URL).")
        if provider["name"] in names:
            raise ConfigError(f"{label} is named twice.")
        names.add(provider["name"])
        if "openid" not in provider["scopes"].split():
            raise ConfigError(f"{label}: `scopes` must include openid.")
        issuer = provider["issuer"]
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"{label}: `issuer` must be an absolute URL without query or fragment, got {issuer!r}.")
        if parts.scheme != "https" and not relaxed and not is_loopback_host(parts.hostname):
            raise ConfigError(f"{label}: `issuer` must be an https URL in production (got {issuer!r}); plain "
                              "http is allowed only on a loopback host or under --debug.")
        providers.append(provider)
    return providers


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


#: The generated part of docs/configuration.md lies between these two lines.
REFERENCE_BEGIN = "<!-- settings: generated from authserver/config.py by `make docs`; edit the #: comments there -->"
REFERENCE_END = "<!-- end of settings -->"


def settings_reference() -> str:
    """The settings table of docs/configuration.md, made from the ``#:`` comments in Defaults."""
    import ast
    import inspect
    import json

    source, first = inspect.getsourcelines(Defaults)
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    for node in ast.parse("".join(source)).body[0].body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if not isinstance(target, ast.Name) or not target.id.isupper():
            continue
        doc = []
        line = node.lineno - 2  # the source line above the assignment, 0-based
        while line >= 0 and source[line].strip().startswith("#:"):
            doc.insert(0, source[line].strip()[2:].strip())
            line -= 1
        if not doc:
            raise ValueError(f"Defaults.{target.id} (line {first + node.lineno - 1}) has no #: comment")
        shown = None
        if doc[0].startswith("default:"):
            shown = doc.pop(0)[len("default:"):].strip()
        if shown is None:
            value = getattr(Defaults, target.id)
            if value is None:
                shown = "none"
            elif isinstance(value, bool):
                shown = f"`{str(value).lower()}`"
            elif isinstance(value, (list, dict)):
                shown = f"`{json.dumps(value)}`"
            else:
                shown = f"`{value}`"
        rows.append(f"| `AUTHSERVER_{target.id}` | {shown} | {' '.join(doc)} |")
    return "\n".join(rows) + "\n"


def write_reference(path: str) -> bool:
    """Rewrite the generated settings table in the Markdown file at `path`; True if it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, begin, rest = text.partition(REFERENCE_BEGIN)
    _, end, tail = rest.partition(REFERENCE_END)
    if not (begin and end):
        raise ValueError(f"{path} lacks the generated-settings markers")
    new = f"{head}{begin}\n{settings_reference()}{end}{tail}"
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text
