"""Bearer tokens: checked by authserver's introspection (RFC 7662), or in `jwt` mode verified locally
as RFC 9068 JWTs against authserver's JWKS; answered per RFC 6750 / RFC 9728.

The token is sent to authserver's introspection endpoint and nowhere else: it is never passed on
to another service, never logged, and cached only under its SHA-256. In `jwt` mode a read costs no
call to authserver (a revoked grant can read until its token expires, 5 minutes at most), and a
write is still introspected first, so a revoked grant cannot write."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import httpx2
import jwt
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from .catalog import OBJECT_TYPES, parse_record_id
from .config import Settings
from .dsl import referenced_types

log = logging.getLogger("crm_mcp.auth")

NOTES_READ = "crm.objects.notes.read"
NOTES_WRITE = "crm.objects.notes.write"
#: Exactly the scopes the tools use (required_scopes): advertised in this server's metadata, asked
#: for in a 401, and the demo resource server's default scopes (authserver/cli.py).
SCOPES_SUPPORTED = [f"crm.objects.{t}.read" for t in OBJECT_TYPES] + [NOTES_READ, NOTES_WRITE]
#: Largest JSON-RPC request body accepted on the MCP endpoint.
MAX_BODY = 1024 * 1024


def read_scope(object_type: str) -> str:
    return f"crm.objects.{object_type}.read"


def _reads(*object_types) -> list[str]:
    return [read_scope(t) for t in dict.fromkeys(object_types) if t in OBJECT_TYPES]


def is_write(tool: str) -> bool:
    """Whether a tool changes data: in jwt mode it is introspected first, whatever the JWT says."""
    return NOTES_WRITE in required_scopes(tool, {})


def required_scopes(tool: str, arguments: dict | None) -> list[str]:
    """The scopes a tool call needs: the one rule used both before the call (403) and inside it.
    Reading a type needs its read scope, also when a search only filters by its records."""
    arguments = arguments if isinstance(arguments, dict) else {}
    if tool == "search":
        return _reads(*referenced_types(str(arguments.get("query") or "")))
    if tool in ("fetch", "get_associations"):  # the id read exactly as the tool reads it
        object_type = (parse_record_id(arguments.get("id")) or ("",))[0]
        return _reads(object_type, arguments.get("to_object_type"))
    if tool in ("list_properties", "search_crm_objects"):
        return _reads(arguments.get("object_type"))
    if tool == "get_crm_object":
        return _reads(arguments.get("object_type")) + [NOTES_READ]
    if tool == "create_note":
        return [NOTES_WRITE]
    return []


class IntrospectionVerifier:
    """An mcp TokenVerifier that asks authserver, or in `jwt` mode verifies locally (JWTVerifier)
    and asks only before a write (`introspect`). Positive introspection answers are cached for at
    most `cache_seconds` (≤ 5 s) and never past the token's own expiry; negative ones are not
    cached, so a token that was just issued works at once."""

    def __init__(self, settings: Settings, client: httpx2.AsyncClient | None = None):
        self.settings = settings
        self._client = client or httpx2.AsyncClient(timeout=10.0)
        self._cache: dict[str, tuple[float, AccessToken]] = {}
        self.local = JWTVerifier(settings, self._client) if settings.token_mode == "jwt" else None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def verify_token(self, token: str) -> AccessToken | None:
        if self.local is not None:
            return await self.local.verify_token(token)
        return await self.introspect(token)

    async def introspect(self, token: str, cached: bool = True) -> AccessToken | None:
        """authserver's live answer (RFC 7662), from the short positive cache unless `cached` is
        false (a write in jwt mode asks afresh)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        hit = self._cache.get(key) if cached else None
        if hit and hit[0] > now:
            return hit[1]
        self._cache.pop(key, None)
        if len(token) > 4096:
            return None
        try:
            response = await self._client.post(
                self.settings.introspection_endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(self.settings.client_id, self.settings.client_secret),
                headers={"Accept": "application/json"},
            )
        except httpx2.HTTPError as exc:
            log.warning("introspection failed: %s", type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning("introspection answered HTTP %s (check CRM_MCP_CLIENT_ID/SECRET)", response.status_code)
            return None
        access = self._access_token(token, response.json())
        if access is None:
            return None
        if self.settings.cache_seconds > 0:
            if len(self._cache) > 10000:
                self._cache.clear()
            until = min(now + self.settings.cache_seconds, float(access.expires_at or now))
            self._cache[key] = (until, access)
        return access

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken | None:
        if claims.get("active") is not True:
            return None
        return access_token(self.settings, token, claims)


class JWTVerifier:
    """Verifies RFC 9068 JWT access tokens locally: signature with a key of authserver's JWKS (found
    through its metadata's jwks_uri), `typ` at+jwt, `iss`, `aud` (this server), `exp`; scopes are
    checked per tool by BearerGate. The JWKS is cached and fetched again when a token names a key
    it lacks, at most once per `jwks_refetch_seconds` (authserver publishes a new key well before it
    signs with it, so this is rare)."""

    ALGORITHMS = ("ES256", "RS256")

    def __init__(self, settings: Settings, client: httpx2.AsyncClient):
        self.settings = settings
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > 4096:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            return None  # RFC 9068 §4: another kind of JWT, even one signed by authserver
        key = await self._key(header.get("kid"))
        if key is None:
            return None
        try:
            claims = jwt.decode(token, key.key, algorithms=list(self.ALGORITHMS), audience=self.settings.resource,
                                issuer=self.settings.issuer, options={"require": ["exp", "iat", "iss", "aud"]})
        except jwt.InvalidTokenError as exc:
            log.info("JWT refused: %s", type(exc).__name__)
            return None
        return access_token(self.settings, token, claims)

    async def _key(self, kid) -> jwt.PyJWK | None:
        if not isinstance(kid, str):
            return None
        if kid not in self._keys and self._may_fetch():
            await self._fetch()
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.settings.jwks_refetch_seconds

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            metadata = (await self._client.get(self.settings.metadata_endpoint)).json()
            jwks = (await self._client.get(metadata["jwks_uri"])).json()
            keys = jwt.PyJWKSet.from_dict(jwks)
        except (httpx2.HTTPError, ValueError, KeyError, TypeError, jwt.PyJWKSetError) as exc:
            log.warning("JWKS fetch failed: %s", type(exc).__name__)
            return
        self._keys = {k.key_id: k for k in keys.keys if k.key_id}


def access_token(settings: Settings, token: str, claims: dict[str, Any]) -> AccessToken | None:
    """The verified token as the MCP tools see it, from an introspection answer or JWT claims (the
    same names): refused unless it is for this server, from this issuer, unexpired, and names a hub
    and a client."""
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if settings.resource not in audiences:
        log.warning("token audience is not this server")
        return None
    if claims.get("iss") not in (None, settings.issuer):
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= time.time():
        return None
    if not isinstance(claims.get("hub_id"), int) or not isinstance(claims.get("client_id"), str):
        return None
    return AccessToken(
        token=token,
        client_id=claims["client_id"],
        scopes=str(claims.get("scope", "")).split(),
        expires_at=exp,
        resource=settings.resource,
        subject=str(claims.get("sub")) if claims.get("sub") is not None else None,
        claims={"iss": claims.get("iss"), "hub_id": claims["hub_id"], "user_id": claims.get("user_id")},
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BearerGate:
    """ASGI middleware in front of the MCP endpoint: serves the protected resource metadata,
    answers 401 without a valid token and 403 `insufficient_scope` for a tool call the token's
    scopes don't allow, and hands the verified token to the tools (mcp's auth context)."""

    def __init__(self, app: ASGIApp, settings: Settings, verifier: IntrospectionVerifier):
        self.settings = settings
        self.verifier = verifier
        self.inner = AuthContextMiddleware(app)
        path = settings.mcp_path if settings.mcp_path != "/" else ""
        self.metadata_paths = {"/.well-known/oauth-protected-resource" + path, "/.well-known/oauth-protected-resource"}
        self.metadata = json.dumps({
            "resource": settings.resource,
            "authorization_servers": [settings.issuer],
            "scopes_supported": SCOPES_SUPPORTED,
            "bearer_methods_supported": ["header"],
            "resource_name": "Example CRM MCP server",
        }).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path in self.metadata_paths:
            if method == "OPTIONS":
                await self._send(send, 204, b"", cors=True)
            else:
                await self._send(send, 200, self.metadata, cors=True)
            return
        if path.rstrip("/") != self.settings.mcp_path.rstrip("/"):
            await self.inner(scope, receive, send)
            return
        if method == "OPTIONS":  # CORS preflight from browser clients (MCP Inspector)
            await self._send(send, 204, b"", cors=True)
            return

        token = _bearer(scope)
        access = await self.verifier.verify_token(token) if token else None
        if access is None:
            await self._challenge(send, 401, "invalid_token" if token else None,
                                  "The access token is missing, expired or revoked." if token else "Authentication required.",
                                  SCOPES_SUPPORTED)
            return

        body = b""
        if method == "POST":
            body = await _read_body(receive)
            if body is None:
                await self._send(send, 413, json.dumps({"error": "invalid_request",
                                                         "error_description": "Request body too large."}).encode())
                return
            if await self._insufficient_scope(send, body, access):
                return
            if self.verifier.local is not None and _writes(body):
                # jwt mode: the JWT may outlive its grant by up to its lifetime; a write needs the
                # live answer, with the scopes the user has now.
                live = await self.verifier.introspect(token, cached=False)
                if live is None:
                    await self._challenge(send, 401, "invalid_token", "The access token is expired or revoked.",
                                          SCOPES_SUPPORTED)
                    return
                if await self._insufficient_scope(send, body, live):
                    return

        scope["user"] = AuthenticatedUser(access)
        scope["auth"] = AuthCredentials(access.scopes)
        await self.inner(scope, _replay(body, receive), send)

    async def _insufficient_scope(self, send: Send, body: bytes, access: AccessToken) -> bool:
        """Answer 403 `insufficient_scope` when the tool calls in `body` need scopes `access` lacks."""
        missing = _missing_scopes(body, set(access.scopes))
        if missing:
            await self._challenge(send, 403, "insufficient_scope", f"This tool needs the scope {' '.join(missing)}.",
                                  missing)
        return bool(missing)

    async def _challenge(self, send: Send, status: int, error: str | None, description: str, scopes: list[str]):
        parts = [f"resource_metadata={_quote(self.settings.metadata_url)}", f"scope={_quote(' '.join(scopes))}"]
        if error:
            parts = [f"error={_quote(error)}", f"error_description={_quote(description)}"] + parts
        body = {"error": error or "invalid_token", "error_description": description}
        await self._send(send, status, json.dumps(body).encode(),
                         extra=[(b"www-authenticate", ("Bearer " + ", ".join(parts)).encode())], cors=True)

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, extra=(), cors: bool = False) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]
        if cors:
            headers += [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
                (b"access-control-allow-headers",
                 b"authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id"),
                (b"access-control-expose-headers", b"www-authenticate, mcp-session-id"),
            ]
        await send({"type": "http.response.start", "status": status, "headers": headers + list(extra)})
        await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            raw = value.decode("latin-1")
            if raw[:7].lower() == "bearer " and raw[7:].strip():
                return raw[7:].strip()
            return None
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _tool_calls(body: bytes) -> list[dict]:
    """The params of the tool calls in a JSON-RPC body (none if it is not JSON-RPC: the MCP
    transport answers that with a proper error)."""
    try:
        message = json.loads(body)
    except ValueError:
        return []
    messages = message if isinstance(message, list) else [message]
    return [item["params"] for item in messages
            if isinstance(item, dict) and item.get("method") == "tools/call" and isinstance(item.get("params"), dict)]


def _writes(body: bytes) -> bool:
    return any(is_write(str(params.get("name"))) for params in _tool_calls(body))


def _missing_scopes(body: bytes, granted: set[str]) -> list[str]:
    """Scopes needed by the tool calls in this JSON-RPC body that the token lacks."""
    missing: list[str] = []
    for params in _tool_calls(body):
        for needed in required_scopes(str(params.get("name")), params.get("arguments")):
            if needed not in granted and needed not in missing:
                missing.append(needed)
    return missing
