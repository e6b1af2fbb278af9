"""private_key_jwt (RFC 7523) for metadata-document and registered clients: good assertions work;
wrong audience, expiry, replay (on any instance), unknown keys and algorithm tricks are refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from oauth.conftest import FlowDriver
from oauth.support import assert_oauth_error

from .conftest import ASSERTION_TYPE, Key, cimd_settings, client_document

PATH = "/agent/client.json"
JWKS = "/agent/jwks.json"
REDIRECT = "https://client.test/callback"


@pytest.fixture
def agent(flow, origin, key):
    """A metadata-document client using private_key_jwt with keys at jwks_uri; returns a function
    that gets a fresh code and exchanges it with the given assertion (or a good one)."""
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT], token_endpoint_auth_method="private_key_jwt",
                                       jwks_uri=origin.url(JWKS)))
    origin.serve(JWKS, {"keys": [key.jwk]})
    token_url = f"{flow.world.issuer}/oauth/token"

    def exchange(assertion: str | None = None, driver: FlowDriver = flow):
        code, pkce, _ = flow.get_code(client_id, redirect_uri=REDIRECT, scope="crm.objects.contacts.read")
        return driver.exchange(client_id, code, pkce, redirect_uri=REDIRECT, client_assertion_type=ASSERTION_TYPE,
                               client_assertion=assertion or key.assertion(client_id, token_url))

    return type("Agent", (), {"client_id": client_id, "token_url": token_url, "exchange": staticmethod(exchange)})


def test_good_assertion_es256(agent):
    response = agent.exchange()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["refresh_token"]


def test_good_assertion_rs256_with_issuer_as_audience(flow, origin):
    key = Key("RS256")
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT], token_endpoint_auth_method="private_key_jwt",
                                       jwks={"keys": [key.jwk]}))
    code, pkce, _ = flow.get_code(client_id, redirect_uri=REDIRECT, scope="crm.objects.contacts.read")
    response = flow.exchange(client_id, code, pkce, redirect_uri=REDIRECT, client_assertion_type=ASSERTION_TYPE,
                             client_assertion=key.assertion(client_id, flow.world.issuer))
    assert response.status_code == 200, response.get_json()


def test_without_an_assertion_the_client_cannot_authenticate(agent, flow):
    code, pkce, _ = flow.get_code(agent.client_id, redirect_uri=REDIRECT, scope="crm.objects.contacts.read")
    assert_oauth_error(flow.exchange(agent.client_id, code, pkce, redirect_uri=REDIRECT), "invalid_client", 401)


@pytest.mark.parametrize("claims, message", [
    ({"aud": "https://someone-else.example/token"}, "aud must be the token endpoint"),
    ({"exp": 1}, "expired"),
    ({"exp": 4102444800}, "lives too long"),
    ({"sub": "https://client.test/other.json"}, "sub must equal iss"),
    ({"jti": None}, "jti"),
])
def test_bad_claims_are_refused(agent, key, claims, message):
    body = assert_oauth_error(agent.exchange(key.assertion(agent.client_id, agent.token_url, **claims)),
                              "invalid_client", 401)
    assert message in body["error_description"]


def test_replayed_jti_is_refused_also_on_a_second_instance(agent, key, make_app, origin, world):
    assertion = key.assertion(agent.client_id, agent.token_url)
    assert agent.exchange(assertion).status_code == 200
    body = assert_oauth_error(agent.exchange(assertion), "invalid_client", 401)
    assert "already used" in body["error_description"]

    other = make_app(**cimd_settings(origin))  # another instance on the same database
    replay = key.assertion(agent.client_id, agent.token_url)
    assert agent.exchange(replay).status_code == 200
    body = assert_oauth_error(agent.exchange(replay, driver=FlowDriver(other.test_client(), world)), "invalid_client", 401)
    assert "already used" in body["error_description"]


def test_key_not_in_the_jwks_is_refused(agent, key):
    stranger = Key("ES256")
    body = assert_oauth_error(agent.exchange(stranger.assertion(agent.client_id, agent.token_url)), "invalid_client", 401)
    assert "no key in the client's JWKS" in body["error_description"]
    same_kid = Key("ES256", kid=key.kid)
    body = assert_oauth_error(agent.exchange(same_kid.assertion(agent.client_id, agent.token_url)), "invalid_client", 401)
    assert "signature does not verify" in body["error_description"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(agent, key):
    good = jwt.decode(key.assertion(agent.client_id, agent.token_url), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_b64(good)}."
    body = assert_oauth_error(agent.exchange(unsigned), "invalid_client", 401)
    assert "alg must be one of RS256, ES256" in body["error_description"]


def test_hs256_with_the_public_key_as_secret_is_refused(agent, key):
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    public_pem = key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(key.assertion(agent.client_id, agent.token_url), options={"verify_signature": False})
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{_b64(claims)}"
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    forged = f"{signing_input}.{signature.rstrip(b'=').decode()}"
    body = assert_oauth_error(agent.exchange(forged), "invalid_client", 401)
    assert "alg must be one of RS256, ES256" in body["error_description"]


def test_registered_client_with_jwks_uses_private_key_jwt(client, flow, key):
    response = client.post("/oauth/register", json={
        "client_name": "Keyed Agent", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.jwk]}, "grant_types": ["authorization_code", "refresh_token"],
    })
    assert response.status_code == 201, response.get_json()
    registered = response.get_json()
    assert "client_secret" not in registered
    client_id = registered["client_id"]
    token_url = f"{flow.world.issuer}/oauth/token"
    code, pkce, _ = flow.get_code(client_id, redirect_uri=REDIRECT, scope="crm.objects.contacts.read")
    tokens = flow.exchange(client_id, code, pkce, redirect_uri=REDIRECT, client_assertion_type=ASSERTION_TYPE,
                           client_assertion=key.assertion(client_id, token_url))
    assert tokens.status_code == 200, tokens.get_json()
    refreshed = flow.refresh(client_id, tokens.get_json()["refresh_token"], client_assertion_type=ASSERTION_TYPE,
                             client_assertion=key.assertion(client_id, token_url))
    assert refreshed.status_code == 200, refreshed.get_json()
    assert_oauth_error(flow.refresh(client_id, refreshed.get_json()["refresh_token"]), "invalid_client", 401)


@pytest.mark.parametrize("metadata, message", [
    ({}, "exactly one of jwks and jwks_uri"),
    ({"jwks": {"keys": []}, "jwks_uri": "https://client.test/jwks.json"}, "exactly one of jwks and jwks_uri"),
    ({"jwks_uri": "http://client.test/jwks.json"}, "https"),
])
def test_registration_with_private_key_jwt_needs_keys(client, world, metadata, message):
    response = client.post("/oauth/register", json={
        "client_name": "Keyed Agent", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
        **metadata,
    })
    body = assert_oauth_error(response, "invalid_client_metadata")
    assert message in body["error_description"]


def test_metadata_advertises_private_key_jwt(client):
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == ["RS256", "ES256"]



@pytest.mark.parametrize("change", [{"crv": "Call 555-HACKER"}, {"x": None}, {"x": 555}, {"y": ["555-HACKER"]}],
                         ids=["unknown curve", "no x", "x not a string", "y not a string"])
def test_an_unusable_key_is_refused_without_quoting_the_jwks(agent, key, origin, change):
    """Issue 11 item 10 (c): a malformed key is a 401 in our own words (it was a 500 for some),
    never quoting the JWKS, which is the document author's text."""
    origin.serve(JWKS, {"keys": [{k: v for k, v in {**key.jwk, **change}.items() if v is not None}]})
    body = assert_oauth_error(agent.exchange(), "invalid_client", 401)
    assert "not usable" in body["error_description"]
    assert "555" not in body["error_description"]


@pytest.mark.parametrize("expires_in", [-20, -1, 1, 60, 300])
def test_a_used_jti_is_remembered_for_as_long_as_the_assertion_is_accepted(agent, key, app, expires_in):
    """Issue 11 item 10 (e): exp is accepted with LEEWAY seconds of clock skew, so the jti record
    must outlive exp by as much: purging at any instant the assertion still verifies keeps it."""
    from datetime import datetime, timezone

    from authserver import store
    from authserver.extensions import db
    from authserver.oauth.assertion import LEEWAY

    now = int(time.time())
    exp = now + expires_in
    assertion = key.assertion(agent.client_id, agent.token_url, iat=min(now, exp - 1), exp=exp)
    assert agent.exchange(assertion).status_code == 200
    with app.app_context():
        # The last instant at which the assertion is still accepted (exp + LEEWAY is exclusive).
        store.purge_expired(datetime.fromtimestamp(exp + LEEWAY - 1, timezone.utc).replace(tzinfo=None))
        db.session.commit()
    body = assert_oauth_error(agent.exchange(assertion), "invalid_client", 401)
    assert "already used" in body["error_description"]


def test_a_client_of_another_method_is_refused_before_its_keys_are_fetched(flow, origin, key, app):
    """The rule that keeps Authlib's JWTBearerClientAssertion out (it checks the method last): an
    assertion for a client registered without private_key_jwt fetches no JWKS and spends no jti."""
    from sqlalchemy import func, select

    from authserver.extensions import db
    from authserver.models import UsedAssertion

    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT], jwks_uri=origin.url(JWKS)))
    origin.serve(JWKS, {"keys": [key.jwk]})
    code, pkce, _ = flow.get_code(client_id, redirect_uri=REDIRECT, scope="crm.objects.contacts.read")
    response = flow.exchange(client_id, code, pkce, redirect_uri=REDIRECT, client_assertion_type=ASSERTION_TYPE,
                             client_assertion=key.assertion(client_id, f"{flow.world.issuer}/oauth/token"))
    body = assert_oauth_error(response, "invalid_client", 401)
    assert "authenticates with none, not private_key_jwt" in body["error_description"]
    assert origin.hits[JWKS] == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UsedAssertion)) == 0
