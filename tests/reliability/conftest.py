"""Fixtures for "several instances, one database": two gunicorn processes of authserver (`wsgi:app`)
on the run's one PostgreSQL database and one Redis, each on its own free 127.0.0.1 port, with the
same issuer and secret key, as two nodes behind a load balancer would be.

Each gunicorn master is started in its own session (hence its own process group) so that a test
can SIGKILL the master and its workers at once, as a crashed host would lose them; teardown stops
whatever is left (SIGTERM, then SIGKILL) and the output of both instances goes to files in
tmp_path, whose tails `Instances.logs()` returns for assertion messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest
from live import ROOT, free_port
from oauth.support import PASSWORD, RESOURCE

from authserver import accounts, resources
from authserver.extensions import db

#: Both instances answer for this one issuer, as nodes behind a load balancer named like this
#: would; it is deliberately neither instance's own URL. It is http, which production refuses:
#: AUTHSERVER_TESTING=true (what every in-process test app has, see TEST_SETTINGS) lets it start.
#: An https issuer would make the session cookie Secure, and httpx (like a browser) never sends
#: a Secure cookie over the plain-http connections these tests use.
ISSUER = "http://authserver.reliability.test"
SECRET_KEY = "reliability-tests-shared-secret-key-0123456789"
EMAIL = "alice@example.com"
HUB = "10000001"
SCOPE = "crm.objects.contacts.read crm.objects.deals.read"
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")
START_TIMEOUT = 30.0


@dataclass
class Instance:
    """One gunicorn master and its workers, alone in their process group."""

    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen
    _log: object = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, tail: int = 6000) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text if len(text) <= tail else "...\n" + text[-tail:]

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the master and every worker at once: no graceful shutdown, no goodbye to the
        database or to clients (the pgid is the master's pid: it leads its own session)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM the group (graceful), then SIGKILL anything left of it."""
        if self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                pass
        # Workers outlive a master that died alone; the group still names them.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self._log.close()


def start_instance(name: str, env: dict[str, str], folder: Path, workers: int = 2) -> Instance:
    """Start `python -m gunicorn wsgi:app` from the checkout, as production (and bench/) does."""
    port = free_port()
    instance_path = folder / f"instance-{name}"
    instance_path.mkdir()
    log_path = folder / f"gunicorn-{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115  (closed by Instance.stop)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app", "--config", str(GUNICORN_CONF),
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "gthread", "--threads", "4",
             "--graceful-timeout", "5", "--log-level", "warning"],
            cwd=ROOT, env={**env, "RELIABILITY_INSTANCE_PATH": str(instance_path)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    return Instance(name, port, log_path, proc, log)


def wait_ready(instance: Instance, timeout: float = START_TIMEOUT) -> None:
    """Poll /readyz (which queries the database) until it answers 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx2.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not instance.running():
                raise AssertionError(
                    f"instance {instance.name} exited with {instance.proc.returncode}:\n{instance.output()}"
                )
            try:
                response = http.get(f"{instance.url}/readyz")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx2.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
    raise AssertionError(f"instance {instance.name} not ready after {timeout}s ({last}):\n{instance.output()}")


@dataclass
class Instances:
    a: Instance
    b: Instance

    def logs(self) -> str:
        return "\n".join(f"--- gunicorn {i.name} ({i.log_path}) ---\n{i.output()}" for i in (self.a, self.b))


@pytest.fixture
def shared_services(db_backend: str, redis_url: str | None) -> None:
    """Several instances only share state through a real database server and Redis."""
    if db_backend == "sqlite" or redis_url is None:
        pytest.skip("needs PostgreSQL and Redis: run with AUTHSERVER_TEST_DATABASE_URL and AUTHSERVER_TEST_REDIS_URL")


@pytest.fixture
def world(shared_services, make_app) -> SimpleNamespace:
    """alice, admin of hub 10000001; one resource server at RESOURCE. Seeded in-process on the
    run's database, committed, and every connection of the seeding app closed before gunicorn
    starts, so nothing here holds a lock while the instances run."""
    return seed_world(make_app())


def seed_world(app) -> SimpleNamespace:
    """Seed `world`'s people, hub and resource server with `app`, then close its connections."""
    with app.app_context():
        alice = accounts.create_user(EMAIL, PASSWORD, "Alice")
        accounts.add_member(alice, accounts.create_hub("Acme", int(HUB)), "admin")
        resource, secret = resources.create(RESOURCE, "CRM MCP", None, SCOPE.split())
        db.session.commit()
        world = SimpleNamespace(
            app=app, email=EMAIL, password=PASSWORD, resource=RESOURCE,
            introspection_auth=(resource.credential_id, secret),
            ratelimit_key_prefix=app.config["RATELIMIT_KEY_PREFIX"],
        )
        db.session.remove()
        db.engine.dispose()
    return world


@pytest.fixture
def instances(world, database_url: str, redis_url: str, tmp_path: Path):
    """Instances A and B, started together, both ready; stopped at teardown, whatever happened."""
    with running_instances(instance_env(world, database_url, redis_url), tmp_path) as pair:
        yield pair


def instance_env(world, database_url: str, redis_url: str | None, **settings: str) -> dict[str, str]:
    """The environment of an instance on these services; `settings` are AUTHSERVER_* overrides."""
    env = {
        **os.environ,
        "AUTHSERVER_TESTING": "true",
        "AUTHSERVER_ISSUER": ISSUER,
        "AUTHSERVER_SECRET_KEY": SECRET_KEY,
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_REDIS_URL": redis_url,
        # The run's prefix: tests/conftest.py drops these counters before each test and at the end.
        "AUTHSERVER_RATELIMIT_KEY_PREFIX": world.ratelimit_key_prefix,
        # The load test sends well over the default 1200 token requests a minute for one client_id
        # (the limit is per client, shared through Redis by both instances); rate limiting is not
        # what these tests are about, so the token and introspection limits are raised.
        "AUTHSERVER_TOKEN_RATE_LIMIT": "1000000 per minute",
        "AUTHSERVER_INTROSPECTION_RATE_LIMIT": "1000000 per minute",
        "AUTHSERVER_TOKEN_RATE_LIMIT_PER_IP": "1000000 per minute",
        "AUTHSERVER_INTROSPECTION_RATE_LIMIT_PER_IP": "1000000 per minute",
        "AUTHSERVER_LOG_FORMAT": "text",
        "AUTHSERVER_LOG_LEVEL": "WARNING",
        **{f"AUTHSERVER_{name}": value for name, value in settings.items()},
    }
    if redis_url is None:
        env.pop("AUTHSERVER_REDIS_URL")
    return env


@contextmanager
def running_instances(env: dict[str, str], folder: Path, workers: int = 2):
    """Instances A and B, started together, both ready; stopped on exit, whatever happened."""
    started: list[Instance] = []
    try:
        for name in ("A", "B"):
            started.append(start_instance(name, env, folder, workers))
        for instance in started:
            wait_ready(instance)
        yield Instances(*started)
    finally:
        for instance in started:
            instance.stop()


# --- parts of the test's own (parts.py) ------------------------------------------------------------
@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of this test's own, started; killed at teardown."""
    from .parts import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_postgres(db_backend: str):
    """A PostgreSQL cluster of this test's own, started; stopped at teardown. Only in the
    PostgreSQL pass (the SQLite pass may run where no PostgreSQL is installed)."""
    from .parts import PG_BIN, PostgresCluster

    if db_backend == "sqlite" or not (PG_BIN / "initdb").exists():
        pytest.skip("database fault tests run in the PostgreSQL pass (AUTHSERVER_TEST_DATABASE_URL)")
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        pids = []
        try:
            pids = [cluster.postmaster_pid()]
        except (OSError, ValueError, IndexError):
            pass
        cluster.resume(pids)  # a stopped postmaster cannot shut down
        cluster.stop()
        cluster.remove()
