"""Threat 13: session fixation at login (OWASP session management; RFC 9700 §4.7 context).

Defence: views/auth.py login() clears the session on successful authentication and starts a
fresh one (new `sid`, new CSRF secret): nothing set before login survives it."""

from __future__ import annotations

from oauth.support import PASSWORD, csrf_token

from .support import signed_in

COOKIE = "authserver_session"


def _login(client, token):
    return client.post("/login", data={"csrf_token": token, "email": "alice@example.com", "password": PASSWORD})


def test_session_fixation_login_starts_a_new_session(client, world):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    with client.session_transaction() as session:  # what an attacker could have planted
        session["sid"] = "attacker-chosen-sid"
        session["planted"] = "by an attacker"
        session["user_id"] = world.bob_id
    before = client.get_cookie(COOKIE).value
    assert _login(client, token).status_code == 302
    assert client.get_cookie(COOKIE).value != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["sid"] != "attacker-chosen-sid" and len(session["sid"]) >= 16
        assert session["user_id"] == world.alice_id


def test_session_fixation_each_login_gets_a_different_session_id(app, world):
    sids = set()
    for _ in range(2):
        client = app.test_client()
        _login(client, csrf_token(client.get("/login").get_data(as_text=True)))
        with client.session_transaction() as session:
            sids.add(session["sid"])
    assert len(sids) == 2


def test_session_fixation_pre_login_csrf_token_dies_at_login(client, world):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    assert _login(client, token).status_code == 302
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 400
    assert signed_in(client)


def test_session_fixation_failed_login_does_not_authenticate_the_session(client, world):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"csrf_token": token, "email": "alice@example.com", "password": "wrong password"})
    assert not signed_in(client)


def test_session_fixation_cookie_is_httponly_and_samesite(client, world):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    cookie = _login(client, token).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the test issuer is https


def test_session_replay_after_logout_is_refused(flow):
    """A session cookie captured while signed in must stop working once the person logs out
    (OWASP ASVS 3.3.1). The session is a signed cookie, so logout records its random sid as ended
    (ended_sessions) and every copy of the cookie stops working."""
    client = flow.client
    captured = client.get_cookie(COOKIE).value
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/logout").get_data(as_text=True))})
    assert client.get("/account/apps").status_code == 302
    client.set_cookie(COOKIE, captured, domain="localhost")
    response = client.get("/account/apps")
    assert response.status_code == 302, "a session cookie copied before logout still signs the person in"
