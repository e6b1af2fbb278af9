"""Threat: CPU exhaustion through client authentication, and weak password storage (issue 11 item 7).

Secrets we generate (client and resource-server secrets, 256 random bits) are stored like tokens:
SHA-256, compared in constant time. A wrong secret, and a right one, cost no slow hash at all, so
nobody can make the server burn argon2 time by sending wrong secrets. Secrets stored by earlier
versions as argon2 hashes keep working and are rewritten to SHA-256 on their first successful use.
Passwords, which people choose, stay argon2id at configurable parameters (OWASP's by default) and
are rehashed at sign-in when those change. Observed by counting calls into argon2, never by timing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from oauth.support import REDIRECT_URI, RESOURCE, assert_oauth_error
from sqlalchemy import update

from authserver import accounts, clients, resources
from authserver.config import Defaults
from authserver.extensions import db
from authserver.models import Client, ResourceServer, User
from authserver.secrets import RESOURCE_SECRET_PREFIX, hash_password, new_credential, sha256_hex

from .support import signed_in

# How earlier versions stored these secrets (cheap parameters; verify reads them from the hash).
LEGACY = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def argon2_calls(monkeypatch):
    """Every hash argon2 computes or verifies during the test, by method."""
    calls = []
    real_verify, real_hash = PasswordHasher.verify, PasswordHasher.hash

    def verify(self, stored, secret):
        calls.append("verify")
        return real_verify(self, stored, secret)

    def hash_(self, secret, *args, **kwargs):
        calls.append("hash")
        return real_hash(self, secret, *args, **kwargs)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    monkeypatch.setattr(PasswordHasher, "hash", hash_)
    return calls


def stored_client_secret(app, client_id: str) -> str:
    with app.app_context():
        return db.session.query(Client).filter_by(client_id=client_id).one().client_secret_hash


def stored_resource_secret(app) -> str:
    with app.app_context():
        return resources.get_by_uri(RESOURCE).credential_secret_hash


def token_request(flow, client_id: str, secret: str, **overrides):
    """A code exchange authenticated with HTTP Basic (the code is fresh unless overridden)."""
    data = overrides or None
    if data is None:
        code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "code_verifier": pkce.verifier, "resource": RESOURCE}
    return flow.client.post("/oauth/token", auth=(client_id, secret), data=data)


def test_generated_secrets_are_stored_as_sha256(app, client, world):
    registered = client.post("/oauth/register", json={"redirect_uris": ["https://app.example.com/cb"]}).get_json()
    with app.app_context():
        cli_client, cli_secret = clients.create_preregistered("CLI app", ["https://app.example.com/cb"])
        resource, resource_secret = resources.create("https://mcp.example.com/mcp", "MCP")
        db.session.commit()
        rows = [
            (db.session.get(Client, cli_client.id).client_secret_hash, cli_secret),
            (db.session.get(ResourceServer, resource.id).credential_secret_hash, resource_secret),
        ]
    rows.append((stored_client_secret(app, registered["client_id"]), registered["client_secret"]))
    for stored, secret in rows:
        assert stored == sha256_hex(secret)


# Wrong secrets at every endpoint that authenticates a client or a resource server, each way a
# credential can be sent.
WRONG = [
    ("token, Basic", "/oauth/token", "basic", {"grant_type": "refresh_token", "refresh_token": "asr_x"}),
    ("token, form", "/oauth/token", "post", {"grant_type": "refresh_token", "refresh_token": "asr_x"}),
    ("revocation, Basic", "/oauth/revoke", "basic", {"token": "ast_x"}),
    ("introspection, Basic", "/oauth/introspect", "basic-resource", {"token": "ast_x"}),
    ("introspection, form", "/oauth/introspect", "post-resource", {"token": "ast_x"}),
]


@pytest.mark.parametrize("label, path, how, data", WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_secret_costs_no_argon2_work(app, client, world, preregistered, argon2_calls, label, path, how, data):
    client_id, secret = preregistered()
    if how.endswith("resource"):
        with app.app_context():
            client_id = resources.get_by_uri(RESOURCE).credential_id
    for wrong in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "x", "ass_" + "A" * 43):
        if how.startswith("basic"):
            response = client.post(path, data=data, auth=(client_id, wrong))
        else:
            response = client.post(path, data={**data, "client_id": client_id, "client_secret": wrong})
        assert_oauth_error(response, "invalid_client", 401)
    assert argon2_calls == []


def test_a_right_secret_costs_no_argon2_work_either(app, flow, preregistered, argon2_calls):
    client_id, secret = preregistered()
    code_exchange = token_request(flow, client_id, secret)
    argon2_calls.clear()  # (signing in above verified alice's password)
    assert code_exchange.status_code == 200
    refreshed = token_request(flow, client_id, secret, grant_type="refresh_token",
                              refresh_token=code_exchange.get_json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["active"] is True
    assert argon2_calls == []


def test_a_legacy_argon2_client_secret_works_once_and_is_rewritten(app, flow, preregistered, argon2_calls):
    client_id, secret = preregistered()
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id)
                           .values(client_secret_hash=LEGACY.hash(secret)))
        db.session.commit()
    assert token_request(flow, client_id, "ass_wrong", grant_type="refresh_token", refresh_token="asr_x").status_code == 401
    assert stored_client_secret(app, client_id).startswith("$argon2id$")  # a wrong secret changes nothing

    first = token_request(flow, client_id, secret)
    assert first.status_code == 200
    assert stored_client_secret(app, client_id) == sha256_hex(secret)
    argon2_calls.clear()
    refreshed = token_request(flow, client_id, secret, grant_type="refresh_token",
                              refresh_token=first.get_json()["refresh_token"])
    assert refreshed.status_code == 200
    assert token_request(flow, client_id, "ass_wrong", grant_type="refresh_token", refresh_token="asr_x").status_code == 401
    assert argon2_calls == []


def test_a_legacy_argon2_resource_secret_works_once_and_is_rewritten(app, flow, register, world, argon2_calls):
    token = flow.tokens(register()["client_id"])["access_token"]
    secret = new_credential(RESOURCE_SECRET_PREFIX)
    with app.app_context():
        credential_id = resources.get_by_uri(RESOURCE).credential_id
        db.session.execute(update(ResourceServer).where(ResourceServer.credential_id == credential_id)
                           .values(credential_secret_hash=LEGACY.hash(secret)))
        db.session.commit()

    def introspect(presented):
        return flow.client.post("/oauth/introspect", data={"token": token}, auth=(credential_id, presented))

    assert introspect("asrs_wrong").status_code == 401
    assert stored_resource_secret(app).startswith("$argon2id$")
    assert introspect(secret).get_json()["active"] is True
    assert stored_resource_secret(app) == sha256_hex(secret)
    argon2_calls.clear()
    assert introspect(secret).get_json()["active"] is True
    assert introspect("asrs_wrong").status_code == 401
    assert argon2_calls == []


#: The OWASP Password Storage Cheat Sheet's equally strong argon2id minimums: (iterations, KiB, lanes).
OWASP_ARGON2ID_MINIMUMS = {(1, 47104, 1), (2, 19456, 1), (3, 12288, 1), (4, 9216, 1), (5, 7168, 1)}


def test_password_hashing_defaults_are_owasp_argon2id(make_app):
    defaults = (Defaults.PASSWORD_HASH_TIME_COST, Defaults.PASSWORD_HASH_MEMORY_KIB, Defaults.PASSWORD_HASH_PARALLELISM)
    assert defaults in OWASP_ARGON2ID_MINIMUMS
    time_cost, memory, lanes = defaults
    app = make_app(PASSWORD_HASH_TIME_COST=time_cost, PASSWORD_HASH_MEMORY_KIB=memory, PASSWORD_HASH_PARALLELISM=lanes)
    with app.app_context():
        assert hash_password("correct horse battery").startswith(f"$argon2id$v=19$m={memory},t={time_cost},p={lanes}$")


def test_password_hashes_follow_the_configured_parameters_at_the_next_sign_in(app, make_app, make_user, login):
    user = make_user("carol@example.com")
    with app.app_context():
        old = db.session.get(User, user.id).password_hash
    assert "$m=8,t=1,p=1$" in old

    stronger = make_app(PASSWORD_HASH_TIME_COST=2, PASSWORD_HASH_MEMORY_KIB=64, PASSWORD_HASH_PARALLELISM=1)
    browser = stronger.test_client()
    # A failed attempt leaves the hash alone: only the right password can be rehashed.
    assert login(browser, "carol@example.com", "not the password").status_code == 200
    with stronger.app_context():
        assert db.session.get(User, user.id).password_hash == old
    assert login(browser, "carol@example.com").status_code == 302 and signed_in(browser)
    with stronger.app_context():
        new = db.session.get(User, user.id).password_hash
        assert "$m=64,t=2,p=1$" in new
        # The new hash still verifies the same password, and nothing else.
        PasswordHasher().verify(new, "correct horse battery")
        with pytest.raises(VerificationError):
            PasswordHasher().verify(new, "not the password")
        assert accounts.authenticate("carol@example.com", "correct horse battery") is not None
