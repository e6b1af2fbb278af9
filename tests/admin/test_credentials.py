"""Who may call the admin API: a live admin credential over HTTP Basic, and nothing else (not a
signed-in person's session cookie, not a token); credentials made, listed and revoked by the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from authserver import audit
from authserver.extensions import db
from authserver.models import AdminCredential
from authserver.secrets import sha256_hex

from .conftest import PREFIX, Api, assert_api_error, basic


def assert_unauthorized(response):
    assert_api_error(response, 401, "invalid_client", "admin credential")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer ast_not-an-admin-credential-at-all"},
    {"Authorization": "Basic !!not base64!!"},
    {"Authorization": "Basic " + "bm8tY29sb24="},  # "no-colon"
    basic("adm_unknown", "asa_whatever"),
], ids=["missing", "bearer", "not base64", "no colon", "unknown id"])
def test_no_valid_credential_is_401_and_changes_nothing(app, admin, headers, unchanged):
    client = app.test_client()
    with unchanged():
        assert_unauthorized(client.get(PREFIX + "/users", headers=headers))
        assert_unauthorized(client.post(PREFIX + "/users", json={"email": "x@example.com"}, headers=headers))


def test_a_wrong_secret_is_401(app, admin):
    api = Api(app.test_client(), basic(admin.id, admin.secret[:-1] + ("A" if admin.secret[-1] != "A" else "B")))
    assert_unauthorized(api.get("/users"))
    assert Api(app.test_client(), admin.headers).get("/users").status_code == 200


def test_a_signed_in_persons_session_cookie_is_not_enough(app, make_user, login, unchanged):
    make_user("ann@example.com")
    browser = app.test_client()
    login(browser, "ann@example.com")
    assert browser.get("/account/apps").status_code == 200  # the session is good for pages
    with unchanged():
        assert_unauthorized(browser.get(PREFIX + "/users"))
        assert_unauthorized(browser.post(PREFIX + "/users", json={"email": "new@example.com"}))


def test_a_revoked_credential_is_refused_at_once(app, api, admin, runner):
    assert api.get("/users").status_code == 200
    result = runner.invoke(args=["admin", "revoke-credential", admin.id])
    assert result.exit_code == 0, result.output
    assert_unauthorized(api.get("/users"))


def test_the_cli_shows_the_secret_once_and_stores_only_its_hash(app, runner):
    result = runner.invoke(args=["admin", "create-credential", "--name", "CRM back end"])
    assert result.exit_code == 0, result.output
    lines = dict(line.strip().split(":", 1) for line in result.output.splitlines() if line.startswith("  "))
    credential_id, secret = lines["credential id"].strip(), lines["secret"].strip()
    assert credential_id.startswith("adm_") and secret.startswith("asa_") and len(secret) > 40
    with app.app_context():
        row = db.session.scalar(select(AdminCredential))
        assert row.credential_id == credential_id and row.name == "CRM back end"
        assert row.secret_hash == sha256_hex(secret) and secret not in repr(row.__dict__)

    assert Api(app.test_client(), basic(credential_id, secret)).get("/users").status_code == 200
    listed = runner.invoke(args=["admin", "list-credentials"])
    assert credential_id in listed.output and "CRM back end" in listed.output and "active" in listed.output
    assert secret not in listed.output
    with app.app_context():
        assert db.session.scalar(select(AdminCredential)).last_used_at is not None

    runner.invoke(args=["admin", "revoke-credential", credential_id])
    assert "revoked" in runner.invoke(args=["admin", "list-credentials"]).output
    with app.app_context():
        events = [e.event for e in audit.find_events(event="admin_credential.*")]
    assert events == ["admin_credential.revoked", "admin_credential.created"]


@pytest.mark.parametrize("args, message", [
    (["admin", "create-credential", "--name", "  "], "needs a name"),
    (["admin", "revoke-credential", "adm_nothing"], "No admin credential"),
])
def test_cli_refusals(runner, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code == 1 and message in result.output


@pytest.mark.app_config(CLIENT_AUTH_FAILURES_PER_IP="3 per minute")
def test_failed_authentications_are_limited_per_address(app, admin):
    client = app.test_client()
    wrong = basic(admin.id, "asa_wrong")
    for _ in range(3):
        assert client.get(PREFIX + "/users", headers=wrong).status_code == 401
    # Past the limit even the right credential waits: guessing costs the guesser's address.
    limited = client.get(PREFIX + "/users", headers=admin.headers)
    assert_api_error(limited, 429, "temporarily_unavailable")
    assert int(limited.headers["Retry-After"]) > 0
    other = client.get(PREFIX + "/users", headers=admin.headers, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200


def test_failures_are_audited_with_the_presented_id_only(app, admin):
    client = app.test_client()
    client.get(PREFIX + "/users", headers=basic(admin.id, "asa_wrong-secret-guess-0000000000000"))
    client.get(PREFIX + "/users", headers=basic("asa_pasted-a-secret-as-the-id-000000000", "x"))
    with app.app_context():
        events = audit.find_events(event="admin.auth_failed")
    assert [e.detail.get("admin_credential") for e in events] == [None, admin.id]


def test_no_cross_origin_access_and_no_cookie_set(api):
    response = api.get("/users", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Set-Cookie" not in response.headers
