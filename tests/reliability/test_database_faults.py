"""PostgreSQL restarting or hung under load, with real parts: the test's own PostgreSQL cluster
(parts.py: initdb, pg_ctl, on a free port) under two gunicorn instances, while client threads
start token families, rotate their refresh tokens and have their access tokens introspected.

During the fault every answer is either the usual one or a 503 with Retry-After (JSON
`temporarily_unavailable` from the machine endpoints), never a 500; afterwards the same workers
answer again (no worker restart), and the accounting holds: every token family a client holds is
alive with exactly the tokens the client last received, and no refresh family forked. A client
here does what a well-behaved one does with a 503: waits, then sends the identical request again
(inside REPLAY_GRACE_SECONDS, a retry of a request that did take effect gets the same answer).

PostgreSQL pass only (the cluster needs PostgreSQL's binaries), where it always runs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import flask_migrate
import httpx2
import pytest

from .conftest import Instance, Instances, instance_env, running_instances, seed_world
from .test_instances import (
    Family,
    Load,
    LoadClient,
    code_form,
    consent,
    live_tokens,
    refresh_form,
    register,
    show,
)

THREADS = 8
RETRY_FOR = 20.0  # seconds a client keeps retrying one request through 503s
PHASE_TIMEOUT = 20.0


@pytest.fixture
def fault_world(own_postgres, make_app):
    """The schema (by the migrations) and world's people and resource server on the cluster."""
    app = make_app(DATABASE_URL=own_postgres.url)
    with app.app_context():
        flask_migrate.upgrade()
    return seed_world(app)


def worker_pids(instance: Instance) -> set[int]:
    """The gunicorn master's worker processes (a worker restart would change them)."""
    found: set[int] = set()
    for task in Path(f"/proc/{instance.proc.pid}/task").glob("*/children"):
        found |= {int(p) for p in task.read_text().split()}
    return found


@dataclass
class FaultLoad(Load):
    """test_instances' Load, with what these tests count."""

    world: object = None
    statuses: Counter = field(default_factory=Counter)  # (kind, status)
    ok_since_mark: int = 0
    slowest: float = 0.0

    def mark(self) -> None:
        with self.lock:
            self.ok_since_mark = 0

    def wait_for_ok(self, n: int, timeout: float = PHASE_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.failures:
            with self.lock:
                if self.ok_since_mark >= n:
                    return True
            time.sleep(0.05)
        return False


class GaveUp(Exception):
    """A request that 503s did not stop answering in time, or a 503 not shaped as promised."""


class Client(LoadClient):
    """test_instances' load client (new families by remembered consent, refreshes), also
    introspecting, over both instances; a 503 is checked (Retry-After, body) and the identical
    request sent again, as a well-behaved client would."""

    def rotate(self, family: Family) -> None:
        if self.steps % 3 != 1:
            return super().rotate(family)
        response = self.send("POST", "/oauth/introspect", data={"token": family.access},
                             auth=self.load.world.introspection_auth)
        if response.status_code != 200 or response.json().get("active") is not True:
            self.fail("introspection of the latest access token", response)

    def send(self, method: str, path: str, **kwargs) -> httpx2.Response:
        """The first answer that is not a 503."""
        target = (self.load.a, self.load.b)[(self.index + self.steps) % 2]
        kind = "authorize" if method == "GET" else path.rsplit("/", 1)[1]
        deadline = time.monotonic() + RETRY_FOR
        while True:
            started = time.monotonic()
            response = self.http.request(method, target.url + path, **kwargs)
            took = time.monotonic() - started
            with self.load.lock:
                self.load.statuses[(kind, response.status_code)] += 1
                self.load.slowest = max(self.load.slowest, took)
                if response.status_code < 500:
                    self.load.ok_since_mark += 1
            if response.status_code != 503:
                return response
            if not response.headers.get("Retry-After", "").isdigit() or (
                    kind != "authorize" and response.json().get("error") != "temporarily_unavailable"):
                raise GaveUp(f"{kind}: a 503 without Retry-After or RFC 6749 body: {show(response)}")
            if time.monotonic() > deadline:
                raise GaveUp(f"{kind}: still 503 after {RETRY_FOR}s: {show(response)}")
            time.sleep(0.2)


def start_load(world, pair: Instances) -> tuple[FaultLoad, list[threading.Thread]]:
    client_id = register(pair.a)
    person, _, _, _ = consent(world, pair, client_id, request_on=pair.a, sign_in_on=pair.b)
    load = FaultLoad(pair.a, pair.b, client_id, world.resource, httpx2.Cookies(person.http.cookies), world=world)
    person.close()
    threads = [threading.Thread(target=Client(i, load).run, name=f"load-{i}") for i in range(THREADS)]
    for thread in threads:
        thread.start()
    return load, threads


def stop_load(load: FaultLoad, threads: list[threading.Thread]) -> None:
    load.stop.set()
    for thread in threads:
        thread.join(RETRY_FOR + 15)
    assert not any(t.is_alive() for t in threads), "load threads did not stop"


def account(world, load: FaultLoad, pair: Instances, summary: str) -> None:
    """Every family's latest access token is active on both instances, and the database holds
    exactly one live token row per family: the pair its client holds (nothing lost, no fork)."""
    with httpx2.Client(timeout=15.0) as http, ThreadPoolExecutor(8) as pool:
        def active(family: Family) -> bool:
            return all(http.post(f"{i.url}/oauth/introspect", data={"token": family.access},
                                 auth=world.introspection_auth).json().get("active") is True for i in (pair.a, pair.b))
        verdicts = list(pool.map(active, load.families))
    assert all(verdicts), f"{verdicts.count(False)} of {len(load.families)} held access tokens are not active; {summary}"
    from authserver.secrets import sha256_hex

    held = {(sha256_hex(f.access), sha256_hex(f.refresh)) for f in load.families}
    live = {(t.access_token_hash, t.refresh_token_hash) for t in live_tokens(world)}
    assert live == held, (f"{len(live - held)} live rows no client holds (a fork, or a token issued into the void), "
                          f"{len(held - live)} held tokens not live (lost); {summary}")


def test_postgresql_restart_under_load(fault_world, own_postgres, tmp_path):
    env = instance_env(fault_world, own_postgres.url, None)
    with running_instances(env, tmp_path) as pair:
        workers_before = {i.name: worker_pids(i) for i in (pair.a, pair.b)}
        load, threads = start_load(fault_world, pair)
        try:
            assert load.wait_for_ok(60), f"the load did not get going: {load.failures[:3]}\n{pair.logs()}"
            started = time.monotonic()
            own_postgres.stop()  # fast shutdown: every session terminated, new ones refused
            time.sleep(1.0)
            own_postgres.start()
            outage = time.monotonic() - started
            load.mark()
            recovered = load.wait_for_ok(100)
        finally:
            stop_load(load, threads)
        answers = dict(sorted(load.statuses.items()))
        unavailable = sum(n for (_, status), n in answers.items() if status == 503)
        summary = (f"outage {outage:.1f}s; answers {answers}; {unavailable} answered 503 and retried; "
                   f"{len(load.families)} families; slowest answer {load.slowest:.2f}s; failures {load.failures[:5]}")
        print(summary, flush=True)
        assert not load.failures, f"{summary}\n{pair.logs()}"
        assert recovered, f"no recovery after the restart; {summary}\n{pair.logs()}"
        assert unavailable >= 1, f"no request met the outage; {summary}"
        assert not [k for k in answers if k[1] >= 500 and k[1] != 503], summary
        assert {i.name: worker_pids(i) for i in (pair.a, pair.b)} == workers_before, "a worker was restarted"
        account(fault_world, load, pair, summary)
        assert "Traceback" not in pair.logs(), pair.logs()


def test_a_hung_postgresql_fails_requests_within_the_timeout(fault_world, own_postgres, tmp_path):
    """SIGSTOP every PostgreSQL process: connections stay open and nothing answers, so the
    server cannot enforce its own statement_timeout; the client's bound (statement timeout + 1 s)
    and the connect timeout make every request fail in seconds, with a 503, not hang."""
    statement_ms, connect_s = 1000, 2
    env = instance_env(fault_world, own_postgres.url, None, DATABASE_STATEMENT_TIMEOUT_MS=str(statement_ms),
                       DATABASE_CONNECT_TIMEOUT=str(connect_s))
    bound = statement_ms / 1000 + 1 + connect_s + 2  # client bound, one new connection, slack
    with running_instances(env, tmp_path) as pair, httpx2.Client(timeout=60.0) as http:
        client_id = register(pair.a)
        person, callback, pkce, params = consent(fault_world, pair, client_id, request_on=pair.a, sign_in_on=pair.a)
        person.close()
        tokens = http.post(f"{pair.b.url}/oauth/token", data=code_form(client_id, callback["code"], pkce, params)).json()
        requests = [(i, kind) for i in (pair.a, pair.b) for kind in ("introspect", "refresh", "register")] * 2

        def timed(job) -> tuple[str, float, httpx2.Response]:
            instance, kind = job
            started = time.monotonic()
            if kind == "introspect":
                response = http.post(f"{instance.url}/oauth/introspect", data={"token": tokens["access_token"]},
                                     auth=fault_world.introspection_auth)
            elif kind == "refresh":
                response = http.post(f"{instance.url}/oauth/token", data=refresh_form(client_id, tokens["refresh_token"]))
            else:
                response = http.post(f"{instance.url}/oauth/register", json={
                    "client_name": "x", "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"})
            return f"{instance.name} {kind}", time.monotonic() - started, response

        paused = own_postgres.pause()
        try:
            with ThreadPoolExecutor(len(requests)) as pool:
                results = list(pool.map(timed, requests))
        finally:
            own_postgres.resume(paused)
        summary = ", ".join(f"{name} {response.status_code} in {took:.1f}s" for name, took, response in results)
        print(summary, flush=True)
        for name, took, response in results:
            assert took < bound, f"{name} took {took:.1f}s (bound {bound}s): {summary}"
            assert response.status_code == 503, f"{name}: {show(response)}; {summary}"
            assert response.headers["Retry-After"].isdigit()
            assert response.json()["error"] == "temporarily_unavailable"

        # Resumed: the same workers answer again, and the token family is intact.
        deadline, answer = time.monotonic() + 15, None
        while time.monotonic() < deadline:
            answer = http.post(f"{pair.a.url}/oauth/token", data=refresh_form(client_id, tokens["refresh_token"]))
            if answer.status_code != 503:
                break
            time.sleep(0.3)
        assert answer is not None and answer.status_code == 200, (show(answer), pair.logs())
        rotated = answer.json()
        for instance in (pair.a, pair.b):
            response = http.post(f"{instance.url}/oauth/introspect", data={"token": rotated["access_token"]},
                                 auth=fault_world.introspection_auth)
            assert response.status_code == 200 and response.json()["active"] is True, show(response)
        assert "Traceback" not in pair.logs(), pair.logs()
