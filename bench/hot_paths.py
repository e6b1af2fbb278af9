"""Benchmark of the hot paths: introspection and refresh, over real HTTP against gunicorn.

    .venv/bin/python bench/hot_paths.py                       # SQLite, 2 workers
    .venv/bin/python bench/hot_paths.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

It needs the dev extras (`make test` installs them; or `pip install -e '.[dev]'`).

It creates a fresh database (a new SQLite file, or a database `authserver_bench_<pid>` beside the
given PostgreSQL URL, dropped afterwards), migrates it, seeds one user, hub, resource server and
public client with --tokens token pairs written straight into the store, starts gunicorn, then drives
each endpoint for --seconds from --processes load processes of --threads keep-alive connections each.
It prints requests per second and latency percentiles; it asserts nothing (targets are read, not
enforced). The load generator shares the machine with the server: on 2 cores, both compete.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

ISSUER = "https://auth.bench"
RESOURCE = "https://mcp.bench/mcp"
SCOPE = "crm.objects.contacts.read crm.objects.deals.read"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_database(url: str | None) -> tuple[str, callable]:
    if not url:
        folder = tempfile.mkdtemp(prefix="authserver-bench-")
        return f"sqlite:///{folder}/bench.sqlite3", lambda: None
    name = f"authserver_bench_{os.getpid()}"
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def seed(database_url: str, count: int) -> dict:
    """Migrate and seed; returns the credentials and token pairs the load uses."""
    import flask_migrate

    from authserver import accounts, create_app, resources
    from authserver.extensions import db
    from authserver.models import Client, Grant, Token
    from authserver.timeutil import utcnow

    app = create_app({"TESTING": True, "SECRET_KEY": "x" * 40, "ISSUER": ISSUER, "DATABASE_URL": database_url})
    with app.app_context():
        flask_migrate.upgrade()
        user = accounts.create_user("bench@example.com", "bench-password", "Bench")
        hub = accounts.create_hub("Bench", 10000001)
        accounts.add_member(user, hub, "admin")
        resource, resource_secret = resources.create(RESOURCE, "Bench MCP")
        client = Client(
            client_id="bench-client", registration="cli",
            client_metadata={"client_name": "Bench", "redirect_uris": ["https://client.bench/cb"],
                             "token_endpoint_auth_method": "none",
                             "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]},
        )
        db.session.add(client)
        db.session.flush()
        pairs = []
        now = utcnow()
        # One grant per 100 token pairs, as many users' connections would have.
        for start in range(0, count, 100):
            grant = Grant(user_id=user.id, hub_id=hub.id, client_pk=client.id, resource_id=resource.id,
                          scope=SCOPE, redirect_uri="https://client.bench/cb")
            db.session.add(grant)
            db.session.flush()
            rows = []
            for _ in range(min(100, count - start)):
                access, refresh = "ast_" + secrets.token_urlsafe(32), "asr_" + secrets.token_urlsafe(32)
                pairs.append((access, refresh))
                rows.append(Token(
                    grant_id=grant.id, client_pk=client.id, scope=SCOPE,
                    access_token_hash=hashlib.sha256(access.encode()).hexdigest(),
                    refresh_token_hash=hashlib.sha256(refresh.encode()).hexdigest(),
                    issued_at=now, access_expires_at=now + timedelta(hours=1),
                    refresh_expires_at=now + timedelta(days=30),
                ))
            db.session.add_all(rows)
        db.session.commit()
        creds = (resource.credential_id, resource_secret)
        for engine in db.engines.values():
            engine.dispose()
    return {"pairs": pairs, "resource_auth": creds, "client_id": "bench-client"}


def start_server(database_url: str, port: int, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "AUTHSERVER_SECRET_KEY": "bench-secret-key-" + "x" * 40,
        "AUTHSERVER_ISSUER": ISSUER,
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_LOG_LEVEL": "WARNING",
        # Every limit lifted, per address and per client alike (as make bench-serve does).
        "AUTHSERVER_RATELIMIT_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx2.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def _load(args) -> tuple[list[float], int]:
    """One load process: `threads` keep-alive connections, each working through its share of the
    token pairs until `until` (introspection cycles through them; each refresh uses one up)."""
    kind, base, pairs, threads, until, auth, client_id = args
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(share):
        mine, bad, i = [], 0, 0
        with httpx2.Client(base_url=base, timeout=10) as http:
            while time.monotonic() < until and (kind == "introspect" or i < len(share)):
                access, refresh = share[i % len(share)]
                t0 = time.perf_counter()
                if kind == "introspect":
                    r = http.post("/oauth/introspect", data={"token": access}, auth=auth)
                    ok = r.status_code == 200 and r.json().get("active") is True
                else:
                    r = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                        "client_id": client_id})
                    ok = r.status_code == 200 and "access_token" in r.json()
                mine.append(time.perf_counter() - t0)
                bad += not ok
                i += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    workers = [threading.Thread(target=run, args=(pairs[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies, errors[0]


def drive(kind: str, base: str, pairs, processes: int, threads: int, seconds: float, auth, client_id) -> None:
    until = time.monotonic() + seconds
    started = time.perf_counter()
    jobs = [(kind, base, pairs[p::processes], threads, until, auth, client_id) for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_load, jobs)
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    if not latencies:
        print(f"{kind:11s} no requests completed")
        return
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"{kind:11s} {len(latencies):7d} requests  {len(latencies) / elapsed:8.0f} req/s  "
          f"p50 {pct(0.50):6.1f} ms  p99 {pct(0.99):6.1f} ms  mean {statistics.fmean(latencies) * 1000:6.1f} ms  "
          f"errors {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL URL (a bench database is created beside it); default SQLite")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (gthread, 4 threads each)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per load process")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tokens", type=int, default=20000, help="token pairs seeded (refreshes consume them)")
    args = parser.parse_args()

    database_url, drop = make_database(args.database_url)
    server = None
    try:
        print(f"seeding {args.tokens} token pairs into {make_url(database_url).get_backend_name()} ...", flush=True)
        data = seed(database_url, args.tokens)
        port = free_port()
        server = start_server(database_url, port, args.workers)
        base = f"http://127.0.0.1:{port}"
        print(f"gunicorn: {args.workers} workers x 4 threads; load: {args.processes} processes x "
              f"{args.threads} connections; {args.seconds:g} s per endpoint; {os.cpu_count()} CPUs shared")
        drive("introspect", base, data["pairs"], args.processes, args.threads, args.seconds,
              data["resource_auth"], data["client_id"])
        drive("refresh", base, data["pairs"], args.processes, args.threads, args.seconds,
              data["resource_auth"], data["client_id"])
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        drop()


if __name__ == "__main__":
    main()
