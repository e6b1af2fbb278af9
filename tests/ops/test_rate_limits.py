"""Rate limits (Flask-Limiter): 429 with Retry-After and an RFC 6749-shaped body on machine
endpoints, a page for people, and shared across instances when Redis is configured."""

from __future__ import annotations

import pytest
from oauth.support import ALL_READ, assert_oauth_error


@pytest.mark.app_config(TOKEN_RATE_LIMIT="3 per minute")
def test_token_endpoint_limit_per_public_client_and_address(client, register, world):
    client_id = register()["client_id"]
    data = {"grant_type": "refresh_token", "refresh_token": "asr_nope", "client_id": client_id}
    statuses = [client.post("/oauth/token", data=data).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    response = client.post("/oauth/token", data=data)
    body = assert_oauth_error(response, "temporarily_unavailable", 429)
    assert int(response.headers["Retry-After"]) > 0
    assert body["error_description"]
    # Another client is not affected, nor the same public client from another address.
    other = register(client_name="Other")["client_id"]
    assert client.post("/oauth/token", data={**data, "client_id": other}).status_code == 400
    assert client.post("/oauth/token", data=data, environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 400


@pytest.mark.app_config(TOKEN_RATE_LIMIT="3 per minute")
def test_token_endpoint_limit_per_confidential_client(client, preregistered):
    client_id, secret = preregistered()
    data = {"grant_type": "refresh_token", "refresh_token": "asr_nope"}
    statuses = [client.post("/oauth/token", data=data, auth=(client_id, secret),
                            environ_base={"REMOTE_ADDR": f"192.0.2.{i}"}).status_code for i in range(4)]
    # A proven client's budget is its own wherever it calls from.
    assert statuses == [400, 400, 400, 429]


@pytest.mark.app_config(TOKEN_RATE_LIMIT_PER_IP="3 per minute", INTROSPECTION_RATE_LIMIT_PER_IP="2 per minute")
def test_route_limits_count_per_address_whatever_name_is_sent(client, register, world):
    clients = [register(client_name=f"App {i}")["client_id"] for i in range(4)]
    statuses = [client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "asr_nope",
                                                  "client_id": c}).status_code for c in clients]
    assert statuses == [400, 400, 400, 429]
    statuses = [client.post("/oauth/introspect", data={"token": "x"}, headers=auth).status_code
                for auth in (world.mcp_auth, world.other_auth, world.mcp_auth)]
    assert statuses == [200, 200, 429]
    other_address = {"REMOTE_ADDR": "192.0.2.9"}
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth,
                       environ_base=other_address).status_code == 200


@pytest.mark.app_config(CLIENT_AUTH_FAILURES_PER_IP="2 per minute")
def test_failed_client_authentication_is_limited_per_address(client, preregistered, world):
    client_id, secret = preregistered()
    data = {"grant_type": "refresh_token", "refresh_token": "asr_nope"}
    # The resource server introspected once, so the lane knows it without the database
    # (resources.known_caller): its limits are then counted in one go, failures first.
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth).status_code == 200
    assert client.post("/oauth/token", data=data, auth=(client_id, "ass_wrong")).status_code == 401
    assert client.post("/oauth/introspect", data={"token": "x"}, auth=("rs_nope", "asrs_wrong")).status_code == 401
    # Over the limit, the address is refused before any authentication, at every client endpoint,
    # even with the right credentials.
    for path, auth in (("/oauth/token", (client_id, secret)), ("/oauth/revoke", (client_id, secret))):
        response = client.post(path, data={**data, "token": "x"}, auth=auth)
        body = assert_oauth_error(response, "temporarily_unavailable", 429)
        assert int(response.headers["Retry-After"]) > 0 and body["error_description"]
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth).status_code == 429
    # Successful authentications never count.
    other = {"REMOTE_ADDR": "192.0.2.9"}
    for _ in range(3):
        assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth,
                           environ_base=other).status_code == 200


@pytest.mark.app_config(INTROSPECTION_RATE_LIMIT="2 per minute")
def test_introspection_limit_per_resource_server(client, world):
    statuses = [client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth,
                            environ_base={"REMOTE_ADDR": f"192.0.2.{i}"}).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    assert int(client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth)
               .headers["Retry-After"]) > 0
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.other_auth).status_code == 200


@pytest.mark.app_config(LOGIN_ATTEMPTS_PER_IP="2 per minute", LOGIN_DELAY_PER_FAILURE=0)
def test_login_limit_is_a_page(client, world):
    import re

    def attempt():
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return client.post("/login", data={"csrf_token": token, "email": "alice@example.com", "password": "wrong"})

    responses = [attempt() for _ in range(3)]
    assert responses[-1].status_code == 429
    assert responses[-1].mimetype == "text/html"


def test_limits_are_shared_across_instances_through_redis(make_app, redis_url, world):
    if not redis_url:
        pytest.skip("needs Redis: run with AUTHSERVER_TEST_REDIS_URL (CI does)")
    first = make_app(INTROSPECTION_RATE_LIMIT="4 per minute")
    second = make_app(INTROSPECTION_RATE_LIMIT="4 per minute")
    assert first.config["RATELIMIT_STORAGE_URI"].startswith("redis")
    statuses = []
    for app in (first, second, first, second, first):
        response = app.test_client().post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 429]


def test_limits_do_not_touch_a_normal_flow(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True
