"""Users, hubs and memberships, and the one answer to "what may this user do in this hub"."""

from __future__ import annotations

import secrets as _secrets

from flask import current_app
from sqlalchemy import bindparam, select
from sqlalchemy.orm import contains_eager

from . import audit, scopes, store
from .config import ConfigError
from .extensions import db
from .models import Hub, Membership, UpstreamIdentity, User
from .secrets import has_usable_password, hash_password, password_needs_rehash, unusable_password_hash, verify_password
from .timeutil import to_epoch, utcnow

#: Role presets: role name -> scopes ("*" means every scope in the catalog).
DEFAULT_ROLES: dict[str, list[str]] = {
    "admin": ["*"],
    "sales": [
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
        "crm.objects.deals.read",
        "crm.objects.deals.write",
        "crm.objects.notes.read",
        "crm.objects.notes.write",
        "crm.objects.owners.read",
    ],
    "viewer": [
        "crm.objects.contacts.read",
        "crm.objects.companies.read",
        "crm.objects.deals.read",
        "crm.objects.tickets.read",
        "crm.objects.notes.read",
        "crm.objects.owners.read",
    ],
}


class AccountError(ValueError):
    """A request about users, hubs or memberships that cannot be carried out (message is public)."""


class AccountConflict(AccountError):
    """The request would duplicate what exists: an email, a hub id, a membership."""


class NotAMember(AccountError):
    """The user has no membership in the hub the request is about."""


class UnknownRoleError(AccountError):
    """A role name that is not a configured preset (the message lists the known ones)."""


#: Public hub ids have 8 digits.
HUB_ID_MIN, HUB_ID_MAX = 10_000_000, 99_999_999
#: Row ids are 32-bit integers on PostgreSQL: a larger number names no row (and must not reach a
#: query, where it would be a database error).
_ID_MAX = 2**31 - 1


def build_roles(raw: dict | None, catalog: dict) -> dict[str, frozenset[str]]:
    """Validate role presets against the scope catalog; '*' expands to every scope."""
    raw = DEFAULT_ROLES if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("ROLES must be a mapping of role name to a list of scope names.")
    roles: dict[str, frozenset[str]] = {}
    for role, names in raw.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"Role {role!r} in ROLES needs a list of scope names.")
        if names == ["*"]:
            roles[role] = frozenset(catalog)
            continue
        unknown = [n for n in names if n not in catalog]
        if unknown:
            raise ConfigError(f"Role {role!r} names unknown scopes: {', '.join(unknown)}.")
        roles[role] = frozenset(names)
    return roles


def roles() -> dict[str, frozenset[str]]:
    return current_app.extensions["authserver.roles"]


# --- permissions ---------------------------------------------------------------------------------
def membership_permissions(user: User | None, membership: Membership | None) -> frozenset[str]:
    """Role preset + explicit grants − explicit denials; empty for a disabled user or no membership.

    Every permission decision in authserver goes through this function (via ``permissions`` or,
    on the hot path, with rows already loaded by the introspection query)."""
    if user is None or membership is None:
        return frozenset()
    return permissions_from(user.disabled, membership.role, membership.granted, membership.denied)


def permissions_from(disabled: bool | None, role: str | None, granted, denied) -> frozenset[str]:
    """The same answer from plain column values (hot paths read them without loading rows); a
    None role means no membership."""
    if disabled or role is None:
        return frozenset()
    base = roles().get(role, frozenset())
    if not granted and not denied:
        return base
    known = scopes.catalog()
    return frozenset((base | {s for s in (granted or []) if s in known}) - set(denied or []))


def permissions(user: User, hub: Hub) -> frozenset[str]:
    """What this user may do in this hub, right now."""
    membership = get_membership(user, hub)
    return membership_permissions(user, membership)


# --- users ---------------------------------------------------------------------------------------
def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


_USER_BY_EMAIL = select(User).where(User.email == bindparam("email"))


def get_user_by_email(email: str) -> User | None:
    return db.session.scalar(_USER_BY_EMAIL, {"email": normalize_email(email)})


def get_user(user_id: int | str) -> User | None:
    try:
        user_id = int(user_id)
    except (TypeError, ValueError):
        return None
    if not 0 < user_id <= _ID_MAX:
        return None
    return db.session.get(User, user_id)


def _printable(value: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def _check_email(email: str | None, user: User | None = None) -> str:
    """The normalized email, if it is well-formed and no other user has it."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email) or not _printable(email):
        raise AccountError(f"Not a valid email address: {email!r}.")
    other = get_user_by_email(email)
    if other is not None and other is not user:
        raise AccountConflict(f"A user with email {email} already exists.")
    return email


def _check_display_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200 or not _printable(name):
        raise AccountError("A display name has 1 to 200 printable characters.")
    return name


def create_user(email: str, password: str | None, display_name: str | None = None, **detail) -> User:
    """A new, enabled account. Without a password it signs in only some other way (an upstream
    identity provider): no password ever matches it."""
    email = _check_email(email)
    if password is not None:
        _check_password(password)
    user = User(
        email=email,
        display_name=_check_display_name(display_name if display_name is not None
                                          else (email.split("@")[0] or email)[:200]),
        password_hash=hash_password(password) if password is not None else unusable_password_hash(),
        disabled=False,
    )
    db.session.add(user)
    db.session.flush()
    audit.record("user.created", user=user, **detail)
    return user


def create_upstream_user(email: str, display_name: str | None = None) -> User:
    """A user who signs in through an upstream provider only: no password matches theirs, and
    they have no hub memberships until the product grants them. A provider's long name is cut,
    not refused."""
    return create_user(email, None, (display_name or "").strip()[:200] or None, via="upstream")


def update_user(user: User, *, email: str | None = None, display_name: str | None = None) -> None:
    """Change a user's email or display name (each checked first: a refused change changes nothing)."""
    email = _check_email(email, user) if email is not None else user.email
    display_name = _check_display_name(display_name) if display_name is not None else user.display_name
    changed = [field for field, value in (("email", email), ("display_name", display_name))
               if getattr(user, field) != value]
    if not changed:
        return
    user.email, user.display_name = email, display_name
    db.session.flush()
    audit.record("user.updated", user=user, fields=" ".join(changed))


def has_password(user: User) -> bool:
    """Whether the user can sign in with a password at all."""
    return has_usable_password(user.password_hash)


def _check_password(password: str | None) -> None:
    if len(password or "") < 8:
        raise AccountError("The password must be at least 8 characters long.")
    if len(password) > 1024:
        raise AccountError("The password must be at most 1024 characters long.")


def set_password(user: User, password: str) -> None:
    """An operator's reset: a new password, and every session signed in before it ended
    (including any taken over by whoever made the reset necessary)."""
    _check_password(password)
    user.password_hash = hash_password(password)
    _end_sessions(user)
    audit.record("user.password_set", user=user)


def _end_sessions(user: User) -> None:
    user.sessions_ended_at = utcnow()
    db.session.flush()


def end_sessions(user: User) -> None:
    """Sign the user out everywhere: every session signed in until now ends at its next request
    (sessions are signed cookies: the cut-off is a time on the user). Apps keep their grants."""
    _end_sessions(user)
    audit.record("user.sessions_ended", user=user)


def set_disabled(user: User, disabled: bool) -> None:
    """Disable an account (no sign-in, no permissions in any hub; its sessions end and its grants
    are revoked with every token issued under them, so enabling it again revives neither) or
    enable it. Disabling a disabled account changes nothing."""
    if user.disabled == disabled:
        return
    user.disabled = disabled
    if disabled:
        _end_sessions(user)
        revoked = store.revoke_user_grants(user)
        audit.record("user.disabled", user=user, grants_revoked=revoked)
    else:
        db.session.flush()
        audit.record("user.enabled", user=user)


def session_ended(user: User, auth_time: int) -> bool:
    """Whether a session signed in at `auth_time` (epoch seconds) was ended with all the user's
    sessions; one signed in within the same second counts as ended, to be safe."""
    return user.sessions_ended_at is not None and auth_time <= to_epoch(user.sessions_ended_at)


def authenticate(email: str, password: str) -> User | None:
    """The user if the email and password match an enabled account, else None (same cost either way)."""
    user = get_user_by_email(email)
    ok = verify_password(user.password_hash if user else None, password or "")
    if not ok or user is None or user.disabled:
        return None
    # The password is at hand only now: bring its hash to the configured parameters (the view
    # commits), so raising PASSWORD_HASH_* takes effect as people sign in.
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        db.session.flush()
    return user


def find_users(*, email: str | None = None, after: int = 0, limit: int | None = None) -> list[User]:
    """Users by id: those with this email (normalized) if given, from the first id past `after`,
    at most `limit` of them."""
    query = select(User).where(User.id > min(after, _ID_MAX)).order_by(User.id).limit(limit)
    if email is not None:
        query = query.where(User.email == normalize_email(email))
    return list(db.session.scalars(query))


# --- upstream identities -------------------------------------------------------------------------
_UPSTREAM_IDENTITY = select(UpstreamIdentity).where(
    UpstreamIdentity.provider == bindparam("provider"), UpstreamIdentity.subject == bindparam("subject"))


def get_upstream_identity(provider: str, subject: str) -> UpstreamIdentity | None:
    """The link of (provider, subject) to a user: the only way an upstream sign-in finds one."""
    return db.session.scalar(_UPSTREAM_IDENTITY, {"provider": provider, "subject": subject})


def find_upstream_identities(user: User, provider: str | None = None) -> list[UpstreamIdentity]:
    query = select(UpstreamIdentity).where(UpstreamIdentity.user_id == user.id).order_by(UpstreamIdentity.id)
    if provider is not None:
        query = query.where(UpstreamIdentity.provider == provider)
    return list(db.session.scalars(query))


def link_upstream_identity(user: User, provider: str, subject: str, email: str | None) -> UpstreamIdentity:
    """Record that (provider, subject) signs in as `user`; the email is kept as a record only."""
    # OpenID Connect Core §2: at most 255 ASCII characters (what an upstream sign-in accepts).
    if not subject or len(subject) > 255 or not subject.isascii() or not subject.isprintable():
        raise AccountError("An upstream subject is 1 to 255 printable ASCII characters.")
    linked = get_upstream_identity(provider, subject)
    if linked is not None:
        raise AccountConflict(f"Subject {subject!r} at {provider} is already linked to user {linked.user_id}.")
    identity = UpstreamIdentity(provider=provider, subject=subject, user_id=user.id,
                                email=normalize_email(email)[:320] if email else None)
    db.session.add(identity)
    db.session.flush()
    audit.record("user.upstream_linked", user=user, provider=provider, subject=subject)
    return identity


def unlink_upstream_identities(user: User, provider: str) -> int:
    """Remove the user's links at `provider` (they can no longer sign in through it); how many."""
    identities = find_upstream_identities(user, provider)
    for identity in identities:
        db.session.delete(identity)
    db.session.flush()
    if identities:
        audit.record("user.upstream_unlinked", user=user, provider=provider)
    return len(identities)


# --- hubs ----------------------------------------------------------------------------------------
def get_hub(public_id: int | str) -> Hub | None:
    try:
        public_id = int(public_id)
    except (TypeError, ValueError):
        return None
    if not 0 < public_id < 2**63:  # outside BIGINT: no such hub (and no database error)
        return None
    return db.session.scalar(select(Hub).where(Hub.public_id == public_id))


def create_hub(name: str, public_id: int | None = None) -> Hub:
    name = (name or "").strip()
    if not name or len(name) > 200 or not _printable(name):
        raise AccountError("A hub needs a name of 1 to 200 printable characters.")
    if public_id is None:
        while True:
            public_id = HUB_ID_MIN + _secrets.randbelow(HUB_ID_MAX - HUB_ID_MIN + 1)
            if get_hub(public_id) is None:
                break
    elif not HUB_ID_MIN <= public_id <= HUB_ID_MAX:
        raise AccountError(f"A hub id has 8 digits ({HUB_ID_MIN} to {HUB_ID_MAX}).")
    elif get_hub(public_id) is not None:
        raise AccountConflict(f"Hub {public_id} already exists.")
    hub = Hub(public_id=public_id, name=name)
    db.session.add(hub)
    db.session.flush()
    audit.record("hub.created", hub=hub, name=name)
    return hub


def find_hubs(*, after: int = 0, limit: int | None = None) -> list[Hub]:
    """Hubs by public id, from the first past `after`, at most `limit` of them."""
    return list(db.session.scalars(
        select(Hub).where(Hub.public_id > after).order_by(Hub.public_id).limit(limit)))


def find_user_hubs(user: User) -> list[Hub]:
    """Hubs the user is a member of, by name."""
    return [membership.hub for membership in find_user_memberships(user)]


# --- memberships ---------------------------------------------------------------------------------
# Built once, with the hub loaded in the same round trip: the consent page reads both.
_USER_MEMBERSHIPS = (
    select(Membership)
    .join(Membership.hub)
    .options(contains_eager(Membership.hub))
    .where(Membership.user_id == bindparam("user_id"))
    .order_by(Hub.name, Hub.id)
)


def find_user_memberships(user: User) -> list[Membership]:
    """The user's memberships, each with its hub loaded, by hub name."""
    return list(db.session.scalars(_USER_MEMBERSHIPS, {"user_id": user.id}))


def find_hub_memberships(hub: Hub) -> list[Membership]:
    """The hub's memberships, each with its user loaded, by user id."""
    return list(db.session.scalars(
        select(Membership).join(Membership.user).options(contains_eager(Membership.user))
        .where(Membership.hub_id == hub.id).order_by(User.id)))


def get_membership(user: User, hub: Hub) -> Membership | None:
    return db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.hub_id == hub.id)
    )


def _check_role(role: str) -> str:
    if role not in roles():
        raise UnknownRoleError(f"Unknown role {role!r}. Known roles: {', '.join(roles())}.")
    return role


def add_member(user: User, hub: Hub, role: str) -> Membership:
    _check_role(role)
    if get_membership(user, hub) is not None:
        raise AccountConflict(f"{user.email} is already a member of hub {hub.public_id}.")
    membership = Membership(user_id=user.id, hub_id=hub.id, role=role, granted=[], denied=[])
    db.session.add(membership)
    db.session.flush()
    audit.record("membership.added", user=user, hub=hub, role=role)
    return membership


def _require_membership(user: User, hub: Hub) -> Membership:
    membership = get_membership(user, hub)
    if membership is None:
        raise NotAMember(f"{user.email} is not a member of hub {hub.public_id}.")
    return membership


def remove_member(user: User, hub: Hub) -> None:
    db.session.delete(_require_membership(user, hub))
    audit.record("membership.removed", user=user, hub=hub)
    db.session.flush()


def set_role(user: User, hub: Hub, role: str) -> Membership:
    membership = _require_membership(user, hub)
    membership.role = _check_role(role)
    db.session.flush()
    audit.record("membership.role_changed", user=user, hub=hub, role=role)
    return membership


def grant_permission(user: User, hub: Hub, scope: str) -> Membership:
    """Explicitly allow a scope (and lift an explicit denial of it)."""
    scopes.validate_names([scope])
    membership = _require_membership(user, hub)
    membership.granted = sorted(set(membership.granted or []) | {scope})
    membership.denied = sorted(set(membership.denied or []) - {scope})
    db.session.flush()
    audit.record("membership.permission_granted", user=user, hub=hub, scope=scope)
    return membership


def deny_permission(user: User, hub: Hub, scope: str) -> Membership:
    """Explicitly deny a scope, whatever the role allows (and drop an explicit grant of it)."""
    scopes.validate_names([scope])
    membership = _require_membership(user, hub)
    membership.denied = sorted(set(membership.denied or []) | {scope})
    membership.granted = sorted(set(membership.granted or []) - {scope})
    db.session.flush()
    audit.record("membership.permission_denied", user=user, hub=hub, scope=scope)
    return membership


def set_overrides(user: User, hub: Hub, *, granted: list[str] | None = None,
                  denied: list[str] | None = None) -> Membership:
    """Replace a member's explicit grants and/or denials (each list checked against the catalog,
    and against the other: a scope cannot be both granted and denied)."""
    membership = _require_membership(user, hub)
    new_granted = sorted(scopes.validate_names(granted)) if granted is not None else list(membership.granted or [])
    new_denied = sorted(scopes.validate_names(denied)) if denied is not None else list(membership.denied or [])
    both = sorted(set(new_granted) & set(new_denied))
    if both:
        raise AccountError(f"A scope cannot be both granted and denied: {', '.join(both)}.")
    membership.granted, membership.denied = new_granted, new_denied
    db.session.flush()
    audit.record("membership.overrides_set", user=user, hub=hub, granted=" ".join(new_granted),
                 denied=" ".join(new_denied))
    return membership


def withdraw_grant(user: User, hub: Hub, scope: str) -> Membership:
    """Drop an explicit grant of a scope (the role decides again)."""
    return _withdraw(user, hub, scope, "granted", "membership.grant_withdrawn")


def withdraw_denial(user: User, hub: Hub, scope: str) -> Membership:
    """Drop an explicit denial of a scope (the role decides again)."""
    return _withdraw(user, hub, scope, "denied", "membership.denial_withdrawn")


def _withdraw(user: User, hub: Hub, scope: str, overrides: str, event: str) -> Membership:
    scopes.validate_names([scope])
    membership = _require_membership(user, hub)
    setattr(membership, overrides, sorted(set(getattr(membership, overrides) or []) - {scope}))
    db.session.flush()
    audit.record(event, user=user, hub=hub, scope=scope)
    return membership
