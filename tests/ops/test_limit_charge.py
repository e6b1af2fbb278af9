"""limits.charge: several rate limits a request consults, counted together (one round trip to
Redis), exactly as consulting them one by one would count and refuse."""

from __future__ import annotations

import random

import pytest

from authserver import limits
from authserver.extensions import limiter

#: Three limits small enough to be reached in a few requests.
SETTINGS = {"INTROSPECTION_RATE_LIMIT_PER_IP": "5 per minute", "INTROSPECTION_RATE_LIMIT": "3 per minute",
            "CLIENT_AUTH_FAILURES_PER_IP": "4 per minute"}


def one_by_one(checks) -> int | None:
    """What the views do: each check in turn, stopping at the first refused."""
    for index, (op, setting, scope, *key) in enumerate(checks):
        if (limits.hit if op == "hit" else limits.test)(setting, scope, *key) is not None:
            return index
    return None


def remaining(checks) -> list[int]:
    return [limiter.limiter.get_window_stats(limits._item(setting), *limits._identifiers(scope, tuple(key))).remaining
            for _, setting, scope, *key in checks]


@pytest.mark.parametrize("seed", range(3))
def test_charge_counts_and_refuses_as_one_by_one_does(make_app, seed):
    """Random requests, each a random sequence of hits and tests on three limits: charged on one
    set of keys and consulted one by one on another, every answer and every counter agree."""
    app = make_app(**SETTINGS)
    rng = random.Random(seed)
    with app.test_request_context():
        for _ in range(40):
            checks = []
            for _ in range(rng.randint(1, 4)):
                setting = rng.choice(list(SETTINGS))
                checks.append((rng.choice(["hit", "hit", "test"]), setting, "charge-test", rng.choice("ab")))
            twin = [(op, setting, "one-by-one", key) for op, setting, _, key in checks]
            assert limits.charge(*checks) == one_by_one(twin), checks
            assert remaining(checks) == remaining(twin), checks


def test_charge_is_one_round_trip_on_redis(make_app, redis_url, monkeypatch):
    if not redis_url:
        pytest.skip("needs Redis: run with AUTHSERVER_TEST_REDIS_URL (CI does)")
    app = make_app(**SETTINGS)
    client = limiter.limiter.storage.storage  # the redis.Redis the storage and the script use
    sent = []
    execute = client.execute_command
    monkeypatch.setattr(client, "execute_command", lambda *args, **kw: sent.append(args[0]) or execute(*args, **kw))
    with app.test_request_context():
        checks = [("test", *limits.FAILURES, "192.0.2.1"), ("hit", *limits.INTROSPECTION_PER_IP, "192.0.2.1"),
                  ("hit", *limits.INTROSPECTION_PER_RESOURCE, "rs_x")]
        assert limits.charge(*checks) is None
    assert sent == ["EVALSHA"]


def test_a_refused_check_names_its_wait(make_app):
    app = make_app(**SETTINGS)
    with app.test_request_context():
        checks = [("hit", *limits.INTROSPECTION_PER_RESOURCE, "rs_y")]
        assert [limits.charge(*checks) for _ in range(4)] == [None, None, None, 0]
        assert 0 < limits.retry_after(checks[0]) <= 60


def test_introspection_costs_one_round_trip_to_redis(make_app, redis_url, monkeypatch, flow_world):
    """The lane's limits for a resource server it knows: failures, address and resource server
    in one EVALSHA, whatever else the request does."""
    if not redis_url:
        pytest.skip("needs Redis: run with AUTHSERVER_TEST_REDIS_URL (CI does)")
    app, world = flow_world
    client = app.test_client()
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth).status_code == 200
    redis_client = limiter.limiter.storage.storage
    sent = []
    execute = redis_client.execute_command
    monkeypatch.setattr(redis_client, "execute_command",
                        lambda *args, **kw: sent.append(args[0]) or execute(*args, **kw))
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth).status_code == 200
    assert sent == ["EVALSHA"]


@pytest.fixture
def flow_world(app, world):
    return app, world
