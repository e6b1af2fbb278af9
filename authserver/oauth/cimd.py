"""Client ID Metadata Documents: a client_id that is an https URL names a JSON document describing
the client (draft-ietf-oauth-client-id-metadata-document; the MCP authorization specification's
recommended way for clients to identify themselves).

The document is fetched with the SSRF-safe fetcher, validated like a registration, and mirrored
into a `Client` row (registration "cimd") so that grants, codes and tokens reference it like any
other client. Documents (and JWKS named by `jwks_uri`) are cached in the database, shared by every
instance, for as long as the origin's cache headers allow within the operator's bounds.

The mirror and the cache are written through the store in the request's transaction, which the
view commits; a refusal or a failed fetch is audited apart from it (audit.record_apart), so the
operator sees it whatever becomes of the request.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import InvalidClientError
from flask import current_app, g, has_request_context
from flask_limiter.util import get_remote_address
from limits import parse

from .. import audit, store
from ..extensions import limiter
from ..models import Client
from ..timeutil import to_epoch, utcnow
from .errors import safe_description
from .fetch import FetchError, FetchPolicy, check_url, fetch_json
from .registration import (
    GRANT_TYPES,
    KEY_METHOD,
    RESPONSE_TYPES,
    redirect_uri_problem,
    redirect_uris_problem,
    token_endpoint_auth_methods,
)

#: Token endpoint authentication methods a CIMD client can use, strongest first. There is no
#: shared secret with a document, so the secret methods are not possible.
CIMD_AUTH_METHODS = (KEY_METHOD, "none")
#: Members copied from the document into the client row (what the pages and grants read).
_KEPT_MEMBERS = ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id",
                 "software_version", "jwks", "jwks_uri", "redirect_uris", "grant_types", "response_types")


def is_url_client_id(client_id: str) -> bool:
    """An https URL with a path is a CIMD client_id; anything else is looked up as registered."""
    if not client_id.startswith("https://"):
        return False
    return urlsplit(client_id).path not in ("", "/")


def _policy() -> FetchPolicy:
    return FetchPolicy.from_config(current_app.config)


def _domain_problem(url: str) -> str | None:
    # `client.test.` is the same DNS name as `client.test` (the root label written out), in the
    # URL and in the operator's lists alike: compare without trailing dots.
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    config = current_app.config

    def matches(domains) -> bool:
        names = [d.lower().strip(".") for d in domains]
        return any(host == name or host.endswith("." + name) for name in names if name)

    if matches(config["CIMD_DENIED_DOMAINS"]):
        return f"client_id host {host} is not accepted by this server."
    if config["CIMD_ALLOWED_DOMAINS"] and not matches(config["CIMD_ALLOWED_DOMAINS"]):
        return f"client_id host {host} is not on this server's list of accepted client domains."
    return None


def _freshness(max_age: int | None) -> int:
    config = current_app.config
    seconds = config["CIMD_CACHE_DEFAULT_SECONDS"] if max_age is None else max_age
    return max(int(config["CIMD_CACHE_MIN_SECONDS"]), min(int(seconds), int(config["CIMD_CACHE_MAX_SECONDS"])))


def _count_fetch() -> None:
    """Count an outbound fetch against the caller's address (shared through Redis when set)."""
    if not has_request_context():
        return
    limit = parse(current_app.config["CIMD_FETCH_RATE_LIMIT"])
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or "authserver"
    if not limiter.limiter.hit(limit, prefix, "cimd-fetch", get_remote_address()):
        raise FetchError("too many metadata documents fetched for this address; try again in a minute")


def get_document(url: str, kind: str) -> dict:
    """The document at `url`: the cached copy while fresh, else a new fetch; a stale copy if the
    origin fails. Raises FetchError when there is nothing usable."""
    policy = _policy()
    check_url(url, policy)  # before the URL is stored or audited
    now = utcnow()
    cached = store.get_remote_document(url)
    if cached is not None and cached.expires_at > now:
        return cached.document
    try:
        _count_fetch()
        fetched = fetch_json(url, policy)
    except FetchError as error:
        usable = cached is not None and cached.stale_until > now
        audit.record_apart("cimd.fetch_failed", client=url if kind == "client" else None, url=url, kind=kind,
                           reason=str(error), served_stale=usable,
                           **({"detail": error.detail} if error.detail else {}))
        if usable:
            return cached.document
        raise
    expires = now + timedelta(seconds=_freshness(fetched.max_age))
    store.save_remote_document(
        url, cached, kind=kind, document=fetched.document, fetched_at=now, expires_at=expires,
        stale_until=expires + timedelta(seconds=int(current_app.config["CIMD_STALE_SECONDS"])),
    )
    audit.record("cimd.fetched", client=url if kind == "client" else None, url=url, kind=kind,
                 fresh_for=to_epoch(expires) - to_epoch(now))
    return fetched.document


def choose_auth_method(document: dict) -> str:
    """The strongest method both the document and this server support."""
    declared = document.get("token_endpoint_auth_methods_supported")
    if declared is None:
        declared = [document.get("token_endpoint_auth_method") or "none"]
    elif not isinstance(declared, list):
        raise ValueError("token_endpoint_auth_methods_supported must be an array")
    elif document.get("token_endpoint_auth_method"):
        declared = [document["token_endpoint_auth_method"], *declared]
    ours = [m for m in CIMD_AUTH_METHODS if m in token_endpoint_auth_methods()]
    for method in ours:
        if method in declared:
            if method == KEY_METHOD and not (document.get("jwks") or document.get("jwks_uri")):
                continue
            return method
    # Our own words only: the declared methods are the document author's text.
    raise ValueError(
        "the document allows token endpoint authentication only by methods this server does not "
        f"accept; this server accepts {' or '.join(ours)} for such clients"
        + (" (private_key_jwt needs jwks or jwks_uri)" if KEY_METHOD in declared else "")
    )


def validate_document(url: str, document: dict) -> dict:
    """The client metadata to store, or ValueError saying what is wrong with the document, in
    our own words: its messages reach people's pages, so they never quote the document."""
    if document.get("client_id") != url:
        raise ValueError("its client_id is not the URL it was fetched from")
    name = document.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("client_name is missing")
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise ValueError("redirect_uris is missing or not an array of strings")
    if redirect_uris_problem(uris):
        raise ValueError(f"redirect_uris: {_redirect_uris_problem(uris)}")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise ValueError("a metadata document must not contain a client secret")
    grant_types = document.get("grant_types", ["authorization_code"])
    if not isinstance(grant_types, list) or "authorization_code" not in grant_types:
        raise ValueError("grant_types must include authorization_code")
    response_types = document.get("response_types", ["code"])
    if not isinstance(response_types, list) or not set(response_types) <= set(RESPONSE_TYPES):
        raise ValueError("response_types may only contain code")
    if "jwks" in document and not isinstance(document["jwks"], dict):
        raise ValueError("jwks must be a JSON object")
    if "jwks_uri" in document:
        try:
            check_url(str(document["jwks_uri"]), _policy())
        except FetchError:
            raise ValueError("jwks_uri must be an https URL on port 443, without user name or fragment") from None
    metadata = {k: document[k] for k in _KEPT_MEMBERS if k in document}
    metadata["grant_types"] = [g for g in grant_types if g in GRANT_TYPES]
    metadata["response_types"] = list(RESPONSE_TYPES)
    metadata["token_endpoint_auth_method"] = choose_auth_method(document)
    return metadata


def _redirect_uris_problem(uris: list[str]) -> str:
    """What is wrong with a document's redirect URIs, naming the bad one by position (the
    registration policy's message quotes the URI itself)."""
    for position, uri in enumerate(uris):
        problem = redirect_uri_problem(uri)
        if problem:
            return f"the one at position {position + 1}: {problem}"
    return redirect_uris_problem(uris) or ""


def _invalid(url: str, reason: str) -> InvalidClientError:
    return InvalidClientError(description=safe_description(f"The client metadata document at {url} {reason}.", 400))


def load_client(client_id: str) -> Client:
    """The Client row for a CIMD client_id, created or refreshed from its (cached) document.
    Raises InvalidClientError with a description that says what was wrong. Authlib may ask for
    the client more than once in a request (validation, then the response): load it once."""
    if not has_request_context():
        return _load_client(client_id)
    loaded = g.setdefault("cimd_clients", {})
    if client_id not in loaded:
        loaded[client_id] = _load_client(client_id)
    return loaded[client_id]


def _load_client(client_id: str) -> Client:
    if not current_app.config["CIMD_ENABLED"]:
        raise InvalidClientError(description="This server does not accept URL client_ids (metadata documents).")
    try:
        check_url(client_id, _policy())
    except FetchError as error:
        raise InvalidClientError(description=safe_description(f"The client_id URL is not acceptable: {error}", 400)) from None
    problem = _domain_problem(client_id)
    if problem:
        audit.record_apart("cimd.refused", client=client_id, reason=problem)
        raise InvalidClientError(description=problem)
    try:
        document = get_document(client_id, "client")
    except FetchError as error:
        raise _invalid(client_id, f"could not be fetched: {error}") from None
    try:
        metadata = validate_document(client_id, document)
    except ValueError as error:
        audit.record_apart("cimd.invalid", client=client_id, reason=str(error))
        raise _invalid(client_id, f"is not valid: {error}") from None
    return store.save_document_client(client_id, metadata)
