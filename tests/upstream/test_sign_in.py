"""Signing in through the operator's OpenID Connect provider, end to end over real HTTP: the
session it makes, the link by (provider, sub), linking by verified email and creating accounts
only as the operator allows, and the password form switched off."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from authserver import accounts, audit
from authserver.extensions import db
from authserver.models import Membership, UpstreamIdentity, User
from authserver.secrets import verify_password

from .conftest import NAME, PEOPLE, provider_settings


def home(browser):
    """The home page: 200 with the signed-in user's name, or 302 to the sign-in page."""
    return browser.http.get(browser.url("/"))


def identities(app):
    with app.app_context():
        return [(i.provider, i.subject, i.user_id) for i in db.session.scalars(select(UpstreamIdentity))]


def test_sign_in_links_by_subject_and_reuses_the_link(upstream, browser, make_user, stage):
    app = upstream()
    user = make_user("someone.else@example.com")
    with app.app_context():
        accounts.link_upstream_identity(accounts.get_user(user.id), NAME, PEOPLE["vera"][0], "old@example.com")
        db.session.commit()

    response = browser.sign_in("vera", next_path="/account/apps")
    assert response.status_code == 302 and response.headers["Location"] == "/account/apps"
    page = home(browser)
    assert page.status_code == 200 and "someone.else" in page.text

    # A new browser (no session here or at the provider), in again: the same link, the same user.
    browser.http.cookies.clear()
    again = browser.sign_in("vera")
    assert again.status_code == 302
    assert identities(app) == [(NAME, PEOPLE["vera"][0], user.id)]
    with app.app_context():
        events = audit.find_events(event="login.success")
        assert [(e.user_id, e.detail.get("provider")) for e in events] == [(user.id, NAME)] * 2
        assert accounts.get_upstream_identity(NAME, PEOPLE["vera"][0]).last_login_at is not None


def refused(response, status: int, *words: str):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Traceback" not in response.text
    for word in words:
        assert word in response.text, word


def failure_reasons(app) -> list[str]:
    with app.app_context():
        return [e.detail["reason"] for e in reversed(audit.find_events(event="login.failure"))]


@pytest.mark.parametrize("login", ["vera", "una"])
def test_an_unlinked_identity_is_refused_by_default(upstream, browser, make_user, login):
    """Linking by email and creating accounts are both off by default: an identity nobody linked
    signs in to nothing, even when an account has its (verified) email."""
    app = upstream()
    make_user(PEOPLE[login][1])
    response = browser.sign_in(login)
    refused(response, 403, "No account for this sign-in", "Corp Identity")
    assert home(browser).status_code == 302
    assert identities(app) == []
    assert failure_reasons(app) == ["email_link_disabled" if login == "vera" else "email_not_verified"]


def test_a_verified_email_links_to_the_existing_account_when_allowed(upstream, browser, make_user):
    app = upstream(UPSTREAM_LINK_VERIFIED_EMAIL=True)
    vera = make_user(PEOPLE["vera"][1])
    assert browser.sign_in("vera").status_code == 302
    assert home(browser).status_code == 200
    assert identities(app) == [(NAME, PEOPLE["vera"][0], vera.id)]
    with app.app_context():
        assert accounts.get_upstream_identity(NAME, PEOPLE["vera"][0]).email == PEOPLE["vera"][1]


def test_an_unverified_email_never_links(upstream, browser, make_user):
    app = upstream(UPSTREAM_LINK_VERIFIED_EMAIL=True, UPSTREAM_CREATE_USERS=True)
    make_user(PEOPLE["una"][1])
    refused(browser.sign_in("una"), 403, "No account for this sign-in")
    assert identities(app) == [] and failure_reasons(app) == ["email_not_verified"]


def test_an_account_linked_to_another_subject_is_not_linked_again(upstream, browser, make_user):
    """A verified address now asserted for another person at the same provider (an address
    reassigned) does not take over the account its former owner linked."""
    app = upstream(UPSTREAM_LINK_VERIFIED_EMAIL=True)
    vera = make_user(PEOPLE["vera"][1])
    with app.app_context():
        accounts.link_upstream_identity(accounts.get_user(vera.id), NAME, "u-0001-former-owner", PEOPLE["vera"][1])
        db.session.commit()
    refused(browser.sign_in("vera"), 403, "No account for this sign-in")
    assert failure_reasons(app) == ["account_linked_elsewhere"]


def test_accounts_are_created_at_first_sign_in_only_when_enabled(upstream, browser, stage, make_app):
    app = upstream()
    refused(browser.sign_in("nina"), 403, "No account for this sign-in")
    with app.app_context():
        assert accounts.get_user_by_email(PEOPLE["nina"][1]) is None

    app = upstream(UPSTREAM_CREATE_USERS=True)
    browser.http.cookies.clear()
    assert browser.sign_in("nina").status_code == 302
    page = home(browser)
    assert page.status_code == 200 and "Nina New" in page.text
    with app.app_context():
        nina = accounts.get_user_by_email(PEOPLE["nina"][1])
        assert identities(app) == [(NAME, PEOPLE["nina"][0], nina.id)]
        assert nina.display_name == "Nina New"
        assert db.session.scalars(select(Membership).where(Membership.user_id == nina.id)).all() == []
        # No password signs in to it: not the empty one, not the stored value itself.
        assert not verify_password(nina.password_hash, "")
        assert not verify_password(nina.password_hash, nina.password_hash)
        assert accounts.authenticate(PEOPLE["nina"][1], nina.password_hash) is None


def test_accounts_are_created_only_for_a_verified_email(upstream, browser):
    app = upstream(UPSTREAM_CREATE_USERS=True)
    refused(browser.sign_in("una"), 403, "No account for this sign-in")
    browser.http.cookies.clear()
    refused(browser.sign_in("noemail"), 403, "No account for this sign-in")
    with app.app_context():
        assert db.session.scalars(select(User)).all() == []
    assert failure_reasons(app) == ["create_needs_verified_email"] * 2


def test_a_disabled_user_is_refused(upstream, browser, make_user):
    app = upstream()
    vera = make_user("vera.account@example.com", disabled=True)
    with app.app_context():
        accounts.link_upstream_identity(accounts.get_user(vera.id), NAME, PEOPLE["vera"][0], None)
        db.session.commit()
    refused(browser.sign_in("vera"), 403, "disabled")
    assert home(browser).status_code == 302
    assert failure_reasons(app) == ["user_disabled"]


def test_the_person_cancelling_at_the_provider_ends_on_a_page(upstream, browser):
    app = upstream()
    started = browser.start_upstream()
    back = browser.at_provider(started.headers["Location"], cancel=True)
    assert "error=access_denied" in back.headers["Location"]
    refused(browser.http.get(back.headers["Location"]), 403, "Sign-in cancelled")
    assert failure_reasons(app) == ["provider_access_denied"]


def test_the_sign_in_page_offers_each_provider_below_the_password_form(upstream, browser, stage):
    upstream(providers=[provider_settings(stage.issuer), provider_settings(stage.issuer, "other", "Other & Co")])
    page = browser.http.get(browser.url("/login"), params={"next": "/account/apps"}).text
    form, corp, other = (page.index('action="/login"'), page.index("Sign in with Corp Identity"),
                         page.index("Sign in with Other &amp; Co"))
    assert form < corp < other
    assert 'action="/login/upstream/corp"' in page and 'action="/login/upstream/other"' in page
    assert page.count('name="next" value="/account/apps"') == 3


def test_password_login_can_be_switched_off(upstream, browser, make_user, csrf_token):
    app = upstream(PASSWORD_LOGIN_ENABLED=False)
    make_user("pat@example.com")
    page = browser.http.get(browser.url("/login")).text
    assert 'type="password"' not in page and 'action="/login"' not in page
    assert "Sign in with Corp Identity" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = browser.http.post(browser.url("/login"), data={
        "csrf_token": token, "email": "pat@example.com", "password": "correct horse battery"})
    refused(response, 403, "Password sign-in is off")
    assert home(browser).status_code == 302
    with app.app_context():
        assert audit.find_events(event="login.*") == []


def test_starting_a_sign_in_takes_a_post_with_the_csrf_token(upstream, browser):
    upstream()
    assert browser.http.get(browser.url(f"/login/upstream/{NAME}")).status_code == 405
    refused(browser.http.post(browser.url(f"/login/upstream/{NAME}"), data={"next": "/"}), 400, "expired")
    refused(browser.http.post(browser.url("/login/upstream/nobody"), data={}), 400)
    page = browser.http.get(browser.url("/login")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    refused(browser.http.post(browser.url("/login/upstream/nobody"), data={"csrf_token": token}), 404)


def test_next_is_kept_local(upstream, browser, make_user):
    app = upstream()
    user = make_user("vera.account@example.com")
    with app.app_context():
        accounts.link_upstream_identity(accounts.get_user(user.id), NAME, PEOPLE["vera"][0], None)
        db.session.commit()
    response = browser.sign_in("vera", next_path="//evil.example/steal")
    assert response.status_code == 302 and response.headers["Location"] == "/"
