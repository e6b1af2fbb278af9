"""The `live` stack is started once per settings for the interop tests, and each of them begins
from its seed: authserver's rows and the example server's own data as they were loaded, whatever
another test changed."""

from __future__ import annotations

import pytest
from crm_mcp.data import CRM
from sqlalchemy import select

from authserver import accounts
from authserver.extensions import db
from authserver.models import User

ACME = 10000001
SOMEONE = 424242  # a user id the example server knows nothing about


@pytest.mark.parametrize("turn", ["one", "another"])
def test_every_test_begins_from_the_seed_of_the_shared_stack(live, turn):
    """Twice on one stack, each checking the seed then changing it: the second sees nothing of the first."""
    crm = CRM(live.crm_database)
    with live.app.app_context():
        assert [u.email for u in db.session.scalars(select(User))] == [live.email]
        accounts.create_user(f"{turn}@example.com", live.password)
        db.session.commit()
    assert crm.viewer(ACME, SOMEONE).seat is None
    crm.assign_seat(ACME, SOMEONE, "fox@acme.example")
    crm.set_access(ACME, SOMEONE, "own")
    assert crm.viewer(ACME, SOMEONE).seat is not None
