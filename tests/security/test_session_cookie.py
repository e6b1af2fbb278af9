"""Threat: a session cookie accepted on a worker's memory of it rather than on its signature and
its age (a tampered, expired or old-key cookie let in because an earlier one was verified).

Defence: web.CachedSerializerSessionInterface remembers the data of a cookie only once its
signature is verified, keyed by the exact cookie; it checks the signature's age on every request
as itsdangerous does, and a new secret key has a serializer of its own, under which nothing signed
with the old key is found."""

from __future__ import annotations

import time

import pytest

NEW_KEY = "another-secret-key-long-enough-to-pass-the-production-check"


def cookie_name(app) -> str:
    return app.config["SESSION_COOKIE_NAME"]


def is_signed_in(client) -> bool:
    response = client.get("/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


def test_a_remembered_cookie_is_answered_as_when_it_was_verified(flow):
    assert is_signed_in(flow.client)  # verified
    assert is_signed_in(flow.client)  # remembered
    with flow.client.session_transaction() as session:
        assert isinstance(session["user_id"], int) and session["sid"]


@pytest.mark.parametrize("drift", ["past the lifetime", "signed in the future"])
def test_a_remembered_cookie_still_expires(flow, app, monkeypatch, drift):
    assert is_signed_in(flow.client) and is_signed_in(flow.client)
    lifetime = app.permanent_session_lifetime.total_seconds()
    offset = lifetime + 5 if drift == "past the lifetime" else -5
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset)
    assert not is_signed_in(flow.client)


def test_a_tampered_cookie_is_refused_after_the_genuine_one_was_verified(flow, app):
    assert is_signed_in(flow.client)
    genuine = flow.client.get_cookie(cookie_name(app)).value
    value, signature = genuine.rsplit(".", 1)
    # The first character: all six of its bits are the signature's (the last one's low bits are
    # base64 padding, so changing only those leaves the same signature).
    forged_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    for forged in (f"{value}.{forged_signature}", genuine + "x", genuine[:-1]):
        flow.client.set_cookie(cookie_name(app), forged)
        assert not is_signed_in(flow.client), forged
    flow.client.set_cookie(cookie_name(app), genuine)
    assert is_signed_in(flow.client)


def test_a_new_secret_key_refuses_cookies_verified_under_the_old_one(flow, app, make_app):
    assert is_signed_in(flow.client)
    cookie = flow.client.get_cookie(cookie_name(app)).value
    rotated = make_app(SECRET_KEY=NEW_KEY).test_client()
    rotated.set_cookie(cookie_name(app), cookie)
    assert not is_signed_in(rotated)


def test_a_session_changed_by_a_request_is_not_answered_from_the_old_cookie(flow, app):
    assert is_signed_in(flow.client)
    before = flow.client.get_cookie(cookie_name(app)).value
    page = flow.client.post("/logout", data={"csrf_token": _csrf(flow.client)})
    assert page.status_code == 302
    assert flow.client.get_cookie(cookie_name(app)) is None or flow.client.get_cookie(cookie_name(app)).value != before
    assert not is_signed_in(flow.client)


def _csrf(client) -> str:
    import re

    html = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
