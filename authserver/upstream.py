"""Sign-in through the operator's OpenID Connect providers (UPSTREAM_PROVIDERS): one Authlib Flask
client per provider (authorization code, PKCE S256, `state`, `nonce`, ID token checked against the
provider's JWKS), and the rules that find the account an upstream identity signs in to.

Authlib keeps each sign-in's `state`, `nonce`, PKCE verifier and our `next` in the session cookie
(signed), consumed by the callback; every failure becomes a SignInRefused with a public message."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App, OAuth
from flask import Flask, current_app, request, session
from joserfc.errors import JoseError
from sqlalchemy.exc import IntegrityError

from . import accounts
from .extensions import db
from .models import User
from .timeutil import utcnow

log = logging.getLogger(__name__)

#: Seconds of clock difference with a provider tolerated on the ID token's `exp`, `iat`, `nbf`.
ID_TOKEN_LEEWAY = 60
#: Where the sign-in's local `next` waits in the state data Authlib keeps for the callback.
_NEXT = "authserver_next"


@dataclass
class SignInRefused(Exception):
    """An upstream sign-in that ends on an error page: `message` is for the person, `reason` for
    the audit trail and the log (never a credential)."""

    status: int
    title: str
    message: str
    reason: str


def _unavailable(provider: dict, reason: str) -> SignInRefused:
    return SignInRefused(503, "Sign-in is unavailable",
                         f"{provider['display_name']} could not be reached. Please try again in a moment.", reason)


def _not_verified(provider: dict, reason: str) -> SignInRefused:
    return SignInRefused(400, "Sign-in failed",
                         f"The answer from {provider['display_name']} could not be verified. Please sign in again.",
                         reason)


# --- Authlib's client, per provider --------------------------------------------------------------
class ProviderClient(FlaskOAuth2App):
    """Authlib's Flask OAuth 2 client with two checks of the provider's discovery document."""

    def load_server_metadata(self):
        """OpenID Connect Discovery §4.3: the document's `issuer` must be the configured issuer
        exactly (else an ID token from another issuer could pass the `iss` check, which compares
        against the document's); a document that fails the check is not kept."""
        if "_loaded_at" in self.server_metadata:
            return self.server_metadata
        before = dict(self.server_metadata)
        metadata = super().load_server_metadata()
        if metadata.get("issuer") != self.expected_issuer:
            self.server_metadata = before
            raise IssuerMismatch(metadata.get("issuer"))
        return metadata

    def _get_oauth_client(self, **metadata):
        """client_secret_basic unless the provider supports only client_secret_post (RFC 8414
        §2: an absent list means client_secret_basic)."""
        supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        metadata["token_endpoint_auth_method"] = (
            "client_secret_post" if "client_secret_basic" not in supported and "client_secret_post" in supported
            else "client_secret_basic")
        return super()._get_oauth_client(**metadata)


class IssuerMismatch(Exception):
    """The provider's discovery document names another issuer than the one configured."""


class _ConfiguredOnly(FlaskIntegration):
    """Providers are configured by UPSTREAM_PROVIDERS alone, not by Authlib's `<NAME>_CLIENT_ID`
    style settings (a provider's name could otherwise pick up an unrelated setting)."""

    @staticmethod
    def load_config(oauth, name, params):
        return {}


class _Registry(OAuth):
    oauth2_client_cls = ProviderClient
    framework_integration_cls = _ConfiguredOnly


def init_app(app: Flask) -> None:
    """Register a client per configured provider (discovery is fetched at first use)."""
    registry = _Registry(app)
    for provider in app.config["UPSTREAM_PROVIDERS"]:
        client = registry.register(
            provider["name"],
            client_id=provider["client_id"],
            client_secret=provider["client_secret"],
            server_metadata_url=provider["issuer"].rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": provider["scopes"], "code_challenge_method": "S256",
                           "default_timeout": float(app.config["UPSTREAM_TIMEOUT"])},
        )
        client.expected_issuer = provider["issuer"]
    app.extensions["authserver.upstream"] = registry


def providers() -> list[dict]:
    """The configured providers, in the order the sign-in page lists them."""
    return current_app.config["UPSTREAM_PROVIDERS"]


def get_provider(name: str) -> dict | None:
    return next((p for p in providers() if p["name"] == name), None)


class UnknownProvider(LookupError):
    """A name that UPSTREAM_PROVIDERS does not configure (message is public)."""


def configured_provider(name: str) -> dict:
    """The provider configured under `name`, or UnknownProvider naming the configured ones."""
    provider = get_provider(name)
    if provider is None:
        configured = ", ".join(p["name"] for p in providers()) or "none"
        raise UnknownProvider(f"No upstream provider named {name[:40]!r} in UPSTREAM_PROVIDERS "
                              f"(configured: {configured}).")
    return provider


def _client(provider: dict) -> ProviderClient:
    return current_app.extensions["authserver.upstream"].create_client(provider["name"])


def callback_url(provider: dict) -> str:
    """The redirect URI to register at the provider: built from ISSUER, never from the request's
    Host header."""
    return f"{current_app.config['ISSUER']}/login/upstream/{provider['name']}/callback"


# --- the round trip ------------------------------------------------------------------------------
def authorization_url(provider: dict, next_path: str) -> str:
    """Start a sign-in: the provider's authorization URL, with `state`, `nonce` and the PKCE
    challenge kept in the session for the callback, beside the local `next_path`."""
    client = _client(provider)
    try:
        started = client.create_authorization_url(callback_url(provider))
    except (requests.RequestException, ValueError) as error:
        raise _unavailable(provider, f"discovery_failed:{type(error).__name__}") from error
    except IssuerMismatch as error:
        raise _unavailable(provider, "discovery_issuer_mismatch") from error
    if "nonce" not in started:  # UPSTREAM_PROVIDERS requires openid; never sign in without one
        raise _unavailable(provider, "no_nonce")
    url = started.pop("url")
    _forget_older_sign_ins()
    client.save_authorize_data(redirect_uri=callback_url(provider), **{_NEXT: next_path}, **started)
    return url


#: Sign-ins a browser may have under way at once (tabs); the oldest is forgotten beyond it, so
#: pressing the button again and again cannot grow the session cookie past what browsers keep.
SIGN_INS_UNDER_WAY = 2


def _forget_older_sign_ins() -> None:
    """Drop all but the newest SIGN_INS_UNDER_WAY - 1 sign-ins Authlib keeps in the session, of
    any provider (their keys are `_state_<name>_<state>`, each with an expiry time)."""
    under_way = sorted((value.get("exp", 0), key) for key, value in session.items()
                       if key.startswith("_state_") and isinstance(value, dict))
    for _, key in under_way[: max(0, len(under_way) - (SIGN_INS_UNDER_WAY - 1))]:
        session.pop(key)


@dataclass
class Identity:
    """What a provider asserted about the person, from its validated ID token (and userinfo)."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


def finish(provider: dict) -> tuple[Identity, str | None]:
    """The callback: check `state` (single use), exchange the code with the PKCE verifier, and
    validate the ID token (signature by the provider's JWKS, `iss`, `aud`, `exp`, `nonce`).
    Returns the identity and the `next` saved at the start; raises SignInRefused."""
    name = provider["display_name"]
    client = _client(provider)
    error = request.args.get("error")
    state_data = client.framework.get_state_data(session, request.args.get("state"))
    if error:
        if state_data is not None:
            client.framework.clear_state_data(session, request.args.get("state"))
        if error == "access_denied":
            raise SignInRefused(403, "Sign-in cancelled",
                                f"{name} did not sign you in. You can go back and try again.", "provider_access_denied")
        raise SignInRefused(400, "Sign-in failed", f"{name} could not sign you in. Please try again.",
                            f"provider_error:{re.sub(r'[^a-z0-9_]', '', error.lower())[:40]}")
    if state_data is None:
        raise SignInRefused(400, "This sign-in has expired",
                            "The sign-in link was not started here or was already used. Please sign in again.",
                            "state_mismatch")
    try:
        _check_response_issuer(client, provider)
        token = client.authorize_access_token(leeway=ID_TOKEN_LEEWAY)
        claims = dict(token.get("userinfo") or {})
        subject = claims.get("sub")
        # OpenID Connect Core §2: at most 255 ASCII characters (and what the table holds).
        if not isinstance(subject, str) or not 0 < len(subject) <= 255 or not subject.isascii():
            raise _not_verified(provider, "no_id_token" if not subject else "bad_subject")
        _add_userinfo(client, provider, claims)
    except SignInRefused:
        raise
    except IssuerMismatch as exc:
        raise _unavailable(provider, "discovery_issuer_mismatch") from exc
    except requests.RequestException as exc:
        raise _unavailable(provider, f"provider_unreachable:{type(exc).__name__}") from exc
    except JoseError as exc:
        raise _not_verified(provider, f"id_token_invalid:{type(exc).__name__}") from exc
    except AuthlibBaseError as exc:
        raise SignInRefused(400, "Sign-in failed", f"{name} could not complete the sign-in. Please sign in again.",
                            f"token_error:{str(getattr(exc, 'error', '') or type(exc).__name__)[:64]}") from exc
    except ValueError as exc:  # a token or userinfo answer that is not a JSON object
        raise _unavailable(provider, f"provider_bad_answer:{type(exc).__name__}") from exc
    identity = Identity(
        provider=provider["name"],
        subject=claims["sub"],
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        email_verified=claims.get("email_verified") is True,
        name=claims.get(provider["name_claim"]) if isinstance(claims.get(provider["name_claim"]), str) else None,
    )
    return identity, state_data.get(_NEXT)


def _check_response_issuer(client: ProviderClient, provider: dict) -> None:
    """RFC 9207 against mix-up: an authorization response's `iss`, when the provider sends one
    (and it must when its metadata says so), names this provider. Each provider also has its own
    callback URL and its own `state` keys (RFC 9700 §4.4.2)."""
    iss = request.args.get("iss")
    required = client.load_server_metadata().get("authorization_response_iss_parameter_supported") is True
    if (iss is None and required) or (iss is not None and iss != provider["issuer"]):
        client.framework.clear_state_data(session, request.args.get("state"))
        raise _not_verified(provider, "response_issuer_mismatch")


def _add_userinfo(client: ProviderClient, provider: dict, claims: dict) -> None:
    """Many providers put only `sub` in the ID token and the rest at the userinfo endpoint: fetch
    it when a claim we use is missing, and take from it only what the ID token lacks, only if it is
    about the same `sub` (OpenID Connect Core §5.3.2)."""
    wanted = ("email", "email_verified", provider["name_claim"])
    endpoint = client.load_server_metadata().get("userinfo_endpoint")
    if all(key in claims for key in wanted) or not endpoint:
        return
    info = client.userinfo()
    if info.get("sub") != claims["sub"]:
        raise _not_verified(provider, "userinfo_sub_mismatch")
    for key in wanted:
        if key not in claims and key in info:
            claims[key] = info[key]


# --- which account ------------------------------------------------------------------------------
def account_for(identity: Identity, provider: dict) -> User:
    """The user this identity signs in as: the one linked to (provider, subject); else, for a
    first sign-in, the account with the provider's verified email when UPSTREAM_LINK_VERIFIED_EMAIL
    allows it, or a new account when UPSTREAM_CREATE_USERS does. Raises SignInRefused."""
    identity_row = accounts.get_upstream_identity(identity.provider, identity.subject)
    if identity_row is None:
        try:
            with db.session.begin_nested():
                identity_row = _first_sign_in(identity, provider)
        except IntegrityError:
            # The same person's first sign-in, finished a moment earlier in another request.
            identity_row = accounts.get_upstream_identity(identity.provider, identity.subject)
            if identity_row is None:
                raise SignInRefused(409, "Please try again", "Your sign-in overlapped with another one. "
                                    "Please sign in again.", "link_conflict") from None
    user = accounts.get_user(identity_row.user_id)
    if user is None or user.disabled:
        raise SignInRefused(403, "Account disabled", "This account is disabled. Ask your administrator.",
                            "user_disabled")
    identity_row.last_login_at = utcnow()
    db.session.flush()
    return user


_NO_ACCOUNT = ("No account for this sign-in",
               "{name} signed you in, but there is no account here for you. Ask your administrator for access.")


def _first_sign_in(identity: Identity, provider: dict):
    config = current_app.config
    verified_email = accounts.normalize_email(identity.email) if identity.email and identity.email_verified else None
    existing = accounts.get_user_by_email(identity.email) if identity.email else None
    if existing is not None:
        # Linked only on the provider's word that the address is the person's, and only when the
        # account has no other identity at this provider (a reassigned address must not take over
        # its former owner's account).
        if (config["UPSTREAM_LINK_VERIFIED_EMAIL"] and verified_email == existing.email
                and not accounts.find_upstream_identities(existing, identity.provider)):
            return accounts.link_upstream_identity(existing, identity.provider, identity.subject, identity.email)
        reason = ("email_not_verified" if not identity.email_verified
                  else "email_link_disabled" if not config["UPSTREAM_LINK_VERIFIED_EMAIL"]
                  else "account_linked_elsewhere")
        raise SignInRefused(403, *_format(_NO_ACCOUNT, provider), reason)
    if config["UPSTREAM_CREATE_USERS"]:
        # Only with a verified address: an account made for an address its claimant does not own
        # would later be linked to the real owner's verified sign-in at another provider.
        if verified_email is None:
            raise SignInRefused(403, *_format(_NO_ACCOUNT, provider), "create_needs_verified_email")
        try:
            user = accounts.create_upstream_user(verified_email, identity.name)
        except accounts.AccountError as error:
            raise SignInRefused(403, *_format(_NO_ACCOUNT, provider), "create_refused") from error
        return accounts.link_upstream_identity(user, identity.provider, identity.subject, identity.email)
    raise SignInRefused(403, *_format(_NO_ACCOUNT, provider), "no_account")


def _format(texts: tuple[str, str], provider: dict) -> tuple[str, str]:
    return tuple(text.format(name=provider["display_name"]) for text in texts)
