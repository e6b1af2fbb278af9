"""Registration abuse controls, designed for hosted AI clients registering from a few shared IPs."""

from __future__ import annotations

import hashlib

import pytest
from oauth.support import assert_oauth_error

from authserver.extensions import db
from authserver.models import Client

PUBLIC = {"client_name": "Claude", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
          "token_endpoint_auth_method": "none", "software_id": "claude-web"}


def register_from(client, ip: str, metadata: dict, **kwargs):
    return client.post("/oauth/register", json=metadata, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def count_clients(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(Client))


@pytest.mark.app_config(REGISTRATION_RATE_LIMIT_PER_IP="30 per minute", REGISTRATION_RATE_LIMIT_GLOBAL="1000 per minute")
def test_a_burst_of_200_registrations_from_one_ip_is_limited_and_others_still_register(app, client):
    statuses = []
    for n in range(200):
        metadata = {**PUBLIC, "client_name": f"Flood {n}"}
        statuses.append(register_from(client, "203.0.113.9", metadata).status_code)
    assert statuses.count(201) == 30 and statuses.count(429) == 170, statuses
    assert count_clients(app) == 30

    limited = register_from(client, "203.0.113.9", PUBLIC)
    body = assert_oauth_error(limited, "temporarily_unavailable", 429)
    assert int(limited.headers["Retry-After"]) > 0 and "Retry-After" in body["error_description"]

    legit = register_from(client, "198.51.100.20", PUBLIC)
    assert legit.status_code == 201, legit.get_json()


@pytest.mark.app_config(REGISTRATION_RATE_LIMIT_PER_IP="1000 per minute", REGISTRATION_RATE_LIMIT_GLOBAL="50 per minute")
def test_the_global_ceiling_holds_across_addresses(client):
    statuses = [register_from(client, f"198.51.100.{n}", {**PUBLIC, "client_name": f"C{n}"}).status_code
                for n in range(60)]
    assert statuses.count(201) == 50 and statuses.count(429) == 10


def test_identical_public_client_returns_the_existing_one(app, client):
    first = register_from(client, "203.0.113.1", PUBLIC)
    second = register_from(client, "203.0.113.2", PUBLIC)
    assert first.status_code == second.status_code == 201
    assert first.get_json()["client_id"] == second.get_json()["client_id"]
    assert "registration_access_token" not in second.get_json()  # nobody manages a shared client
    different = register_from(client, "203.0.113.2", {**PUBLIC, "redirect_uris": ["https://claude.ai/other"]})
    assert different.get_json()["client_id"] != first.get_json()["client_id"]
    assert count_clients(app) == 2


def test_confidential_clients_are_never_deduplicated(app, client):
    metadata = {**PUBLIC, "token_endpoint_auth_method": "client_secret_basic"}
    ids = {register_from(client, "203.0.113.1", metadata).get_json()["client_id"] for _ in range(2)}
    assert len(ids) == 2


def test_too_many_redirect_uris(client):
    metadata = {**PUBLIC, "redirect_uris": [f"https://app.example/cb/{n}" for n in range(21)]}
    body = assert_oauth_error(register_from(client, "203.0.113.1", metadata), "invalid_redirect_uri")
    assert "at most 20" in body["error_description"]


def test_oversized_metadata(client):
    metadata = {**PUBLIC, "client_uri": "https://app.example/" + "x" * 9000}
    body = assert_oauth_error(register_from(client, "203.0.113.1", metadata), "invalid_client_metadata")
    assert "too large" in body["error_description"]


@pytest.mark.app_config(REDIRECT_HOST_DENYLIST=["evil.example"])
@pytest.mark.parametrize("uri", ["https://evil.example/cb", "https://login.evil.example/cb"])
def test_operator_denylist_of_redirect_hosts(client, uri):
    body = assert_oauth_error(register_from(client, "203.0.113.1", {**PUBLIC, "redirect_uris": [uri]}),
                              "invalid_redirect_uri")
    assert "evil.example" in body["error_description"] or "not allowed" in body["error_description"]


TOKEN = "initial-access-token-for-tests"


@pytest.mark.app_config(REGISTRATION_MODE="token",
                        REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES=[hashlib.sha256(TOKEN.encode()).hexdigest()])
def test_registration_can_require_an_initial_access_token(client):
    assert_oauth_error(register_from(client, "203.0.113.1", PUBLIC), "invalid_token", 401)
    wrong = register_from(client, "203.0.113.1", PUBLIC, headers={"Authorization": "Bearer wrong"})
    assert_oauth_error(wrong, "invalid_token", 401)
    right = register_from(client, "203.0.113.1", PUBLIC, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 201, right.get_json()
    assert client.get("/.well-known/oauth-authorization-server").get_json()["registration_endpoint"].endswith("/oauth/register")


@pytest.mark.app_config(REGISTRATION_MODE="closed")
def test_registration_can_be_closed(client):
    response = register_from(client, "203.0.113.1", PUBLIC)
    assert 400 <= response.status_code < 500
    assert "registration_endpoint" not in client.get("/.well-known/oauth-authorization-server").get_json()
