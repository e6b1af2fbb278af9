"""The suite's own machinery: servers shared by a module's tests (`shared_stack` in conftest.py)
are started once, and every test that uses them begins from the state they were seeded with,
whatever an earlier test changed, added or counted."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from conftest import PASSWORD
from sqlalchemy import select

from authserver import accounts, limits
from authserver.extensions import db
from authserver.models import Hub, User

LIMIT = ("LOGIN_ATTEMPTS_PER_IP", "login-ip", "192.0.2.1")


def seeding(build_app, started: list):
    """start() for shared_stack: an app seeded with one user in one hub, counted in `started`."""

    @contextmanager
    def start():
        app = build_app(LOGIN_ATTEMPTS_PER_IP="1 per hour")
        with app.app_context():
            accounts.add_member(accounts.create_user("seed@example.com", PASSWORD, "Seed"),
                                accounts.create_hub("Seed hub", 10000001), "admin")
            db.session.commit()
        started.append(app)
        yield f"stack {len(started)}", app

    return start


def test_a_stack_starts_once_per_key_and_each_use_begins_from_its_seed(shared_stack, build_app):
    started = []
    start = seeding(build_app, started)

    assert shared_stack("a", start) == "stack 1"
    app = started[0]
    with app.app_context():
        seeded = _state()
        # What a test may leave behind: a row changed, rows added, a rate limit reached.
        accounts.get_user_by_email("seed@example.com").display_name = "Changed"
        accounts.add_member(accounts.create_user("extra@example.com", PASSWORD),
                            accounts.create_hub("Extra hub", 10000002), "viewer")
        db.session.commit()
        assert limits.hit(*LIMIT) is None
        assert limits.hit(*LIMIT) is not None

    assert shared_stack("a", start) == "stack 1"
    assert len(started) == 1
    with app.app_context():
        assert _state() == seeded
        assert limits.hit(*LIMIT) is None
        # Rows added now get ids past the seeded ones (on PostgreSQL, the sequences moved on).
        accounts.add_member(accounts.create_user("next@example.com", PASSWORD),
                            accounts.create_hub("Next hub", 10000003), "viewer")
        db.session.commit()

    assert shared_stack("b", start) == "stack 2"
    assert shared_stack("a", start) == "stack 1"
    assert len(started) == 2
    with app.app_context():
        assert _state() == seeded


@pytest.fixture
def stack(shared_stack, build_app):
    return shared_stack("fixture", seeding(build_app, []))


def test_an_app_made_by_a_later_fixture_leaves_the_seed_in_place(stack, make_app):
    with make_app().app_context():
        assert [u.email for u in db.session.scalars(select(User))] == ["seed@example.com"]


def _state():
    users = [(u.id, u.email, u.display_name) for u in db.session.scalars(select(User).order_by(User.id))]
    hubs = [(h.id, h.public_id, h.name) for h in db.session.scalars(select(Hub).order_by(Hub.id))]
    return users, hubs
