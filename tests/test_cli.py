"""Operator commands: each does what it says, and bad input is a clear message with a non-zero
exit status that leaves the database unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import FlaskGroup
from sqlalchemy import select

from authserver import accounts, audit, create_app, resources, store
from authserver.extensions import db
from authserver.models import AuthorizationCode, Client, Grant, Token
from authserver.secrets import sha256_hex
from authserver.timeutil import utcnow

from conftest import PASSWORD


def run(runner, *args, ok=True):
    result = runner.invoke(args=list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result


def one_error_line(result, words: str) -> None:
    """A refused command: exit status 1, and one line on stderr saying why."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.stderr


def test_users_create_list_disable_enable(app, runner):
    run(runner, "users", "create", "Ann@Example.com", "--name", "Ann", "--password", PASSWORD)
    assert "ann@example.com  Ann   enabled" in run(runner, "users", "list").output
    run(runner, "users", "disable", "ANN@example.com")
    assert "disabled" in run(runner, "users", "list").output
    with app.app_context():
        assert accounts.authenticate("ann@example.com", PASSWORD) is None
    run(runner, "users", "enable", "ann@example.com")
    with app.app_context():
        assert accounts.authenticate("ann@example.com", PASSWORD) is not None


# --- users: passwords and disabling ----------------------------------------------------------
NEW_PASSWORD = "a fresh passphrase"


def signed_in(browser) -> bool:
    """Whether the browser's session cookie still signs it in (the home page does not bounce it)."""
    return browser.get("/").status_code == 200


def user_events(app, user) -> list[str]:
    """The user.* audit events of a user since its creation, most recent first."""
    with app.app_context():
        return [e.event for e in audit.find_events(user_id=user.id, event="user.*") if e.event != "user.created"]


def set_password(runner, email: str, *answers: str):
    return runner.invoke(args=["users", "set-password", email], input="".join(f"{a}\n" for a in answers))


@pytest.mark.app_config(PASSWORD_HASH_TIME_COST=2, PASSWORD_HASH_MEMORY_KIB=16, PASSWORD_HASH_PARALLELISM=2)
def test_users_set_password_asks_twice_hashes_as_configured_audits_and_ends_sessions(app, runner, make_user,
                                                                                      login):
    user = make_user("ann@example.com")
    browser = app.test_client()
    login(browser, "ann@example.com")
    assert signed_in(browser)

    result = set_password(runner, "ANN@example.com", NEW_PASSWORD, NEW_PASSWORD)
    assert result.exit_code == 0, result.output
    assert "New password:" in result.output and "Repeat it:" in result.output
    assert NEW_PASSWORD not in result.output  # asked for hidden
    with app.app_context():
        assert accounts.get_user(user.id).password_hash.startswith("$argon2id$v=19$m=16,t=2,p=2$")
        assert accounts.authenticate("ann@example.com", PASSWORD) is None
        assert accounts.authenticate("ann@example.com", NEW_PASSWORD) is not None
    assert user_events(app, user) == ["user.password_set"]
    # Whoever was signed in as Ann (perhaps the reason for the reset) is signed out, on every device.
    assert not signed_in(browser)
    assert login(app.test_client(), "ann@example.com", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    "answers, words",
    [
        pytest.param((NEW_PASSWORD, NEW_PASSWORD + "!"), "The two passwords differ", id="mismatch"),
        pytest.param(("", ""), "at least 8 characters", id="empty"),
        pytest.param(("short", "short"), "at least 8 characters", id="too short"),
    ],
)
def test_users_set_password_refuses_in_one_line_and_changes_nothing(app, runner, make_user, login, answers, words):
    user = make_user("ann@example.com")
    browser = app.test_client()
    login(browser, "ann@example.com")
    with app.app_context():
        before = accounts.get_user(user.id).password_hash

    one_error_line(set_password(runner, "ann@example.com", *answers), words)
    with app.app_context():
        assert accounts.get_user(user.id).password_hash == before
    assert user_events(app, user) == []
    assert signed_in(browser)


def test_users_set_password_for_an_unknown_email_asks_for_nothing(runner):
    result = set_password(runner, "nobody@example.com", NEW_PASSWORD, NEW_PASSWORD)
    one_error_line(result, "No user with email 'nobody@example.com'")
    assert "password" not in result.stdout


def test_users_disable_and_enable_are_audited_and_end_sessions_for_good(app, runner, make_user, login):
    user = make_user("ann@example.com")
    browser = app.test_client()
    login(browser, "ann@example.com")
    run(runner, "users", "disable", "ann@example.com")
    assert not signed_in(browser)
    run(runner, "users", "enable", "ann@example.com")
    assert not signed_in(browser)  # enabling the account does not bring its old sessions back
    assert user_events(app, user) == ["user.enabled", "user.disabled"]


# --- a bad configuration -------------------------------------------------------------------------
LONG_KEY = "k" * 48
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "settings, words",
    [
        pytest.param({}, "set AUTHSERVER_SECRET_KEY", id="development defaults without --debug"),
        pytest.param({"SECRET_KEY": LONG_KEY, "ISSUER": "http://auth.example.com"}, "must be an https URL",
                     id="http issuer off loopback"),
        pytest.param({"TESTING": True, "ISSUER": "https://auth.example.com/x"}, "no path", id="issuer with a path"),
        pytest.param({"TESTING": True, "REGISTRATION_MODE": "sometimes"}, "AUTHSERVER_REGISTRATION_MODE",
                     id="registration mode"),
        pytest.param({"TESTING": True, "LOGIN_FAILURES_PER_IP": "9 per minute"}, "no longer read", id="renamed"),
        pytest.param({"TESTING": True, "SCOPE_CATALOG": {}}, "SCOPE_CATALOG", id="empty scope catalog"),
        pytest.param({"TESTING": True, "ROLES": {"auditor": ["crm.objects.invoices.read"]}}, "unknown scopes",
                     id="role with an unknown scope"),
        pytest.param({"TESTING": True, "ROLES": ["viewer"]}, "ROLES must be a mapping", id="roles not a mapping"),
        pytest.param({"TESTING": True, "ROLES": {"viewer": "crm.objects.notes.read"}}, "list of scope names",
                     id="role not a list"),
    ],
)
@pytest.mark.parametrize(
    "command", [["scopes", "list"], ["users", "list"], ["db", "upgrade"], ["routes"]],
    ids=" ".join,
)
def test_every_command_on_a_bad_configuration_ends_in_one_error_line(settings, words, command):
    cli = FlaskGroup(create_app=lambda: create_app({"DATABASE_URL": "sqlite://", **settings}))
    result = CliRunner().invoke(cli, command)
    one_error_line(result, words)
    assert result.stdout == ""


@pytest.mark.parametrize(
    "issuer, status, out, err",
    [
        pytest.param("http://auth.example.com", 1, "", "Error: Refusing to start: AUTHSERVER_ISSUER must be an https",
                     id="http off loopback: one line"),
        pytest.param("http://127.0.0.1:5200", 0, "crm.objects.contacts.read", "", id="http on loopback: runs"),
    ],
)
def test_flask_command_in_a_real_process_without_debug(tmp_path, issuer, status, out, err):
    """`flask --app wsgi scopes list` as an operator types it, on a production-like configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "FLASK_"))}
    env.update(AUTHSERVER_SECRET_KEY=LONG_KEY, AUTHSERVER_ISSUER=issuer, PYTHONPATH=str(ROOT),
               AUTHSERVER_DATABASE_URL=f"sqlite:///{tmp_path}/authserver.sqlite3")
    result = subprocess.run([str(Path(sys.executable).with_name("flask")), "--app", "wsgi", "scopes", "list"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == status, result.stderr
    assert out in result.stdout
    if err:
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(err), result.stderr
    else:
        assert result.stderr == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (("users", "create", "not-an-email", "--password", PASSWORD), "email"),
        (("users", "create", "b@example.com", "--password", "short"), "8 characters"),
        (("users", "disable", "nobody@example.com"), "No user with email 'nobody@example.com'"),
        (("hubs", "create", "X", "--id", "123"), "123"),
        (("members", "add", "nobody@example.com", "10000001", "--role", "admin"), "No user"),
        (("resources", "create", "ftp://x.example", "--name", "X"), "http(s)"),
        (("resources", "create", "https://x.example/mcp", "--name", "X", "--scope", "crm.bogus.read"),
         "crm.bogus.read"),
        (("resources", "rotate-secret", "https://nothing.example/mcp"), "No resource server"),
        (("clients", "create", "--name", "X", "--redirect-uri", "javascript:alert(1)"), "javascript"),
        (("clients", "create", "--name", "X", "--redirect-uri", "https://x.example/cb", "--scope", "nope"), "nope"),
        (("clients", "delete", "pre_missing"), "No client with id 'pre_missing'"),
        (("audit", "list", "--user", "nobody@example.com"), "No user"),
    ],
)
def test_bad_input_is_a_clear_error(runner, args, message):
    result = run(runner, *args, ok=False)
    assert message in result.output


def test_hub_membership_commands_drive_permissions(app, runner, make_user):
    user = make_user("ann@example.com")
    run(runner, "hubs", "create", "Acme", "--id", "12345678")
    assert "12345678  Acme" in run(runner, "hubs", "list").output
    run(runner, "members", "add", "ann@example.com", "12345678", "--role", "viewer")
    with app.app_context():
        hub = accounts.get_hub(12345678)
        assert "crm.objects.deals.write" not in accounts.permissions(accounts.get_user(user.id), hub)
    run(runner, "members", "grant", "ann@example.com", "12345678", "crm.objects.deals.write")
    run(runner, "members", "deny", "ann@example.com", "12345678", "crm.objects.contacts.read")
    with app.app_context():
        perms = accounts.permissions(accounts.get_user(user.id), accounts.get_hub(12345678))
        assert "crm.objects.deals.write" in perms and "crm.objects.contacts.read" not in perms
    run(runner, "members", "set-role", "ann@example.com", "12345678", "admin")
    assert "ann@example.com" in run(runner, "members", "list", "12345678").output
    run(runner, "members", "remove", "ann@example.com", "12345678")
    with app.app_context():
        assert accounts.permissions(accounts.get_user(user.id), accounts.get_hub(12345678)) == frozenset()
    # Membership changes are audited.
    with app.app_context():
        assert {"membership.added", "membership.removed"} <= {e.event for e in audit.find_events(limit=50)}


def test_resource_create_and_rotate_print_working_credentials(app, runner):
    output = run(runner, "resources", "create", "https://MCP.example.com/mcp/", "--name", "MCP",
                 "--scope", "crm.objects.contacts.read crm.objects.deals.read").output
    credential_id = re.search(r"credential id: (\S+)", output).group(1)
    secret = re.search(r"secret: +(\S+)", output).group(1)
    with app.app_context():
        assert resources.authenticate(credential_id, secret).uri == "https://mcp.example.com/mcp"
    output = run(runner, "resources", "rotate-secret", "https://mcp.example.com/mcp").output
    new_secret = re.search(r"secret: +(\S+)", output).group(1)
    with app.app_context():
        assert resources.authenticate(credential_id, secret) is None
        assert resources.authenticate(credential_id, new_secret) is not None
    assert "crm.objects.contacts.read" in run(runner, "resources", "list").output


def test_scopes_and_roles_list(runner):
    assert "crm.objects.contacts.read" in run(runner, "scopes", "list").output
    assert re.search(r"^viewer: .*crm.objects.contacts.read", run(runner, "roles", "list").output, re.M)


def test_clients_create_list_delete(app, runner):
    output = run(runner, "clients", "create", "--name", "Back office", "--redirect-uri", "https://bo.example/cb",
                 "--scope", "crm.objects.contacts.read").output
    client_id = re.search(r"client_id: +(\S+)", output).group(1)
    secret = re.search(r"client_secret: +(\S+)", output).group(1)
    with app.app_context():
        client = store.get_client(client_id)
        assert client.allowed_scopes == "crm.objects.contacts.read"
        assert client.check_client_secret(secret) and not client.check_client_secret(secret + "x")
        assert secret not in client.client_secret_hash
    public = run(runner, "clients", "create", "--name", "Desktop", "--redirect-uri", "http://127.0.0.1/cb",
                 "--public").output
    assert "client_secret" not in public
    listing = run(runner, "clients", "list").output
    assert client_id in listing and "Desktop" in listing and "none" in listing
    run(runner, "clients", "delete", client_id)
    with app.app_context():
        assert store.get_client(client_id) is None
        assert audit.find_events(event="client.deleted")[0].client_id == client_id


def test_purge_unused_deletes_only_stale_dynamic_clients(app, runner):
    now = utcnow()
    with app.app_context():
        def client(name, registration, created, used):
            db.session.add(Client(client_id=name, registration=registration, client_metadata={"client_name": name},
                                  created_at=created, last_used_at=used))
        client("stale-never-used", "dynamic", now - timedelta(days=40), None)
        client("stale-used-long-ago", "dynamic", now - timedelta(days=90), now - timedelta(days=31))
        client("fresh", "dynamic", now - timedelta(days=2), None)
        client("used-recently", "dynamic", now - timedelta(days=90), now - timedelta(hours=1))
        client("operator", "cli", now - timedelta(days=400), None)
        db.session.commit()
    output = run(runner, "clients", "purge-unused").output
    assert "Purged 2 client(s) unused for 30 day(s)." in output
    with app.app_context():
        assert sorted(c.client_id for c in store.find_clients()) == ["fresh", "operator", "used-recently"]
    assert "Purged 1 client(s)" in run(runner, "clients", "purge-unused", "--days", "1").output


def test_initial_token_prints_a_token_and_its_digest(runner):
    output = run(runner, "clients", "initial-token").output
    token = re.search(r"\): (\S+)", output).group(1)
    assert sha256_hex(token) in output


def test_audit_list_filters(app, runner, make_user):
    make_user("ann@example.com")
    with app.app_context():
        audit.record("login.failure", email="x@example.com")
        audit.record("client.registered", client="c-1")
        db.session.commit()
    output = run(runner, "audit", "list", "--event", "client.*").output
    assert "client.registered" in output and "login.failure" not in output
    lines = run(runner, "audit", "list", "--json", "--client", "c-1").output.strip().splitlines()
    assert len(lines) == 1 and '"event": "client.registered"' in lines[0]


def test_tokens_purge_expired_runs(runner):
    assert ("Purged 0 authorization codes, 0 tokens, 0 used assertions, 0 ended sessions, 0 remote documents, "
            "0 replay answers.") in run(runner, "tokens", "purge-expired").output


def _grant(user, hub, resource) -> Grant:
    """A pre-registered client and a grant to it, flushed, to hang token rows from."""
    client = Client(client_id="purge-client", registration="cli",
                    client_metadata={"client_name": "P", "redirect_uris": ["https://c.example/cb"]})
    db.session.add(client)
    db.session.flush()
    grant = Grant(user_id=user.id, hub_id=hub.id, client_pk=client.id, resource_id=resource.id,
                  scope="crm.objects.contacts.read", redirect_uri="https://c.example/cb", client=client)
    db.session.add(grant)
    db.session.flush()
    return grant


def test_tokens_purge_expired_in_batches_deletes_every_expired_row_and_keeps_live_ones(app, runner, make_user,
                                                                                      make_hub, make_resource):
    hub, (resource, _secret) = make_hub(), make_resource()
    user = make_user(hubs=[hub])
    now = utcnow()
    past, future = now - timedelta(minutes=1), now + timedelta(hours=1)
    # (access expires, refresh expires): gone once both are past, or the access one when there is no refresh.
    expired = [(past, None), (past, past)] * 3 + [(past, None)]
    live = [(future, None), (future, future), (past, future), (future, past)]
    with app.app_context():
        grant = _grant(user, hub, resource)
        client = grant.client
        parent = None
        # One rotation chain through all of them, so deleting a row has to unlink its successor.
        for i, (access, refresh) in enumerate(expired + live):
            token = Token(grant_id=grant.id, client_pk=client.id, scope=grant.scope, parent_id=parent,
                          access_token_hash=sha256_hex(f"a{i}"),
                          refresh_token_hash=sha256_hex(f"r{i}") if refresh else None,
                          issued_at=now - timedelta(hours=2), access_expires_at=access, refresh_expires_at=refresh)
            db.session.add(token)
            db.session.flush()
            parent = token.id
        # Redeemed codes, each with the answer kept for a retry: a code goes a day after it expires.
        long_ago = now - timedelta(days=1, minutes=1)
        for i, when in enumerate([long_ago] * 5 + [future]):
            db.session.add(AuthorizationCode(
                code_hash=sha256_hex(f"k{i}"), grant_id=grant.id, client_pk=client.id,
                redirect_uri="https://c.example/cb", scope=grant.scope, code_challenge="x" * 43,
                code_challenge_method="S256", expires_at=when, consumed_at=now, replay=b"x",
            ))
        db.session.commit()

        # One call removes one bounded batch of each kind: the caller commits between batches.
        assert store.purge_expired(limit=2) == {"authorization_codes": 2, "tokens": 2, "used_assertions": 0,
                                                "ended_sessions": 0, "remote_documents": 0, "replay_answers": 0}
        db.session.rollback()

    output = run(runner, "tokens", "purge-expired", "--batch-size", "2").output
    assert "Purged 5 authorization codes, 7 tokens," in output
    with app.app_context():
        kept = db.session.scalars(select(Token).order_by(Token.id)).all()
        assert [(t.access_expires_at, t.refresh_expires_at) for t in kept] == live
        assert [c.expires_at for c in db.session.scalars(select(AuthorizationCode))] == [future]


def test_purge_clears_replay_answers_once_the_grace_window_has_passed(app, runner, make_user, make_hub,
                                                                      make_resource):
    """A rotated token's row stays for reuse detection until it expires; the answer sealed on it
    for retries does not outlive the grace window by more than a purge."""
    hub, (resource, _secret) = make_hub(), make_resource()
    user = make_user(hubs=[hub])
    now = utcnow()
    grace = app.config["REPLAY_GRACE_SECONDS"]
    rotations = {"long ago": now - timedelta(seconds=grace + 60), "within the window": now, "not rotated": None}
    with app.app_context():
        grant = _grant(user, hub, resource)
        client = grant.client
        for i, rotated in enumerate(rotations.values()):
            db.session.add(Token(grant_id=grant.id, client_pk=client.id, scope=grant.scope,
                                 access_token_hash=sha256_hex(f"a{i}"), refresh_token_hash=sha256_hex(f"r{i}"),
                                 issued_at=now, access_expires_at=now + timedelta(hours=1),
                                 refresh_expires_at=now + timedelta(days=30), rotated_at=rotated,
                                 replay=b"sealed" if rotated else None))
        db.session.commit()
    assert "1 replay answers" in run(runner, "tokens", "purge-expired").output
    with app.app_context():
        kept = {t.refresh_token_hash: t.replay for t in db.session.scalars(select(Token))}
    assert kept == {sha256_hex("r0"): None, sha256_hex("r1"): b"sealed", sha256_hex("r2"): None}


def test_rows_that_purge_deletes_are_found_by_index_from_every_table_referring_to_them(app):
    # Deleting a referenced row makes the database look up the rows referring to it (ON DELETE
    # CASCADE / SET NULL): without an index on the referring column that is one full scan per
    # deleted row, and a purge of a million tokens never ends.
    purged = {"authorization_codes", "tokens", "used_assertions", "ended_sessions",
              "remote_documents"}
    unindexed = [
        f"{table.name}.{fk.parent.name}"
        for table in db.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table.name in purged
        and not any(next(iter(index.columns)).name == fk.parent.name for index in table.indexes)
    ]
    assert unindexed == []


def test_demo_seed_is_idempotent_and_keeps_a_given_secret(app, runner):
    secret = "asrs_demo-secret-for-the-test"
    first = run(runner, "demo", "seed", "--resource-secret", secret).output
    assert "Created user demo@example.com" in first
    second = run(runner, "demo", "seed", "--resource-secret", secret).output
    assert "Demo data already present." in second
    assert "replaced" not in second
    with app.app_context():
        user = accounts.authenticate("demo@example.com", "demo-password")
        hubs = {h.public_id: accounts.permissions(user, h) for h in accounts.find_user_hubs(user)}
        assert set(hubs) == {10000001, 10000002}
        assert "crm.objects.deals.write" in hubs[10000001]
        assert all(s.endswith(".read") for s in hubs[10000002])
        assert resources.authenticate("rs_demo", secret).uri == "http://127.0.0.1:8001/mcp"
        assert len(accounts.find_users()) == 1


_CORP = {"name": "corp", "display_name": "Corp", "issuer": "https://id.corp.example", "client_id": "a",
         "client_secret": "b"}


@pytest.mark.app_config(UPSTREAM_PROVIDERS=[_CORP])
def test_users_link_unlink_and_list_upstream_identities(app, runner, make_user):
    make_user("pat@example.com")
    make_user("sam@example.com")
    assert "Linked 'u-42' at corp to pat@example.com." in run(runner, "users", "link", "pat@example.com", "corp",
                                                              "u-42").output
    assert re.search(r"corp\s+u-42\s+never", run(runner, "users", "links", "pat@example.com").output)
    # One subject, one user: the same subject for another user is refused, nothing changes.
    one_error_line(run(runner, "users", "link", "sam@example.com", "corp", "u-42", ok=False), "already linked")
    one_error_line(run(runner, "users", "link", "sam@example.com", "other", "u-42", ok=False),
                   "No upstream provider named 'other'")
    assert "No upstream identities." in run(runner, "users", "links", "sam@example.com").output
    assert "Unlinked pat@example.com from corp." in run(runner, "users", "unlink", "pat@example.com", "corp").output
    one_error_line(run(runner, "users", "unlink", "pat@example.com", "corp", ok=False), "has no link")
    with app.app_context():
        assert accounts.get_upstream_identity("corp", "u-42") is None
        assert [e.event for e in reversed(audit.find_events(event="user.upstream_*"))] == [
            "user.upstream_linked", "user.upstream_unlinked"]
