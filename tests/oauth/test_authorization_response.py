"""The authorization response's Location is built as Authlib builds it: `iss` (RFC 9207) added by
oauth/server.py's with_issuer, which skips decoding and encoding again the query Authlib has just
encoded, gives the very URL Authlib's own add_params_to_uri gives, for every redirect URI shape."""

from __future__ import annotations

import pytest
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidScopeError

from authserver.oauth.server import with_issuer

REDIRECT_URIS = [
    "http://127.0.0.1:8976/callback",
    "http://[::1]/cb",
    "HTTP://LocalHost:1/cb",
    "https://app.example/callback",
    "https://app.example/callback?",
    "https://app.example/cb?tenant=a",
    "https://app.example/cb?tenant=a&empty=&flag",
    "https://app.example/cb?x=a+b&y=%2B%20%7e%7E%41&z=%FF%e2%82%ac",
    "https://app.example/cb?=v&&k==&%26=%3D",
    "https://app.example/p;params/cb?q=1",
    "https://app.example/cb?caf%C3%A9=th%C3%A9",
    "com.example.app:/oauth2redirect",
    "com.example.app:/oauth2redirect?from=app",
    "myapp://callback",
]
STATES = [None, "s", "a b+c&d=e%20f", "état ✓", "x" * 200, "%", "&&=="]
ISSUERS = ["https://auth.example", "http://127.0.0.1:5200", "https://auth.example/with path?q"]


@pytest.mark.parametrize("redirect_uri", REDIRECT_URIS)
@pytest.mark.parametrize("state", STATES)
def test_success_location_matches_authlib(redirect_uri, state):
    params = [("code", "ac_code-with_chars.~")] + ([("state", state)] if state is not None else [])
    location = add_params_to_uri(redirect_uri, params)
    for issuer in ISSUERS:
        assert with_issuer(location, issuer) == add_params_to_uri(location, {"iss": issuer})


@pytest.mark.parametrize("redirect_uri", REDIRECT_URIS)
@pytest.mark.parametrize("error", [AccessDeniedError, InvalidScopeError])
def test_error_location_matches_authlib(redirect_uri, error):
    _, _, headers = error(description="No, thanks: a+b & more=100%", redirect_uri=redirect_uri, state="st ate")()
    location = dict(headers)["Location"]
    for issuer in ISSUERS:
        assert with_issuer(location, issuer) == add_params_to_uri(location, {"iss": issuer})


@pytest.mark.parametrize("location", ["https://app.example/cb?x=1#frag", "https://app.example/cb#code=c&state=s",
                                      "https://app.example/cb"])
def test_fragment_or_no_query_is_left_to_authlib(location):
    assert with_issuer(location, "https://auth.example") == add_params_to_uri(location, {"iss": "https://auth.example"})


# --- the consent page's CSRF token (web.CsrfTokens) -----------------------------------------------
def test_csrf_token_is_flask_wtfs(app, monkeypatch):
    """The signed token is Flask-WTF's, byte for byte, for the same session token and second, and
    Flask-WTF's validate_csrf accepts it; a request signs once, and a session without a token gets
    one as Flask-WTF gives it."""
    import itsdangerous.timed
    from flask import g, session
    from flask_wtf.csrf import generate_csrf, validate_csrf

    from authserver.web import csrf_token

    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: 1_800_000_000.25)
    for raw in ("0" * 40, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "é ✓ \\\" quoted"):
        with app.test_request_context("/"):
            session["csrf_token"] = raw
            ours = csrf_token()
            assert csrf_token() is ours and g.csrf_token == ours
            del g.csrf_token
            assert generate_csrf() == ours
            if raw.isascii():  # Flask-WTF's compare_digest takes ASCII only
                validate_csrf(ours)
    with app.test_request_context("/"):
        token = csrf_token()
        assert len(session["csrf_token"]) == 40
        del g.csrf_token
        assert generate_csrf() == token


def test_pages_call_the_cheaper_csrf_token(app):
    from authserver.web import csrf_token

    with app.test_request_context("/"):
        app.update_template_context(context := {})
        assert context["csrf_token"] is csrf_token
        assert app.jinja_env.globals["csrf_token"] is csrf_token


# --- rows adopted into the session (store.adopt) --------------------------------------------------
def test_adopted_rows_are_as_the_orm_loads_them(app, make_user, make_hub):
    """An adopted row is in the session as make_transient_to_detached then Session.add leave it:
    the same identity, nothing pending or modified, its relationships loaded on first use, and
    a change to it flushed like any other."""
    from sqlalchemy import select
    from sqlalchemy.orm import make_transient_to_detached
    from sqlalchemy.orm.attributes import instance_state

    from authserver import store
    from authserver.extensions import db
    from authserver.models import User

    hub = make_hub("Adopted")
    user_id = make_user(email="adopted@example.com", hubs=[hub]).id
    with app.app_context():
        row = db.session.execute(select(*User.__table__.columns).where(User.id == user_id)).one()
        db.session.remove()
        reference = User.__mapper__.class_manager.new_instance()
        reference.__dict__.update(row._asdict())
        make_transient_to_detached(reference)
        expected = instance_state(reference)
        expected_expired = set(expected.expired_attributes)

        session = db.session()
        adopted = store.adopt(User, row)
        state = instance_state(adopted)
        assert store.adopt(User, row) is adopted
        assert state.key == expected.key and state.persistent and adopted in session
        assert session.identity_map.get(state.key) is adopted
        assert state.expired_attributes == expected_expired and state.unloaded == expected.unloaded
        assert not state.committed_state and not state.modified and not session.dirty and not session.new
        assert {k: v for k, v in state.dict.items() if k != "_sa_instance_state"} == row._asdict()
        assert [m.hub_id for m in adopted.memberships] == [hub.id]  # lazy-loaded through the session
        adopted.display_name = "Renamed"
        assert session.dirty
        db.session.commit()
        db.session.remove()
        assert db.session.get(User, user_id).display_name == "Renamed"
