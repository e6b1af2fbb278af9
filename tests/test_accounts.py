"""accounts.permissions: role presets, explicit grants and denials, membership and account state."""

from __future__ import annotations

import pytest

from authserver import accounts, create_app
from authserver.accounts import DEFAULT_ROLES
from authserver.extensions import db
from authserver.models import Membership
from authserver.scopes import DEFAULT_CATALOG

EVERY_SCOPE = frozenset(DEFAULT_CATALOG)
SALES = frozenset(DEFAULT_ROLES["sales"])
VIEWER = frozenset(DEFAULT_ROLES["viewer"])
CONTACTS_WRITE = "crm.objects.contacts.write"
DEALS_WRITE = "crm.objects.deals.write"


def set_membership(app, user, hub, role, granted=(), denied=()):
    """Store a membership row exactly as given (bypassing the accounts API's normalisation)."""
    with app.app_context():
        db.session.add(Membership(user_id=user.id, hub_id=hub.id, role=role, granted=list(granted), denied=list(denied)))
        db.session.commit()


def permissions_of(app, user, hub) -> frozenset[str]:
    with app.app_context():
        return accounts.permissions(accounts.get_user(user.id), accounts.get_hub(hub.public_id))


@pytest.mark.parametrize(
    ("role", "granted", "denied", "expected"),
    [
        pytest.param("admin", [], [], EVERY_SCOPE, id="admin preset: every scope"),
        pytest.param("sales", [], [], SALES, id="sales preset"),
        pytest.param("viewer", [], [], VIEWER, id="viewer preset"),
        pytest.param("viewer", [CONTACTS_WRITE], [], VIEWER | {CONTACTS_WRITE}, id="grant adds to role"),
        pytest.param("admin", [], [DEALS_WRITE], EVERY_SCOPE - {DEALS_WRITE}, id="denial beats role"),
        pytest.param("viewer", [CONTACTS_WRITE], [CONTACTS_WRITE], VIEWER, id="denial beats grant"),
        pytest.param("sales", [], ["crm.objects.contacts.read"], SALES - {"crm.objects.contacts.read"},
                     id="denial of a role scope"),
        pytest.param("viewer", ["crm.objects.unknown.read"], [], VIEWER, id="granted scope not in catalog ignored"),
        pytest.param("retired", ["crm.objects.notes.read"], [], {"crm.objects.notes.read"},
                     id="role no longer configured: explicit grants only"),
    ],
)
def test_permissions_table(app, make_user, make_hub, role, granted, denied, expected):
    user, hub = make_user(), make_hub()
    set_membership(app, user, hub, role, granted, denied)
    assert permissions_of(app, user, hub) == expected


def test_permissions_are_per_hub(app, make_user, make_hub):
    acme, globex = make_hub("Acme"), make_hub("Globex")
    user = make_user(role="admin", hubs=[acme])
    assert permissions_of(app, user, acme) == EVERY_SCOPE
    assert permissions_of(app, user, globex) == frozenset()


def test_removed_membership_has_no_permissions(app, make_user, make_hub):
    hub = make_hub()
    user = make_user(role="admin", hubs=[hub])
    with app.app_context():
        accounts.remove_member(accounts.get_user(user.id), accounts.get_hub(hub.public_id))
        db.session.commit()
    assert permissions_of(app, user, hub) == frozenset()


def test_disabled_user_has_no_permissions(app, make_user, make_hub):
    hub = make_hub()
    user = make_user(role="admin", hubs=[hub], disabled=True)
    assert permissions_of(app, user, hub) == frozenset()


def test_grant_lifts_denial_and_deny_drops_grant(app, make_user, make_hub):
    hub = make_hub()
    user = make_user(role="viewer", hubs=[hub])
    with app.app_context():
        u, h = accounts.get_user(user.id), accounts.get_hub(hub.public_id)
        accounts.deny_permission(u, h, CONTACTS_WRITE)
        membership = accounts.grant_permission(u, h, CONTACTS_WRITE)
        assert (membership.granted, membership.denied) == ([CONTACTS_WRITE], [])
        membership = accounts.deny_permission(u, h, CONTACTS_WRITE)
        assert (membership.granted, membership.denied) == ([], [CONTACTS_WRITE])
        assert CONTACTS_WRITE not in accounts.permissions(u, h)


def test_unknown_role_refused_for_members(app, make_user, make_hub):
    hub, user = make_hub(), make_user()
    with app.app_context():
        with pytest.raises(accounts.AccountError, match="Unknown role 'owner'"):
            accounts.add_member(accounts.get_user(user.id), accounts.get_hub(hub.public_id), "owner")


@pytest.mark.parametrize(
    "roles",
    [
        pytest.param({"auditor": ["crm.objects.contacts.read", "crm.objects.invoices.read"]}, id="unknown scope"),
        pytest.param({"auditor": ["*", "crm.objects.contacts.read"]}, id="wildcard mixed with names"),
    ],
)
def test_unknown_scope_in_roles_config_refused(roles):
    with pytest.raises(ValueError, match="auditor"):
        create_app({"TESTING": True, "ROLES": roles})


def test_custom_roles_config(make_app):
    app = make_app(ROLES={"support": ["crm.objects.tickets.read", "crm.objects.tickets.write"], "owner": ["*"]})
    with app.app_context():
        assert accounts.roles() == {
            "support": {"crm.objects.tickets.read", "crm.objects.tickets.write"},
            "owner": EVERY_SCOPE,
        }


@pytest.mark.parametrize("second", ["alice@example.com", "Alice@Example.COM", "  ALICE@example.com "])
def test_email_is_unique_case_insensitively(app, make_user, second):
    make_user("Alice@Example.com")
    with app.app_context():
        with pytest.raises(accounts.AccountError, match="already exists"):
            accounts.create_user(second, "another password")
        assert accounts.get_user_by_email(second).email == "alice@example.com"


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", "long enough", "Not a valid email"),
        ("a b@example.com", "long enough", "Not a valid email"),
        ("bob@example.com", "short", "at least 8 characters"),
    ],
)
def test_create_user_validation(app, email, password, message):
    with app.app_context():
        with pytest.raises(accounts.AccountError, match=message):
            accounts.create_user(email, password)


def test_authenticate(app, make_user):
    make_user("carol@example.com", password="right password")
    make_user("dave@example.com", password="right password", disabled=True)
    with app.app_context():
        assert accounts.authenticate("CAROL@example.com", "right password").email == "carol@example.com"
        assert accounts.authenticate("carol@example.com", "wrong password") is None
        assert accounts.authenticate("nobody@example.com", "right password") is None
        assert accounts.authenticate("dave@example.com", "right password") is None


@pytest.mark.parametrize("offset", range(-3, 4))
def test_sessions_signed_in_up_to_the_second_they_were_ended_are_over(offset):
    # A session's auth_time is whole epoch seconds: one from the very second of the reset may
    # predate it, so it is over too; any later one is not, and nothing is over before any reset.
    from datetime import datetime

    from authserver.models import User
    from authserver.timeutil import to_epoch

    ended_at = datetime(2026, 1, 1, 12, 0, 0, 500_000)
    auth_time = to_epoch(ended_at) + offset
    assert accounts.session_ended(User(sessions_ended_at=ended_at), auth_time) is (offset <= 0)
    assert accounts.session_ended(User(sessions_ended_at=None), auth_time) is False
