"""The admin API (/admin/api/v1/): the product's back end keeps users, hubs, memberships and
permissions in step with its own. Thin views over accounts.py and store.py, described in
authserver/openapi.yaml.

Callers authenticate with an admin credential over HTTP Basic (admin_credentials.py), never with
the session cookie, so no CSRF token applies; failures count against the caller's address like
every other credential check (limits.FAILURES). JSON in and out; errors are RFC 6749-shaped
(`error`, `error_description`). One commit per request, at its end; a refused request is rolled
back whole, so it changes nothing. Every change is audited naming the credential that made it."""

from __future__ import annotations

import json
import re

from flask import Blueprint, g, jsonify, request, url_for
from flask_limiter.util import get_remote_address
from sqlalchemy.exc import IntegrityError

from .. import accounts, admin_credentials, audit, limits, scopes, store, upstream
from ..errors import oauth_json_error
from ..extensions import csrf, db
from ..models import Grant, Hub, Membership, UpstreamIdentity, User
from ..oauth.credentials import basic_credentials

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api/v1")
# Basic-authenticated JSON for programs: a browser's cookie is never looked at, so there is nothing
# for a cross-site request to ride on.
csrf.exempt(bp)

#: Page sizes of the list operations: `limit` defaults to the first, and is at most the second.
PAGE_DEFAULT, PAGE_MAX = 50, 200
UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="authserver admin API"'}
_CREDENTIAL_ID = re.compile(r"^adm_[A-Za-z0-9_-]{1,96}$")


class ApiError(Exception):
    """A refused request: its status, RFC 6749-style error code and public description."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _refused(status: int, error: str, description: str):
    db.session.rollback()
    return oauth_json_error(status, error, description)


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return _refused(exc.status, exc.error, exc.description)


@bp.errorhandler(accounts.AccountError)
def account_error(exc: accounts.AccountError):
    if isinstance(exc, accounts.NotAMember):
        return _refused(404, "not_found", str(exc))
    if isinstance(exc, accounts.AccountConflict):
        return _refused(409, "conflict", str(exc))
    if isinstance(exc, accounts.UnknownRoleError):
        return _refused(422, "invalid_role", str(exc))
    return _refused(422, "invalid_request", str(exc))


@bp.errorhandler(upstream.UnknownProvider)
def provider_error(exc: upstream.UnknownProvider):
    return _refused(404, "not_found", str(exc))


@bp.errorhandler(scopes.UnknownScopeError)
def scope_error(exc: scopes.UnknownScopeError):
    return _refused(422, "invalid_scope", str(exc))


@bp.errorhandler(IntegrityError)
def integrity_error(exc: IntegrityError):
    # Another request created the same email, hub id or membership between our check and our write.
    return _refused(409, "conflict", "That conflicts with a change made meanwhile; read the current state and retry.")


# --- authentication ------------------------------------------------------------------------------
@bp.before_request
def authenticate():
    """HTTP Basic with an admin credential, or 401. An address with too many failed credential
    checks (here or at the OAuth endpoints) gets 429 before any credential is looked at."""
    retry_after = limits.failures_exceeded(get_remote_address())
    if retry_after is not None:
        return oauth_json_error(429, "temporarily_unavailable",
                                "Too many failed authentications from this address; retry after the time in "
                                "Retry-After.", {"Retry-After": str(retry_after)})
    try:
        presented = basic_credentials(request.headers.get("Authorization"))
    except ValueError:
        presented = None
    credential = admin_credentials.authenticate(*presented) if presented else None
    if credential is None:
        limits.note_client_auth_failure()
        if request.headers.get("Authorization"):
            # The id presented, unless it does not look like one (a secret pasted in its place).
            named = presented[0] if presented and _CREDENTIAL_ID.match(presented[0]) else None
            audit.record_apart("admin.auth_failed", admin_credential=named)
        return oauth_json_error(401, "invalid_client",
                                "Authenticate with an admin credential (HTTP Basic: credential id and secret).",
                                UNAUTHORIZED)
    g.admin_credential = credential
    audit.attribute(admin_credential=credential.credential_id)
    return None


@bp.after_request
def count_failures(response):
    limits.count_client_auth_failure(get_remote_address())
    response.headers["Cache-Control"] = "no-store"
    return response


# --- reading requests ----------------------------------------------------------------------------
def _body(allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """The JSON object of the request, with only `allowed` members and every `required` one."""
    if not request.is_json:
        raise ApiError(415, "invalid_request", "Send a JSON object with Content-Type: application/json.")
    try:
        data = json.loads(request.get_data())
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_request", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(400, "invalid_request",
                       f"Unknown member(s): {', '.join(_shown(k) for k in unknown)}. Known: {', '.join(allowed)}.")
    missing = [name for name in required if name not in data]
    if missing:
        raise ApiError(400, "invalid_request", f"Missing member(s): {', '.join(missing)}.")
    return data


def _shown(value: str) -> str:
    return json.dumps(value[:40])


def _text(data: dict, name: str) -> str | None:
    """A string member (None when absent), refused if it holds NUL or is not valid Unicode."""
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", f"'{name}' must be a string.")
    _check_text(value, name)
    return value


def _check_text(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_request", f"'{name}' is not valid Unicode text.") from None
    if "\x00" in value:
        raise ApiError(400, "invalid_request", f"'{name}' must not contain NUL characters.")


def _names(data: dict, name: str) -> list[str] | None:
    """A member that is a list of scope names (None when absent)."""
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, "invalid_request", f"'{name}' must be a list of scope names.")
    for item in value:
        _check_text(item, name)
    return value


def _boolean(data: dict, name: str) -> bool | None:
    if name not in data:
        return None
    if not isinstance(data[name], bool):
        raise ApiError(400, "invalid_request", f"'{name}' must be true or false.")
    return data[name]


def _integer(data: dict, name: str) -> int | None:
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, "invalid_request", f"'{name}' must be an integer.")
    return value


def _query_integer(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_request", f"'{name}' must be an integer from {low} to {high}.")
    return int(raw)


def _page() -> tuple[int, int]:
    """(after, limit) of a list request: items past `after` (an id), at most `limit` of them."""
    return _query_integer("after", 0, 0, 2**63 - 1), _query_integer("limit", PAGE_DEFAULT, 1, PAGE_MAX)


def _listed(key: str, items: list, limit: int, position):
    """A page of items, and where the next one starts (null on the last page)."""
    following = position(items[-1]) if len(items) == limit else None
    return _done({key: [_json(item) for item in items], "next_after": following})


# --- finding what a path names -------------------------------------------------------------------
def _user(user_id: str) -> User:
    user = accounts.get_user(user_id)
    if user is None:
        raise ApiError(404, "not_found", f"No user with id {_shown(user_id)}.")
    return user


def _hub(hub_id: str) -> Hub:
    hub = accounts.get_hub(hub_id)
    if hub is None:
        raise ApiError(404, "not_found", f"No hub with id {_shown(hub_id)}.")
    return hub


def _membership(hub_id: str, user_id: str) -> tuple[User, Hub, Membership]:
    hub, user = _hub(hub_id), _user(user_id)
    membership = accounts.get_membership(user, hub)
    if membership is None:
        raise accounts.NotAMember(f"User {user.id} is not a member of hub {hub.public_id}.")
    return user, hub, membership


# --- answers -------------------------------------------------------------------------------------
def _time(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def _json(item) -> dict:
    """The API's representation of a row."""
    if isinstance(item, User):
        return {
            "id": item.id, "email": item.email, "display_name": item.display_name, "disabled": bool(item.disabled),
            "has_password": accounts.has_password(item), "created_at": _time(item.created_at),
            "sessions_ended_at": _time(item.sessions_ended_at),
        }
    if isinstance(item, Hub):
        return {"id": item.public_id, "name": item.name, "created_at": _time(item.created_at)}
    if isinstance(item, Membership):
        return {
            "user_id": item.user_id, "hub_id": item.hub.public_id, "hub_name": item.hub.name, "role": item.role,
            "granted": list(item.granted or []), "denied": list(item.denied or []),
            "permissions": scopes.to_string(accounts.membership_permissions(item.user, item)).split(),
        }
    if isinstance(item, Grant):
        return {
            "id": item.id, "user_id": item.user_id, "hub_id": item.hub.public_id, "client_id": item.client.client_id,
            "client_name": item.client.client_name, "resource": item.resource.uri, "scope": item.scope,
            "created_at": _time(item.created_at), "last_used_at": _time(item.last_used_at),
        }
    if isinstance(item, UpstreamIdentity):
        return {
            "provider": item.provider, "subject": item.subject, "user_id": item.user_id,
            "email_at_link": item.email, "created_at": _time(item.created_at),
            "last_login_at": _time(item.last_login_at),
        }
    raise TypeError(type(item).__name__)


def _done(body: dict | None = None, status: int = 200, location: str | None = None):
    """Commit the request's work (one transaction per request) and answer."""
    db.session.commit()
    if body is None:
        return "", 204
    response = jsonify(body)
    response.status_code = status
    if location:
        response.headers["Location"] = location
    return response


# --- users ---------------------------------------------------------------------------------------
@bp.get("/users")
def list_users():
    after, limit = _page()
    email = request.args.get("email")
    return _listed("users", accounts.find_users(email=email, after=after, limit=limit), limit, lambda u: u.id)


@bp.post("/users")
def create_user():
    data = _body(("email", "display_name", "password"), required=("email",))
    user = accounts.create_user(_text(data, "email"), _text(data, "password"), _text(data, "display_name"))
    return _done(_json(user), 201, url_for(".get_user", user_id=user.id))


@bp.get("/users/<user_id>")
def get_user(user_id):
    return _done(_json(_user(user_id)))


@bp.patch("/users/<user_id>")
def update_user(user_id):
    user = _user(user_id)
    data = _body(("email", "display_name", "disabled"))
    email, display_name, disabled = _text(data, "email"), _text(data, "display_name"), _boolean(data, "disabled")
    accounts.update_user(user, email=email, display_name=display_name)
    if disabled is not None:
        accounts.set_disabled(user, disabled)
    return _done(_json(user))


@bp.post("/users/<user_id>/sessions/end")
def end_sessions(user_id):
    user = _user(user_id)
    accounts.end_sessions(user)
    return _done(_json(user))


@bp.get("/users/<user_id>/memberships")
def user_memberships(user_id):
    user = _user(user_id)
    return _done({"memberships": [_json(m) for m in accounts.find_user_memberships(user)]})


@bp.get("/users/<user_id>/grants")
def user_grants(user_id):
    user = _user(user_id)
    return _done({"grants": [_json(grant) for grant in store.find_user_grants(user)]})


@bp.delete("/users/<user_id>/grants/<grant_id>")
def revoke_grant(user_id, grant_id):
    """Revoke a connected app: its tokens stop working at once. Revoking a revoked grant is done."""
    user = _user(user_id)
    grant = store.get_user_grant(user, grant_id)
    if grant is None:
        raise ApiError(404, "not_found", f"User {user.id} has no grant with id {_shown(grant_id)}.")
    if grant.revoked_at is None:
        store.revoke_grant(grant, reason="admin")
    return _done()


# --- upstream identities (who signs in as the user through the operator's provider) ------------
@bp.get("/users/<user_id>/identities")
def user_identities(user_id):
    user = _user(user_id)
    return _done({"identities": [_json(i) for i in accounts.find_upstream_identities(user)]})


@bp.put("/users/<user_id>/identities/<provider>")
def link_identity(user_id, provider):
    """Let the person whose `sub` at a configured provider is `subject` sign in as this user (the
    product's back end knows both). Linking what is already linked is done; a subject linked to
    someone else, or another subject of the same provider on this user, is a conflict."""
    user, name = _user(user_id), upstream.configured_provider(provider)["name"]
    subject = _text(_body(("subject",), required=("subject",)), "subject")
    current = accounts.find_upstream_identities(user, name)
    same = next((identity for identity in current if identity.subject == subject), None)
    if same is not None:
        return _done(_json(same))
    if current:
        raise ApiError(409, "conflict", f"User {user.id} is already linked to another subject at {name}; "
                                        "unlink it first (DELETE this path).")
    identity = accounts.link_upstream_identity(user, name, subject, None)
    return _done(_json(identity), 201, url_for(".user_identities", user_id=user.id))


@bp.delete("/users/<user_id>/identities/<provider>")
def unlink_identity(user_id, provider):
    """The user can no longer sign in through that provider (it may be gone from the settings)."""
    user = _user(user_id)
    if not accounts.unlink_upstream_identities(user, provider[:64]):
        raise ApiError(404, "not_found", f"User {user.id} has no identity at {_shown(provider)}.")
    return _done()


# --- hubs ----------------------------------------------------------------------------------------
@bp.get("/hubs")
def list_hubs():
    after, limit = _page()
    return _listed("hubs", accounts.find_hubs(after=after, limit=limit), limit, lambda h: h.public_id)


@bp.post("/hubs")
def create_hub():
    data = _body(("name", "id"), required=("name",))
    hub = accounts.create_hub(_text(data, "name"), _integer(data, "id"))
    return _done(_json(hub), 201, url_for(".get_hub", hub_id=hub.public_id))


@bp.get("/hubs/<hub_id>")
def get_hub(hub_id):
    return _done(_json(_hub(hub_id)))


# --- memberships and permission overrides --------------------------------------------------------
@bp.get("/hubs/<hub_id>/members")
def hub_members(hub_id):
    hub = _hub(hub_id)
    return _done({"memberships": [_json(m) for m in accounts.find_hub_memberships(hub)]})


@bp.post("/hubs/<hub_id>/members")
def add_member(hub_id):
    hub = _hub(hub_id)
    data = _body(("user_id", "role"), required=("user_id", "role"))
    user_id, role = _integer(data, "user_id"), _text(data, "role")
    user = accounts.get_user(user_id)
    if user is None:
        raise ApiError(422, "invalid_request", f"No user with id {user_id}.")
    membership = accounts.add_member(user, hub, role)
    return _done(_json(membership), 201, url_for(".get_member", hub_id=hub.public_id, user_id=user.id))


@bp.get("/hubs/<hub_id>/members/<user_id>")
def get_member(hub_id, user_id):
    return _done(_json(_membership(hub_id, user_id)[2]))


@bp.patch("/hubs/<hub_id>/members/<user_id>")
def update_member(hub_id, user_id):
    """Change the role and/or replace the lists of explicit grants and denials."""
    user, hub, membership = _membership(hub_id, user_id)
    data = _body(("role", "granted", "denied"))
    role, granted, denied = _text(data, "role"), _names(data, "granted"), _names(data, "denied")
    if role is not None:
        accounts.set_role(user, hub, role)
    if granted is not None or denied is not None:
        accounts.set_overrides(user, hub, granted=granted, denied=denied)
    return _done(_json(membership))


@bp.delete("/hubs/<hub_id>/members/<user_id>")
def remove_member(hub_id, user_id):
    user, hub, _ = _membership(hub_id, user_id)
    accounts.remove_member(user, hub)
    return _done()


@bp.route("/hubs/<hub_id>/members/<user_id>/granted/<scope>", methods=["PUT", "DELETE"])
def granted_scope(hub_id, user_id, scope):
    """PUT adds the scope to the member's explicit grants (lifting a denial of it); DELETE
    withdraws the grant, leaving the role to decide."""
    return _override(hub_id, user_id, scope, accounts.grant_permission, accounts.withdraw_grant)


@bp.route("/hubs/<hub_id>/members/<user_id>/denied/<scope>", methods=["PUT", "DELETE"])
def denied_scope(hub_id, user_id, scope):
    """PUT adds the scope to the member's explicit denials (dropping a grant of it); DELETE
    withdraws the denial, leaving the role to decide."""
    return _override(hub_id, user_id, scope, accounts.deny_permission, accounts.withdraw_denial)


def _override(hub_id, user_id, scope, add, withdraw):
    user, hub, membership = _membership(hub_id, user_id)
    (add if request.method == "PUT" else withdraw)(user, hub, scope)
    return _done(_json(membership))
