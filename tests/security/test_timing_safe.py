"""Threat 14: timing side channels on secret comparison (RFC 9700 §4.x client authentication;
RFC 7636 §4.6; CWE-208).

Defence, observed by spying on the real calls (not by grepping):
- the PKCE check compares BASE64URL(SHA256(verifier)) with the challenge through
  hmac.compare_digest (authserver/oauth/pkce.py);
- client and resource-server secrets are stored as argon2id hashes and checked with argon2's
  verify (constant time by construction); a successful check is cached in process under a SHA-256
  key, and a wrong secret is never answered from that cache;
- the registration initial access token is compared by SHA-256 digest with hmac.compare_digest;
- codes and tokens are looked up by SHA-256 digest, never compared as plaintext."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from argon2 import PasswordHasher
from oauth.support import REDIRECT_URI, RESOURCE

from authserver import resources
from authserver import secrets as authserver_secrets
from authserver.extensions import db
from authserver.models import Client


@pytest.fixture
def compare_digest_calls(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


@pytest.fixture
def argon2_verifications(monkeypatch):
    """Hashes argon2 verified during the test (the success cache emptied first)."""
    calls = []
    real = PasswordHasher.verify

    def spy(self, stored_hash, secret):
        calls.append(stored_hash)
        return real(self, stored_hash, secret)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    monkeypatch.setattr(authserver_secrets, "_verified", authserver_secrets._VerifiedCache())
    return calls


def test_timing_safe_pkce_verification_uses_compare_digest(flow, register, compare_digest_calls):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    compare_digest_calls.clear()
    assert flow.exchange(client_id, code, pkce).status_code == 200
    assert (pkce.challenge, pkce.challenge) in compare_digest_calls


def test_timing_safe_client_secret_is_argon2id_and_verified_by_argon2(app, flow, preregistered, argon2_verifications):
    client_id, secret = preregistered()
    with app.app_context():
        stored = db.session.query(Client).filter_by(client_id=client_id).one().client_secret_hash
    assert stored.startswith("$argon2id$") and secret not in stored
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    response = flow.client.post(
        "/oauth/token", auth=(client_id, secret),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "code_verifier": pkce.verifier, "resource": RESOURCE},
    )
    assert response.status_code == 200, response.get_json()
    assert stored in argon2_verifications


def test_timing_safe_dynamic_client_secret_is_argon2id(app, register):
    registered = register(token_endpoint_auth_method="client_secret_post")
    with app.app_context():
        stored = db.session.query(Client).filter_by(client_id=registered["client_id"]).one().client_secret_hash
    assert stored.startswith("$argon2id$") and registered["client_secret"] not in stored


def test_timing_safe_resource_server_secret_is_argon2id_and_verified_by_argon2(app, flow, register, world,
                                                                             argon2_verifications):
    with app.app_context():
        stored = resources.get_by_uri(RESOURCE).credential_secret_hash
    assert stored.startswith("$argon2id$")
    token = flow.tokens(register()["client_id"])["access_token"]
    argon2_verifications.clear()
    assert flow.introspect(token).get_json()["active"] is True
    assert stored in argon2_verifications


def test_timing_safe_wrong_secret_is_never_answered_from_the_cache(app, flow, register, argon2_verifications):
    token = flow.tokens(register()["client_id"])["access_token"]
    assert flow.introspect(token).status_code == 200  # the right secret, now cached
    with app.app_context():
        credential_id = resources.get_by_uri(RESOURCE).credential_id
    argon2_verifications.clear()
    response = flow.client.post("/oauth/introspect", data={"token": token}, auth=(credential_id, "asrs_wrong"))
    assert response.status_code == 401
    assert len(argon2_verifications) == 1


INITIAL_TOKEN = "iat_" + "x" * 40


@pytest.mark.app_config(REGISTRATION_MODE="token",
                        REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES=[hashlib.sha256(INITIAL_TOKEN.encode()).hexdigest()])
def test_timing_safe_initial_access_token_uses_compare_digest(client, compare_digest_calls):
    body = {"client_name": "X", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    wrong = client.post("/oauth/register", json=body, headers={"Authorization": "Bearer iat_wrong"})
    assert wrong.status_code == 401
    right = client.post("/oauth/register", json=body, headers={"Authorization": f"Bearer {INITIAL_TOKEN}"})
    assert right.status_code == 201
    digest = hashlib.sha256(INITIAL_TOKEN.encode()).hexdigest()
    assert (digest, digest) in compare_digest_calls
    assert (hashlib.sha256(b"iat_wrong").hexdigest(), digest) in compare_digest_calls
