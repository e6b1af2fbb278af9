"""Threat: a session cookie that works forever (issue 11 item 10; OWASP ASVS 3.3.2).

Defence: views/auth.py current_user() treats a session whose sign-in (auth_time) is older than
SESSION_ABSOLUTE_LIFETIME seconds as signed out, however recently it was used: every page and
the authorization endpoint then ask for the password again."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, authorize_params

from authserver.config import Defaults

from .support import signed_in


def age_session(client, seconds: int) -> None:
    """Pretend the browser signed in `seconds` ago."""
    with client.session_transaction() as session:
        session["auth_time"] -= seconds


def is_signed_in_on_every_page(flow, client_id: str) -> bool:
    home = flow.client.get("/")
    apps = flow.client.get("/account/apps")
    authorize = flow.consent_page(authorize_params(client_id, PKCE()))
    results = {home.status_code == 200, apps.status_code == 200, authorize.status_code == 200}
    assert len(results) == 1, "the pages disagree about the session"
    if not results.pop():
        for response in (home, apps, authorize):
            assert response.status_code == 302 and "/login" in response.headers["Location"]
        return False
    return True


def test_the_default_lifetime_is_twelve_hours():
    assert Defaults.SESSION_ABSOLUTE_LIFETIME == 12 * 3600


@pytest.mark.parametrize("lifetime", [
    pytest.param(seconds, marks=pytest.mark.app_config(SESSION_ABSOLUTE_LIFETIME=seconds))
    for seconds in (60, 3600, 12 * 3600)
])
def test_a_session_ends_when_its_sign_in_is_older_than_the_lifetime(flow, register, lifetime):
    client_id = register()["client_id"]
    assert is_signed_in_on_every_page(flow, client_id)
    age_session(flow.client, lifetime - 30)  # in use all along, but the age is what counts
    assert is_signed_in_on_every_page(flow, client_id)
    age_session(flow.client, 31)
    assert not is_signed_in_on_every_page(flow, client_id)
    # Signing in again starts a new lifetime.
    flow.login()
    assert signed_in(flow.client) and is_signed_in_on_every_page(flow, client_id)
