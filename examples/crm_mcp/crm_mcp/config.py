"""Settings from CRM_MCP_* environment variables, read once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Longest time a positive introspection answer may be reused: a revoked token stops working
#: within this many seconds at most.
MAX_CACHE_SECONDS = 5.0
#: CRM_MCP_TOKEN_MODE: ask authserver about every token (`introspect`), or verify JWT access tokens
#: locally against its JWKS and ask only before a write (`jwt`; the resource server must be set to
#: issue them: `flask --app wsgi resources set-format URI jwt`).
TOKEN_MODES = ("introspect", "jwt")


class ConfigError(ValueError):
    """A setting that cannot be used (the message names the variable)."""


@dataclass(frozen=True)
class Settings:
    issuer: str
    resource: str
    client_id: str
    client_secret: str
    database: str
    host: str
    port: int
    cache_seconds: float
    token_mode: str = "introspect"
    #: In jwt mode, a token signed with a key not in the cached JWKS makes it fetch the JWKS again,
    #: at most this often (so a flood of made-up kids cannot make it hammer authserver).
    jwks_refetch_seconds: float = 30.0

    @property
    def mcp_path(self) -> str:
        return urlsplit(self.resource).path or "/"

    @property
    def metadata_url(self) -> str:
        """RFC 9728 §3.1: the well-known segment goes between the host and the resource's path."""
        parts = urlsplit(self.resource)
        path = parts.path if parts.path not in ("", "/") else ""
        return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{path}"

    @property
    def record_url_base(self) -> str:
        """Stable record addresses: <origin>/records/<hub>/<type>/<id> (the `url` of search and fetch)."""
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}/records"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/oauth/introspect"

    @property
    def metadata_endpoint(self) -> str:
        """RFC 8414 §3: where the jwks_uri is found."""
        return f"{self.issuer}/.well-known/oauth-authorization-server"


def from_env(environ=None) -> Settings:
    env = os.environ if environ is None else environ
    resource = env.get("CRM_MCP_RESOURCE", "http://127.0.0.1:8001/mcp")
    parts = urlsplit(resource)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ConfigError(f"CRM_MCP_RESOURCE must be an absolute http(s) URL, got {resource!r}.")
    issuer = env.get("CRM_MCP_ISSUER", "http://127.0.0.1:5000")
    if urlsplit(issuer).scheme not in ("http", "https") or urlsplit(issuer).path not in ("",):
        raise ConfigError(f"CRM_MCP_ISSUER must be authserver's issuer, e.g. http://127.0.0.1:5000, got {issuer!r}.")
    client_id = env.get("CRM_MCP_CLIENT_ID", "")
    client_secret = env.get("CRM_MCP_CLIENT_SECRET", "")
    if not client_id or not client_secret:
        raise ConfigError(
            "Set CRM_MCP_CLIENT_ID and CRM_MCP_CLIENT_SECRET to the resource server's introspection "
            "credentials (printed by `flask --app wsgi demo seed` or `resources create`)."
        )
    token_mode = env.get("CRM_MCP_TOKEN_MODE", "introspect")
    if token_mode not in TOKEN_MODES:
        raise ConfigError(f"CRM_MCP_TOKEN_MODE must be one of {', '.join(TOKEN_MODES)}, got {token_mode!r}.")
    try:
        port = int(env.get("CRM_MCP_PORT", parts.port or 8001))
        cache_seconds = float(env.get("CRM_MCP_CACHE_SECONDS", MAX_CACHE_SECONDS))
        jwks_refetch_seconds = float(env.get("CRM_MCP_JWKS_REFETCH_SECONDS", 30.0))
    except ValueError as exc:
        raise ConfigError(
            f"CRM_MCP_PORT, CRM_MCP_CACHE_SECONDS and CRM_MCP_JWKS_REFETCH_SECONDS must be numbers: {exc}"
        ) from exc
    return Settings(
        issuer=issuer,
        resource=resource.rstrip("/") if parts.path not in ("", "/") else resource,
        client_id=client_id,
        client_secret=client_secret,
        database=env.get("CRM_MCP_DATABASE", "crm_mcp.sqlite3"),
        host=env.get("CRM_MCP_HOST", parts.hostname or "127.0.0.1"),
        port=port,
        cache_seconds=max(0.0, min(cache_seconds, MAX_CACHE_SECONDS)),
        token_mode=token_mode,
        jwks_refetch_seconds=max(0.0, jwks_refetch_seconds),
    )
