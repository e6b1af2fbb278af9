"""Authorization-code and refresh-token grants: hashed storage, atomic single use, idempotent
retries inside a grace window, reuse detection, and live re-intersection with permissions."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, InvalidGrantError, InvalidScopeError, OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.hooks import hooked
from flask import current_app

from .. import accounts, audit, store
from ..extensions import db
from ..metrics import TOKENS_ISSUED
from ..models import Client, Grant, User
from ..scopes import IGNORED_SCOPES
from ..secrets import AUTHORIZATION_CODE_PREFIX, new_credential, sha256_hex, verify_secret
from ..timeutil import utcnow
from .pkce import check_code_verifier
from .resource import check_code_resource, check_refresh_resource
from .tokens import new_token, seal, stored_values, unseal

log = logging.getLogger(__name__)

#: Client authentication accepted at the token endpoint (also advertised in the metadata).
TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


@dataclass
class Decision:
    """What the user approved on the consent page, or approved before (passed to Authlib as
    `grant_user`): the hub, the code's scope, the grant the code is issued under as it will be
    recorded with the code (store.GrantRecord), and the audit event written with it (the view's)."""

    user: User
    hub: store.HubMembership
    grant: store.GrantRecord
    scope: str
    event: dict | None = None


class Exchanged:
    """A code or refresh token as the token endpoint reads it (store.get_code_for_exchange,
    store.get_refresh_for_exchange): its own columns plus its grant's consent and state and the
    user's live membership, read in one statement. The ORM rows are loaded only on rare paths."""

    #: When it was consumed (code) or rotated (refresh token), None while it is unused.
    used_at: datetime | None
    #: The sealed answer of that use (store.consume_*), kept for an identical retry, or None.
    replay: bytes | None

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
    @property
    def used_at(self) -> datetime | None:
        return self.consumed_at

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri if self.redirect_uri_sent else None

    def get_scope(self) -> str:
        return self.scope


class ExchangedRefreshToken(Exchanged):
    @property
    def used_at(self) -> datetime | None:
        return self.rotated_at

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


def code_replay_context(client_id: str, form) -> list[str]:
    """What binds a code redemption's retry to its request (see refresh_replay_context)."""
    return ["authorization_code", client_id, form.get("redirect_uri", ""), form.get("code_verifier", ""),
            form.get("resource", "")]


def refresh_replay_context(client_id: str, form) -> list[str]:
    """What binds a refresh's retry to its request: the client and the parameters that shape the
    answer, as sent (the sealed answer is keyed on them, oauth/tokens.py seal)."""
    return ["refresh_token", client_id, form.get("scope", ""), form.get("resource", "")]


def check_refresh_scope(scope: str | None, token: ExchangedRefreshToken) -> None:
    """A requested scope can only narrow what this token's authorization granted (RFC 6749 §6):
    nothing in common with it is invalid_scope (see RefreshTokenGrant._validate_token_scope)."""
    if not scope:
        return
    requested = set(scope.split()) - IGNORED_SCOPES
    if not requested & set(token.get_authorized_scope().split()):
        raise InvalidScopeError("None of the requested scopes was granted.")


def refreshed_scope(token: ExchangedRefreshToken, scope: str | None) -> str:
    """The scope of the pair a refresh issues: the requested scope (else all) within what this
    family's authorization granted, ∩ the grant and today's permissions (live_scope).

    The grant may since have gained scopes from another authorization (remembered consent for a
    wider request): this family keeps the ceiling its own code set. Refused before rotation (the
    user left the hub, or lost every scope): nothing is issued either way, the old access token is
    checked live at every introspection, and every later refresh is decided on the live state."""
    authorized = token.get_authorized_scope().split()
    requested = (scope or "").split() or authorized
    return live_scope(token, " ".join(s for s in requested if s in authorized))


class ReplayMixin(ABC):
    """Shared by both grants: one conditional UPDATE consumes the code or refresh token and keeps
    the sealed answer on its row; an identical retry inside the grace window gets that answer.

    Authlib's create_token_response is replaced, its hooks are not: before_create_token_response
    and after_create_token_response (where OpenID Connect adds its id_token) run here explicitly,
    once per answer created. Authlib runs the after hook once the token is saved; here it runs on
    the answer before the credential is consumed, because the consuming UPDATE keeps that answer
    for a retry, and must keep what the hooks made of it."""

    @abstractmethod
    def issue(self) -> dict:
        """The token answering this request (self.exchange), or raise an OAuth error."""

    @abstractmethod
    def replay_context(self) -> list[str]:
        """What binds a retry to its request (each grant names its own parameters)."""

    @abstractmethod
    def consume(self, exchanged: Exchanged, replay: bytes | None) -> bool:
        """store.consume_* for this grant's credential: True for exactly one of racing requests."""

    @abstractmethod
    def read_again(self, exchanged: Exchanged) -> Exchanged | None:
        """The same row read afresh (after losing the race to consume it)."""

    @staticmethod
    def replay_grace() -> timedelta:
        return timedelta(seconds=int(current_app.config["REPLAY_GRACE_SECONDS"]))

    def cached_response(self, credential: str, exchanged: Exchanged) -> dict | None:
        """The answer to an identical earlier request, kept on the row it consumed, while the row
        was used inside the grace window and what the answer hands out is still live: a grant
        revoked (or a family ended) inside the grace window is not undone by a retry."""
        if exchanged.replay is None or utcnow() - exchanged.used_at > self.replay_grace():
            return None
        cached = unseal(credential, self.replay_context(), exchanged.replay)
        if cached is None:
            return None
        # The issued token belongs to the same grant as the row, whose state was read with it.
        issued = store.get_token_by_access_hash(sha256_hex(cached["access_token"]))
        if issued is None or issued.revoked_at is not None or exchanged.grant_revoked_at is not None:
            return None
        return cached

    def create_token_response(self):
        """RFC 6749 §5.1 (and §4.1.4, §6): the answer to a validated token request. An identical
        retry inside the grace window gets the first answer, hooks' additions included: nothing
        is created for it, so no hook runs again."""
        replayed = self.request.replayed_response
        if replayed is not None:
            return 200, replayed, self.TOKEN_RESPONSE_HEADER
        self.execute_hook("before_create_token_response")
        return 200, self.issue(), self.TOKEN_RESPONSE_HEADER

    def finish_token(self, exchanged: Exchanged, token: dict) -> None:
        """Authlib's after_create_token_response hooks, given what stock Authlib gives them: the
        response (whose token they may change) and request.user. Our own code needs no more of
        the user than the id on the row, so the user is read only when a hook is registered."""
        if self._hooks["after_create_token_response"]:
            self.request.user = self.authenticate_user(exchanged)
        self.execute_hook("after_create_token_response", (200, token, self.TOKEN_RESPONSE_HEADER))

    def exchange(self, exchanged: Exchanged, credential: str, scope: str, *,
                 include_refresh_token: bool) -> dict | None:
        """Tokens for `scope` in exchange for `credential`; or, when a concurrent identical request
        consumed it first, that request's answer; None when there is none to give.

        Everything that can refuse the request has run before but the hooks: the token is
        generated, the hooks finish it and its answer is sealed first, so that consuming the
        credential and keeping the answer for a retry are one statement, and a request that finds
        the row consumed also finds the answer. A hook that refuses consumes nothing; a request
        that loses the race discards what its hooks made and answers with the winner's."""
        token = self.generate_token(scope=scope, include_refresh_token=include_refresh_token)
        self.finish_token(exchanged, token)
        replay = seal(credential, self.replay_context(), token) if self.replay_grace() > timedelta(0) else None
        if not self.consume(exchanged, replay):
            # Lost the race (or the row was revoked or expired meanwhile): whoever consumed it has
            # committed (the UPDATE waited for its row lock), so its answer, if any, is on the row.
            again = self.read_again(exchanged)
            return self.cached_response(credential, again) if again is not None else None
        self.save_token(token)
        store.touch_usage(self.request.client, exchanged.grant_id, exchanged.grant_last_used_at)
        TOKENS_ISSUED.labels(self.GRANT_TYPE).inc()
        audit.record("token.issued", user=exchanged.user_id, hub=exchanged.hub_public_id, client=self.request.client,
                     grant_type=self.GRANT_TYPE, scope=scope)
        return token


class AuthorizationCodeGrant(ReplayMixin, grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with OAuth 2.1 rules; PKCE and resource are extensions registered with it."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS

    def replay_context(self) -> list[str]:
        return code_replay_context(self.request.client.client_id, self.request.form)

    def consume(self, exchanged: ExchangedCode, replay: bytes | None) -> bool:
        return store.consume_authorization_code(exchanged, replay)

    def read_again(self, exchanged: ExchangedCode) -> ExchangedCode | None:
        found = store.get_code_for_exchange(exchanged.code_hash)
        return ExchangedCode(found) if found is not None else None

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
        """The code's hash under its grant, the grant as the decision records it, and the decision's
        audit event, written together (store.save_authorization_code)."""
        decision: Decision = request.user
        lifetime = int(current_app.config["AUTHORIZATION_CODE_LIFETIME"])
        now = utcnow()
        store.save_authorization_code({
            "code_hash": sha256_hex(code),
            "client_pk": request.client.id,
            "redirect_uri": self.redirect_uri,
            "redirect_uri_sent": bool(request.payload.redirect_uri),
            "scope": decision.scope,
            "code_challenge": request.payload.data["code_challenge"],
            "code_challenge_method": request.payload.data["code_challenge_method"],
            "created_at": now,
            "expires_at": now + timedelta(seconds=lifetime),
        }, decision.grant, user_id=decision.user.id, hub_id=decision.hub.id, resource_id=request.resource.id,
            event=decision.event)
        audit.logged(decision.event)

    # --- token endpoint -----------------------------------------------------------------------
    def query_authorization_code(self, code: str, client) -> ExchangedCode | None:
        """Find the code by hash; it must belong to this client and be sent with the redirect URI
        it is bound to (RFC 6749 §4.1.3)."""
        self.request.client = client
        found = store.get_code_for_exchange(sha256_hex(code))
        if found is None or found.client_pk != client.id:
            return None
        row = ExchangedCode(found)
        self.request.replayed_response = None
        if row.consumed_at is not None:
            cached = self.cached_response(code, row)
            if cached is not None:
                # An identical retry inside the grace window: the same answer again.
                self.request.replayed_response = cached
                return row
            revoked = store.revoke_code_family(row)
            audit.record("code.replayed", user=row.user_id, hub=row.hub_public_id, client=client, revoked=revoked)
            return None
        if row.expires_at <= utcnow():
            return None
        # redirect_uri is required when the authorization request carried it: Authlib checks that
        # next; we also refuse one the authorization request did not have, here, so that every
        # check has run when the after_validate_token_request hooks do.
        sent = self.request.payload.redirect_uri
        if not row.redirect_uri_sent and sent and sent != row.redirect_uri:
            raise InvalidGrantError("Invalid 'redirect_uri' in request.")
        return row

    def issue(self) -> dict:
        code: ExchangedCode = self.request.authorization_code
        # Refused before the code is consumed: nothing is issued either way, and a later
        # redemption of the same code is decided on the live state again.
        if code.grant_revoked_at is not None:
            raise InvalidGrantError("The authorization has been revoked.")
        scope = live_scope(code, code.scope)
        token = self.exchange(code, self.request.form["code"], scope,
                              include_refresh_token=self.request.client.check_grant_type("refresh_token"))
        if token is None:
            # Lost the race to a redemption whose answer this request may not have (another
            # verifier or redirect URI: a replay), or the code expired meanwhile.
            store.revoke_code_family(code)
            raise InvalidGrantError("The authorization code has already been used.")
        return token

    def authenticate_user(self, authorization_code: ExchangedCode) -> User:
        return db.session.get(User, authorization_code.user_id)

    def delete_authorization_code(self, authorization_code):
        """Used codes are kept (marked consumed), never deleted, so that replay is detected."""


class RefreshTokenGrant(ReplayMixin, grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation on every use (OAuth 2.1 §4.3.1) and reuse detection."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def replay_context(self) -> list[str]:
        return refresh_replay_context(self.request.client.client_id, self.request.form)

    def consume(self, exchanged: ExchangedRefreshToken, replay: bytes | None) -> bool:
        return store.consume_refresh_token(exchanged, replay)

    def read_again(self, exchanged: ExchangedRefreshToken) -> ExchangedRefreshToken | None:
        found = store.get_refresh_for_exchange(exchanged.refresh_token_hash)
        return ExchangedRefreshToken(found) if found is not None else None

    def authenticate_refresh_token(self, refresh_token: str) -> ExchangedRefreshToken | None:
        found = store.get_refresh_for_exchange(sha256_hex(refresh_token))
        self.request.replayed_response = None
        if found is None or found.client_pk != self.request.client.id:
            return None
        row = ExchangedRefreshToken(found)
        if row.rotated_at is not None:
            cached = self.cached_response(refresh_token, row)
            if cached is not None:
                self.request.replayed_response = cached
                return row
            if utcnow() - row.rotated_at > self.replay_grace():
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
        check_refresh_scope(self.request.payload.scope, token)

    @hooked
    def validate_token_request(self):
        """RFC 6749 §6 and RFC 8707 §2.2. Hooked as Authlib hooks the code grant's (authlib 1.9
        leaves the refresh grant's bare), so that an extension sees the same points on both."""
        super().validate_token_request()
        token = self.request.refresh_token
        if self.request.replayed_response is None:
            check_refresh_resource(self.request.payload.datalist, token)

    def issue(self) -> dict:
        old: ExchangedRefreshToken = self.request.refresh_token
        scope = refreshed_scope(old, self.request.payload.scope)
        # The rotated pair's access token ends with the rotation (store.consume_refresh_token):
        # one live access token per family.
        token = self.exchange(old, self.request.form["refresh_token"], scope, include_refresh_token=True)
        if token is None:
            raise InvalidGrantError("The refresh token has already been used.")
        return token

    def authenticate_user(self, refresh_token: ExchangedRefreshToken) -> User:
        return db.session.get(User, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token):
        """Done atomically by store.consume_refresh_token in ReplayMixin.exchange."""


class ClientColumns:
    """The client a lean token request authenticates: its columns as read with the credential
    (store.CLIENT_AUTH_COLUMNS), with the Client model's own rules (the same functions). A model
    instance, which nothing here would add to a session, cost more than the rest of the
    authentication."""

    __slots__ = store.CLIENT_AUTH_COLUMNS
    token_endpoint_auth_method = Client.token_endpoint_auth_method
    grant_types = Client.grant_types
    check_endpoint_auth_method = Client.check_endpoint_auth_method
    check_grant_type = Client.check_grant_type

    def __init__(self, row):
        for name in self.__slots__:
            setattr(self, name, getattr(row, "client__" + name))


class LeanTokenRequest(ABC):
    """A plain successful token request for the WSGI lane (fastlane.py), made without Authlib's
    request, grant and hook objects and without the ORM session: one read (the client with the code
    or refresh token, store.get_client_and_*) and one write (store.redeem_code,
    store.rotate_refresh_token), each a single statement outside any transaction on PostgreSQL,
    where the Authlib grant needs BEGIN, five statements and COMMIT. Why a second path: a refresh
    is what every connected client does for as long as it stays connected and a code exchange
    ends every connection, and on them Authlib's generic machinery (a second parse of the form,
    two request objects, the client as an ORM row, the session's flush and commit) cost more than
    the database did.

    The rules are the grants', through the same functions: client authentication as Authlib's
    client_secret_basic, client_secret_post and none decide it (the registered method only; secrets
    compared in constant time), the client's grant types, single use under the grant's own
    conditional UPDATE, today's permissions (live_scope), the token (tokens.new_token: a JWT for a
    resource server whose format is jwt), the sealed answer for an identical retry, the audit
    event and the last-used times; each subclass names its grant's own checks. It answers only
    that plain success. Anything else makes it return None, having written nothing, and the
    Authlib grant decides the request from the start: a used code or rotated token (an identical
    retry, a replay, reuse), a revoked or expired one, any refused parameter, a user who left the
    hub, a lost race, a legacy secret hash, an unknown parameter, several ways of authenticating at
    once. The lane uses it only while the grant's extensions are the ones whose work it does
    (fastlane._lean_allowed)."""

    GRANT_TYPE: str
    #: The parameters it takes (any other goes to the grant).
    PARAMETERS: frozenset[str]
    #: The form parameter holding the credential exchanged.
    CREDENTIAL: str
    TOKEN_RESPONSE_HEADER = RefreshTokenGrant.TOKEN_RESPONSE_HEADER

    def __init__(self, form: dict, basic: tuple[str, str] | None):
        self.form = form
        self.basic = basic
        self.client: ClientColumns | None = None
        self.method: str | None = None
        self.exchanged = None

    @abstractmethod
    def read(self, client_id: str, credential_hash: str):
        """The client's columns and the credential's (store.get_client_and_*), or None."""

    def authenticate(self) -> str | None:
        """The client authentication method this request proves (the client is self.client, the
        code or refresh token self.exchanged), or None for anything Authlib's methods must decide."""
        form = self.form
        if not form.keys() <= self.PARAMETERS or not form.get(self.CREDENTIAL):
            return None
        if self.basic is not None:
            if "client_id" in form or "client_secret" in form or not all(self.basic):
                return None
            (client_id, secret), method = self.basic, "client_secret_basic"
        elif form.get("client_secret"):
            client_id, secret, method = form.get("client_id"), form["client_secret"], "client_secret_post"
        else:
            client_id, secret, method = form.get("client_id"), None, "none"
        if not client_id:
            return None
        row = self.read(client_id, sha256_hex(form[self.CREDENTIAL]))
        if row is None:
            return None  # an unknown client: invalid_client, counted as a failure, by Authlib's path
        client = ClientColumns(row)
        if not client.check_endpoint_auth_method(method, "token"):
            return None
        if secret is not None:
            check = verify_secret(client.client_secret_hash, secret)
            if not check.ok or check.replacement:
                return None
        if not client.check_grant_type(self.GRANT_TYPE):
            return None
        self.client, self.method, self.exchanged = client, method, self.row_type(row)
        return method

    def finish(self, exchanged, scope: str, replay_context: list[str], authorized_scope: str, *,
               include_refresh_token: bool, code_id, parent_id, write) -> dict | None:
        """Generate and seal the token, then `write` it (store.redeem_code or
        rotate_refresh_token); the token, or None when the write lost the race."""
        client, form = self.client, self.form
        issued = new_token(exchanged, client, scope, None, include_refresh_token=include_refresh_token)
        if db.session.registry.has() and db.session().in_transaction():
            # Signing a JWT may have read the keys, or made one that signs at once (keys.py), in
            # the session: committed before the token that depends on it is written elsewhere.
            # (No session yet, none made: an opaque token reads nothing through it.)
            db.session.commit()
        grace = ReplayMixin.replay_grace() > timedelta(0)
        replay = seal(form[self.CREDENTIAL], replay_context, issued) if grace else None
        new_pair = stored_values(issued, grant_id=exchanged.grant_id, code_id=code_id, parent_id=parent_id,
                                 client_pk=client.id, authorized_scope=authorized_scope,
                                 auth_time=exchanged.auth_time)
        event = audit.event_values("token.issued", ip=self.address, request_id=self.request_id,
                                   user=exchanged.user_id, hub=exchanged.hub_public_id, client=client.client_id,
                                   grant_type=self.GRANT_TYPE, scope=scope)
        if not write(exchanged.id, replay, new_pair, event, client_last_used_at=client.last_used_at,
                     grant_last_used_at=exchanged.grant_last_used_at):
            return None  # lost the race: the grant finds the row used, and answers as it does
        TOKENS_ISSUED.labels(self.GRANT_TYPE).inc()
        audit.logged(event)
        return issued

    def issue(self, address: str | None, request_id: str) -> dict | None:
        """The new token pair, written and committed; None when the grant must decide."""
        self.address, self.request_id = address, request_id
        exchanged = self.exchanged
        if exchanged.id is None or exchanged.client_pk != self.client.id:
            return None  # unknown, or another client's: invalid_grant
        try:
            return self.issue_checked(exchanged)
        except OAuth2Error:
            return None

    @abstractmethod
    def issue_checked(self, exchanged) -> dict | None:
        """The token answer for `exchanged` once the grant's own checks pass (OAuth2Error if not)."""


class LeanRefresh(LeanTokenRequest):
    """A plain refresh (RFC 6749 §6, rotation per OAuth 2.1 §4.3.1): RefreshTokenGrant's checks
    (check_refresh_scope, check_refresh_resource, refreshed_scope) through the same functions."""

    GRANT_TYPE = RefreshTokenGrant.GRANT_TYPE
    PARAMETERS = frozenset({"grant_type", "refresh_token", "client_id", "client_secret", "scope", "resource"})
    CREDENTIAL = "refresh_token"
    row_type = ExchangedRefreshToken

    def read(self, client_id: str, credential_hash: str):
        return store.get_client_and_refresh(client_id, credential_hash)

    def issue_checked(self, token: ExchangedRefreshToken) -> dict | None:
        if (token.rotated_at is not None or token.revoked_at is not None or token.is_refresh_expired()
                or token.grant_revoked_at is not None):
            return None
        form = self.form
        scope = form.get("scope") or None  # a parameter sent without a value is omitted (Payload)
        resource = form.get("resource")
        check_refresh_scope(scope, token)
        check_refresh_resource({"resource": [resource]} if resource else {}, token)
        scope = refreshed_scope(token, scope)
        return self.finish(token, scope, refresh_replay_context(self.client.client_id, form),
                           token.get_authorized_scope(), include_refresh_token=True, code_id=token.code_id,
                           parent_id=token.id,
                           write=partial(store.rotate_refresh_token, access_token_hash=token.access_token_hash))


class LeanExchange(LeanTokenRequest):
    """A plain code exchange (RFC 6749 §4.1.3): AuthorizationCodeGrant's checks (the code's
    client, use and expiry, the redirect URI as query_authorization_code and Authlib check it,
    PKCE as S256CodeChallenge checks it, the resource as ResourceIndicator does, a revoked grant)."""

    GRANT_TYPE = AuthorizationCodeGrant.GRANT_TYPE
    PARAMETERS = frozenset({"grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier",
                            "resource"})
    CREDENTIAL = "code"
    row_type = ExchangedCode

    def read(self, client_id: str, credential_hash: str):
        return store.get_client_and_code(client_id, credential_hash)

    def issue_checked(self, code: ExchangedCode) -> dict | None:
        if code.consumed_at is not None or code.expires_at <= utcnow():
            return None
        form = self.form
        sent = form.get("redirect_uri") or None
        if not code.redirect_uri_sent and sent and sent != code.redirect_uri:
            return None  # query_authorization_code's rule
        original = code.get_redirect_uri()
        if original and sent != original:
            return None  # Authlib's (RFC 6749 §4.1.3)
        check_code_verifier(code, form, self.method)
        resource = form.get("resource")
        check_code_resource({"resource": [resource]} if resource else {}, code)
        if code.grant_revoked_at is not None:
            return None
        scope = live_scope(code, code.scope)
        return self.finish(code, scope, code_replay_context(self.client.client_id, form), code.scope,
                           include_refresh_token=self.client.check_grant_type("refresh_token"), code_id=code.id,
                           parent_id=None, write=store.redeem_code)
