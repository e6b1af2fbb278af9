"""Authorization-code and refresh-token grants: hashed storage, atomic single use, idempotent
retries inside a grace window, reuse detection, and live re-intersection with permissions."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749 import grants
from flask import current_app

from .. import accounts, audit, store
from ..extensions import db
from ..metrics import TOKENS_ISSUED
from ..models import Grant, Hub, User
from ..scopes import IGNORED_SCOPES
from ..secrets import AUTHORIZATION_CODE_PREFIX, new_credential, sha256_hex
from ..timeutil import utcnow
from .errors import safe_description
from .resource import check_refresh_resource
from .tokens import seal, unseal

log = logging.getLogger(__name__)

#: Client authentication accepted at the token endpoint (also advertised in the metadata).
TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


@dataclass
class Decision:
    """What the user approved on the consent page (passed to Authlib as `grant_user`)."""

    user: User
    hub: Hub
    grant: Grant
    scope: str


class Exchanged:
    """A code or refresh token as the token endpoint reads it (store.get_code_for_exchange,
    store.get_refresh_for_exchange): its own columns plus its grant's consent and state and the
    user's live membership, read in one statement. The ORM rows are loaded only on rare paths."""

    def __init__(self, row):
        self.__dict__.update(row._asdict())

    @property
    def grant(self) -> Grant:
        """The grant as an ORM row (replay and reuse handling revoke through it)."""
        return db.session.get(Grant, self.grant_id)

    @property
    def allowed(self) -> frozenset[str]:
        """What the user may do in the grant's hub right now (accounts.permissions_from)."""
        return accounts.permissions_from(self.user_disabled, self.role, self.granted, self.denied)


class ExchangedCode(Exchanged, AuthorizationCodeMixin):
    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri if self.redirect_uri_sent else None

    def get_scope(self) -> str:
        return self.scope


class ExchangedRefreshToken(Exchanged):
    def check_client(self, client) -> bool:
        return self.client_pk == client.id

    def get_scope(self) -> str:
        return self.scope

    def get_authorized_scope(self) -> str:
        """The scope of the authorization this family descends from (older rows: their own)."""
        return self.authorized_scope if self.authorized_scope is not None else self.scope

    def is_refresh_expired(self) -> bool:
        return self.refresh_expires_at is None or self.refresh_expires_at <= utcnow()


def live_scope(exchanged: Exchanged, wanted: str) -> str:
    """`wanted` ∩ the grant's consented scopes ∩ what the user may do in the hub right now.

    Raises invalid_grant when the user has left the hub (or is disabled) or nothing is left."""
    allowed = exchanged.allowed
    if not allowed:
        raise InvalidGrantError("The user no longer has access to this hub.")
    consented = exchanged.grant_scope.split()
    scopes = [s for s in wanted.split() if s in consented and s in allowed]
    if not scopes:
        raise InvalidGrantError("The user no longer has any of the granted permissions in this hub.")
    return " ".join(scopes)


class ReplayMixin(ABC):
    """Shared by both grants: answers an identical retry from the encrypted replay cache."""

    REPLAY_KIND: str

    @abstractmethod
    def replay_context(self) -> list[str]:
        """What binds a retry to its request (each grant names its own parameters)."""

    def cached_response(self, credential: str, key_hash: str) -> dict | None:
        """The answer to an identical earlier request, while what it hands out is still live:
        a grant revoked (or a family ended) inside the grace window is not undone by a retry."""
        entry = store.get_replay(key_hash)
        if entry is None:
            return None
        cached = unseal(credential, self.replay_context(), entry.ciphertext)
        if cached is None:
            return None
        issued = store.get_token_by_access_hash(sha256_hex(cached["access_token"]))
        if issued is None or issued.revoked_at is not None or issued.grant.revoked_at is not None:
            return None
        return cached

    def remember_response(self, credential: str, key_hash: str, token: dict) -> None:
        grace = int(current_app.config["REPLAY_GRACE_SECONDS"])
        if grace <= 0:
            return
        store.save_replay(
            key_hash,
            self.REPLAY_KIND,
            seal(credential, self.replay_context(), token),
            utcnow() + timedelta(seconds=grace),
        )

    def issue(self, exchanged: Exchanged, scope: str, *, include_refresh_token: bool) -> dict:
        token = self.generate_token(scope=scope, include_refresh_token=include_refresh_token)
        self.save_token(token)
        store.touch_usage(self.request.client, exchanged.grant_id, exchanged.grant_last_used_at)
        TOKENS_ISSUED.labels(self.GRANT_TYPE).inc()
        audit.record("token.issued", user=exchanged.user_id, hub=exchanged.hub_public_id, client=self.request.client,
                     grant_type=self.GRANT_TYPE, scope=scope)
        return token


class AuthorizationCodeGrant(ReplayMixin, grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with OAuth 2.1 rules; PKCE and resource are extensions registered with it."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS
    REPLAY_KIND = "code"

    def replay_context(self) -> list[str]:
        form = self.request.form
        return [
            "authorization_code",
            self.request.client.client_id,
            form.get("redirect_uri", ""),
            form.get("code_verifier", ""),
            form.get("resource", ""),
        ]

    # --- authorization endpoint ---------------------------------------------------------------
    #: The redirect URI a successful validation returned (this grant object lives for one request).
    validated_redirect_uri: str | None = None

    def validate_authorization_request(self):
        """RFC 6749 §4.1.1 validation (client, redirect URI, scope, PKCE, resource), once per HTTP
        request. Authlib validates in get_consent_grant and again in create_authorization_response,
        even when handed the grant it validated (authlib 1.9), which reads the client and the
        resource a second time. The request cannot change in between, and the grant object does not
        outlive it: the second call returns the first result."""
        if self.validated_redirect_uri is None:
            self.validated_redirect_uri = super().validate_authorization_request()
        return self.validated_redirect_uri

    def generate_authorization_code(self) -> str:
        return new_credential(AUTHORIZATION_CODE_PREFIX)

    def save_authorization_code(self, code: str, request) -> None:
        decision: Decision = request.user
        lifetime = int(current_app.config["AUTHORIZATION_CODE_LIFETIME"])
        store.save_authorization_code(
            code_hash=sha256_hex(code),
            grant=decision.grant,
            client=request.client,
            redirect_uri=self.redirect_uri,
            redirect_uri_sent=bool(request.payload.redirect_uri),
            scope=decision.scope,
            code_challenge=request.payload.data["code_challenge"],
            code_challenge_method=request.payload.data["code_challenge_method"],
            expires_at=utcnow() + timedelta(seconds=lifetime),
        )

    # --- token endpoint -----------------------------------------------------------------------
    def query_authorization_code(self, code: str, client) -> ExchangedCode | None:
        """Find the code by hash; it must belong to this client (RFC 6749 §4.1.3)."""
        self.request.client = client
        found = store.get_code_for_exchange(sha256_hex(code))
        if found is None or found.client_pk != client.id:
            return None
        row = ExchangedCode(found)
        self.request.replayed_response = None
        if row.consumed_at is not None:
            cached = self.cached_response(code, row.code_hash)
            if cached is not None:
                # An identical retry inside the grace window: the same answer again.
                self.request.replayed_response = cached
                return row
            revoked = store.revoke_code_family(row)
            audit.record("code.replayed", user=row.user_id, hub=row.hub_public_id, client=client, revoked=revoked)
            return None
        if row.expires_at <= utcnow():
            return None
        return row

    def validate_token_request(self):
        super().validate_token_request()
        code = self.request.authorization_code
        # RFC 6749 §4.1.3: redirect_uri is required when the authorization request carried it;
        # Authlib checks equality, we also refuse a redirect_uri the request did not have.
        sent = self.request.payload.redirect_uri
        if not code.redirect_uri_sent and sent and sent != code.redirect_uri:
            raise InvalidGrantError("Invalid 'redirect_uri' in request.")

    def create_token_response(self):
        code: ExchangedCode = self.request.authorization_code
        presented = self.request.form["code"]
        if self.request.replayed_response is not None:
            return 200, self.request.replayed_response, self.TOKEN_RESPONSE_HEADER
        if not store.consume_authorization_code(code):
            # Lost a race with a concurrent redemption of the same code (now committed).
            cached = self.cached_response(presented, code.code_hash)
            if cached is not None:
                return 200, cached, self.TOKEN_RESPONSE_HEADER
            store.revoke_code_family(code)
            raise InvalidGrantError("The authorization code has already been used.")
        if code.grant_revoked_at is not None:
            raise InvalidGrantError("The authorization has been revoked.")
        scope = live_scope(code, code.scope)
        token = self.issue(code, scope, include_refresh_token=self.request.client.check_grant_type("refresh_token"))
        self.remember_response(presented, code.code_hash, token)
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def authenticate_user(self, authorization_code: ExchangedCode) -> User:
        return db.session.get(User, authorization_code.user_id)

    def delete_authorization_code(self, authorization_code):
        """Used codes are kept (marked consumed), never deleted, so that replay is detected."""


class RefreshTokenGrant(ReplayMixin, grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation on every use (OAuth 2.1 §4.3.1) and reuse detection."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    REPLAY_KIND = "refresh"

    def replay_context(self) -> list[str]:
        form = self.request.form
        return [
            "refresh_token",
            self.request.client.client_id,
            form.get("scope", ""),
            form.get("resource", ""),
        ]

    def authenticate_refresh_token(self, refresh_token: str) -> ExchangedRefreshToken | None:
        found = store.get_refresh_for_exchange(sha256_hex(refresh_token))
        self.request.replayed_response = None
        if found is None or found.client_pk != self.request.client.id:
            return None
        row = ExchangedRefreshToken(found)
        if row.rotated_at is not None:
            cached = self.cached_response(refresh_token, row.refresh_token_hash)
            if cached is not None:
                self.request.replayed_response = cached
                return row
            grace = timedelta(seconds=int(current_app.config["REPLAY_GRACE_SECONDS"]))
            if utcnow() - row.rotated_at > grace:
                # Reuse of a rotated refresh token: assume it was stolen and end the grant.
                audit.record("token.refresh_reuse", user=row.user_id, hub=row.hub_public_id, client=self.request.client)
                store.revoke_grant(row.grant, reason="refresh_token_reuse")
            return None
        if row.revoked_at is not None or row.is_refresh_expired() or row.grant_revoked_at is not None:
            return None
        return row

    def _validate_token_scope(self, token: ExchangedRefreshToken):
        """A requested scope can only narrow what this token's authorization granted (RFC 6749
        §6): it is intersected with it, never widened. Deliberately lenient: clients (Authlib's
        among them) resend their original request scope at refresh, including scopes the user
        unticked, and must not be logged out for it. Nothing in common is `invalid_scope`."""
        scope = self.request.payload.scope
        if not scope:
            return
        requested = set(scope.split()) - IGNORED_SCOPES
        if not requested & set(token.get_authorized_scope().split()):
            raise InvalidScopeError("None of the requested scopes was granted.")

    def validate_token_request(self):
        super().validate_token_request()
        token = self.request.refresh_token
        if self.request.replayed_response is None:
            check_refresh_resource(self.request.payload.datalist, token)

    def create_token_response(self):
        old: ExchangedRefreshToken = self.request.refresh_token
        presented = self.request.form["refresh_token"]
        if self.request.replayed_response is not None:
            return 200, self.request.replayed_response, self.TOKEN_RESPONSE_HEADER
        if not store.consume_refresh_token(old):
            cached = self.cached_response(presented, old.refresh_token_hash)
            if cached is not None:
                return 200, cached, self.TOKEN_RESPONSE_HEADER
            raise InvalidGrantError("The refresh token has already been used.")
        # The grant may since have gained scopes from another authorization (remembered consent
        # for a wider request): this family keeps the ceiling its own code set.
        authorized = old.get_authorized_scope().split()
        requested = (self.request.payload.scope or "").split() or authorized
        scope = live_scope(old, " ".join(s for s in requested if s in authorized))
        # The rotated pair's access token ended with the rotation (store.consume_refresh_token):
        # one live access token per family.
        token = self.issue(old, scope, include_refresh_token=True)
        self.remember_response(presented, old.refresh_token_hash, token)
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def authenticate_user(self, refresh_token: ExchangedRefreshToken) -> User:
        return db.session.get(User, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token):
        """Done atomically by store.consume_refresh_token in create_token_response."""


def validate_no_duplicate_parameters(datalist) -> None:
    """RFC 6749 §3.1/§3.2: request parameters MUST NOT be included more than once."""
    for key, values in datalist.items():
        if len(values) > 1:
            raise InvalidRequestError(safe_description(f"Parameter '{key}' is repeated."))
