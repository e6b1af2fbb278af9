"""Redis is an optimisation, not a single point of failure: with the rate-limit store gone, two
instances keep answering registration, token and introspection requests correctly, each counting
its limits in its own memory; /readyz names Redis as degraded (and stays 200: the instance can
take traffic); the outage is logged once and counted in /metrics; and once Redis answers again the
limits are shared again.

The Redis here is the test's own redis-server (parts.py), killed and restarted under the two
gunicorn instances (one worker each, so that "per instance" is exact). It runs in both passes: on
SQLite the two instances share the run's SQLite file.
"""

from __future__ import annotations

import os
import signal
import time

import httpx2
import pytest

from .conftest import Instance, instance_env, running_instances, seed_world
from .test_instances import code_form, consent, introspect, refresh_form, register, show

#: Registrations per address per minute: small, so that a test can reach it.
LIMIT = 5
SETTINGS = {"REGISTRATION_RATE_LIMIT_PER_IP": f"{LIMIT} per minute", "REDIS_RECHECK_SECONDS": "1",
            "METRICS_ENABLED": "true", "LOG_LEVEL": "WARNING"}
FALLBACK_LOG = "rate-limit storage unreachable"
RECOVERY_LOG = "rate-limit storage answers again"
CLIENT = {"client_name": "Redis fault client", "redirect_uris": ["https://reliability.example/callback"],
          "token_endpoint_auth_method": "none"}


@pytest.fixture
def redis_world(make_app):
    return seed_world(make_app())


def registrations_accepted(http: httpx2.Client, targets: list[Instance], attempts: int = 4 * LIMIT) -> dict[str, int]:
    """Register clients round-robin on `targets` until every target has refused one with 429;
    how many each accepted. Anything but 201 or 429 fails the test."""
    accepted = {t.name: 0 for t in targets}
    refused: set[str] = set()
    for i in range(attempts):
        target = targets[i % len(targets)]
        if target.name in refused:
            continue
        response = http.post(f"{target.url}/oauth/register", json=CLIENT)
        assert response.status_code in (201, 429), show(response)
        if response.status_code == 201:
            accepted[target.name] += 1
        else:
            assert response.json()["error"] == "temporarily_unavailable" and "Retry-After" in response.headers
            refused.add(target.name)
        if refused == set(accepted):
            return accepted
    raise AssertionError(f"no 429 after {attempts} registrations: {accepted}")


def readiness(http: httpx2.Client, instance: Instance) -> tuple[int, dict]:
    response = http.get(f"{instance.url}/readyz")
    return response.status_code, response.json()


def metric(http: httpx2.Client, instance: Instance, name: str) -> float:
    for line in http.get(f"{instance.url}/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in {instance.name}'s /metrics")


def test_redis_down_and_back_under_two_instances(redis_world, database_url, own_redis, tmp_path):
    env = instance_env(redis_world, database_url, own_redis.url, **SETTINGS)
    with running_instances(env, tmp_path, workers=1) as pair, httpx2.Client(timeout=15.0) as http:
        a, b = pair.a, pair.b
        client_id = register(a)  # one registration of the shared budget
        person, callback, pkce, params = consent(redis_world, pair, client_id, request_on=a, sign_in_on=b)
        person.close()
        tokens = http.post(f"{b.url}/oauth/token", data=code_form(client_id, callback["code"], pkce, params))
        assert tokens.status_code == 200, show(tokens)
        tokens = tokens.json()

        # Redis up: one budget for both instances.
        assert sum(registrations_accepted(http, [a, b]).values()) == LIMIT - 1, pair.logs()

        own_redis.kill()
        for instance in (a, b):  # every machine endpoint still answers, and correctly
            assert introspect(http, instance, redis_world, tokens["access_token"])["active"] is True, pair.logs()
            refreshed = http.post(f"{instance.url}/oauth/token", data=refresh_form(client_id, tokens["refresh_token"]))
            assert refreshed.status_code == 200, (show(refreshed), pair.logs())
            assert introspect(http, instance, redis_world, tokens["access_token"]) == {"active": False}
            tokens = refreshed.json()
            # The limits still hold, counted by each instance alone.
            assert registrations_accepted(http, [instance]) == {instance.name: LIMIT}, pair.logs()
            assert readiness(http, instance) == (200, {"status": "degraded", "database": "ok",
                                                       "redis": "unreachable"})
            assert metric(http, instance, "authserver_rate_limit_storage_fallbacks_total") == 1
            assert metric(http, instance, "authserver_rate_limit_storage_degraded") == 1

        own_redis.start()  # empty, as a replaced Redis would be
        deadline = time.monotonic() + 10
        while any(readiness(http, i)[1].get("redis") for i in (a, b)):
            assert time.monotonic() < deadline, "the instances did not see Redis come back"
            time.sleep(0.2)
        for instance in (a, b):
            assert readiness(http, instance) == (200, {"status": "ok", "database": "ok"})
            assert metric(http, instance, "authserver_rate_limit_storage_degraded") == 0
        # Shared again: one budget for both.
        assert sum(registrations_accepted(http, [a, b]).values()) == LIMIT, pair.logs()
        assert introspect(http, a, redis_world, tokens["access_token"])["active"] is True

        for instance in (a, b):
            log = instance.output(tail=10**6)
            assert log.count(FALLBACK_LOG) == 1 and log.count(RECOVERY_LOG) == 1, log
            assert "Traceback" not in log and " 500 " not in log, log


def test_a_hung_redis_costs_each_instance_one_bounded_wait(redis_world, database_url, own_redis, tmp_path):
    """SIGSTOP: Redis accepts connections and never answers. Requests wait REDIS_TIMEOUT once,
    then the instance counts in memory; nothing hangs."""
    env = instance_env(redis_world, database_url, own_redis.url, **SETTINGS)
    with running_instances(env, tmp_path, workers=1) as pair, httpx2.Client(timeout=15.0) as http:
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            waits = []
            for instance in (pair.a, pair.b):
                for _ in range(LIMIT):
                    started = time.monotonic()
                    response = http.post(f"{instance.url}/oauth/register", json=CLIENT)
                    waits.append(time.monotonic() - started)
                    assert response.status_code == 201, (show(response), pair.logs())
                assert readiness(http, instance)[1].get("redis") == "unreachable"
            # REDIS_TIMEOUT is 0.5 s: no request waits on Redis more than about once.
            assert max(waits) < 1.5, (waits, pair.logs())
            assert sum(1 for w in waits if w >= 0.5) <= 4, (waits, pair.logs())
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
