"""The login page: CSRF, uniform failures, local-only `next`, throttling, cookies, security headers,
a fresh session on login, disabled accounts and logout."""

from __future__ import annotations

import html
import re

import pytest

from authserver.views.auth import LOGIN_ERROR

from conftest import PASSWORD

EMAIL = "alice@example.com"
THROTTLE_WINDOW = 2  # seconds, in the app_config of the throttling tests below
THROTTLED = pytest.mark.app_config(
    LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP=f"3 per {THROTTLE_WINDOW} seconds",
    LOGIN_ATTEMPTS_PER_IP=f"5 per {THROTTLE_WINDOW} seconds",
    LOGIN_DELAY_PER_FAILURE=0,
)


def error_message(response) -> str | None:
    match = re.search(r'<p class="error" role="alert">(.*?)</p>', response.get_data(as_text=True), re.S)
    return html.unescape(match.group(1)) if match else None


def signed_in(client) -> bool:
    with client.session_transaction() as session:
        return "user_id" in session


@pytest.fixture
def alice(make_user):
    return make_user(EMAIL, name="Alice")


def test_login_redirects_home_and_shows_the_user(client, alice, login):
    response = login(client, EMAIL)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "Signed in as Alice" in page.get_data(as_text=True)


def test_email_is_case_insensitive(client, alice, login):
    assert login(client, "  ALICE@Example.com").status_code == 302


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_login_without_valid_csrf_token_is_400(client, alice, token):
    client.get("/login")
    data = {"email": EMAIL, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert not signed_in(client)


def test_wrong_password_and_unknown_email_get_the_same_answer(client, alice, login):
    wrong_password = login(client, EMAIL, "not the password")
    unknown_email = login(client, "nobody@example.com", PASSWORD)
    assert wrong_password.status_code == unknown_email.status_code == 200
    assert error_message(wrong_password) == error_message(unknown_email) == LOGIN_ERROR
    assert not signed_in(client)


def test_failed_login_keeps_the_typed_email_but_never_the_password(client, alice, login):
    body = login(client, EMAIL, "secret attempt").get_data(as_text=True)
    assert f'value="{EMAIL}"' in body
    assert "secret attempt" not in body


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\/evil",
        "javascript:alert(1)",
        "http:/evil.example",
        "/\t/evil.example",
        "evil.example",
    ],
)
def test_next_never_leaves_the_site(client, alice, login, target):
    page = client.get("/login", query_string={"next": target})
    assert 'name="next" value="/"' in page.get_data(as_text=True)
    response = login(client, EMAIL, next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_local_next_is_honoured(client, alice, login):
    page = client.get("/login", query_string={"next": "/account/apps?x=1"})
    assert 'name="next" value="/account/apps?x=1"' in page.get_data(as_text=True)
    response = login(client, EMAIL, next="/account/apps?x=1")
    assert response.headers["Location"] == "/account/apps?x=1"


@THROTTLED
def test_failures_are_throttled_per_account_and_address(client, alice, login, advance_rate_limits):
    for _ in range(3):
        assert login(client, EMAIL, "wrong", ip="192.0.2.1").status_code == 200
    # That address is refused for alice, even with her password...
    blocked = login(client, EMAIL, ip="192.0.2.1")
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert not signed_in(client)
    # ...but not for another account, and alice is not refused from elsewhere.
    assert login(client, "someone@example.com", "wrong", ip="192.0.2.1").status_code == 200
    assert login(client, EMAIL, ip="192.0.2.2").status_code == 302

    advance_rate_limits(THROTTLE_WINDOW + 0.2)
    assert login(client, EMAIL, ip="192.0.2.1").status_code == 302


@pytest.mark.app_config(LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP="3 per minute", LOGIN_DELAY_PER_FAILURE=0)
def test_a_successful_sign_in_clears_the_account_and_address_count(client, alice, login):
    # Two typos before each success, three times: six failures from one address in all, yet the
    # owner is never refused, because each success starts the count again.
    for _ in range(3):
        assert login(client, EMAIL, "typo", ip="192.0.2.1").status_code == 200
        assert login(client, EMAIL, "typo", ip="192.0.2.1").status_code == 200
        assert login(client, EMAIL, ip="192.0.2.1").status_code == 302


@THROTTLED
def test_failures_are_throttled_per_ip(client, alice, make_user, login):
    make_user("bob@example.com")
    # Five failures against five different accounts from one address block that address...
    for i in range(5):
        assert login(client, f"nobody{i}@example.com", "wrong", ip="198.51.100.7").status_code == 200
    blocked = login(client, "bob@example.com", ip="198.51.100.7")
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    # ...and nobody else.
    assert login(client, "bob@example.com", ip="198.51.100.8").status_code == 302


def test_session_cookie_flags_follow_the_issuer(make_app, make_user, login):
    make_user(EMAIL)
    for issuer, secure in (("https://auth.test", True), ("http://127.0.0.1:5000", False)):
        client = make_app(ISSUER=issuer).test_client()
        response = login(client, EMAIL)
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure


@pytest.mark.parametrize("path", ["/login", "/logout", "/"])
def test_every_page_forbids_framing_and_sniffing(client, alice, login, path):
    login(client, EMAIL)
    response = client.get(path)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]


def test_login_starts_a_fresh_session(client, alice, login):
    # Whatever an attacker managed to plant in the session before login does not survive it.
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
        session["user_id"] = 999999
    login(client, EMAIL)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["user_id"] == alice.id


def test_disabled_user_cannot_sign_in(client, make_user, login):
    make_user(EMAIL, disabled=True)
    response = login(client, EMAIL)
    assert response.status_code == 200
    assert error_message(response) == LOGIN_ERROR
    assert not signed_in(client)


def test_logout_needs_the_form_and_its_csrf_token(client, alice, login, csrf_token):
    login(client, EMAIL)
    assert client.post("/logout").status_code == 400
    assert signed_in(client)
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/logout")})
    assert response.status_code == 302
    assert not signed_in(client)


@pytest.mark.parametrize("old", ["LOGIN_FAILURES_PER_ACCOUNT", "LOGIN_FAILURES_PER_IP"])
def test_the_old_throttle_settings_are_refused_not_ignored(make_app, old):
    from authserver.config import ConfigError

    with pytest.raises(ConfigError, match=f"AUTHSERVER_{old} is no longer read"):
        make_app(**{old: "5 per 5 minutes"})
