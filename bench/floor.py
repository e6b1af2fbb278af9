"""The floor under a refresh on this stack: authserver's refresh beside a bare WSGI app that runs
only the refresh's two statements, on the same machine, database, server and client.

    .venv/bin/python bench/floor.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

A refresh here is one read (the client with its refresh token, store._CLIENT_AND_REFRESH) and one
write (the rotation, the new pair, the audit event: store._ROTATION), each a prepared statement in
autocommit on PostgreSQL, with a durable commit. How far can a Python WSGI server on PostgreSQL go
before any of our rules run? This measures it: `floor` serves, under the same granian settings as
`make bench-serve`, an app that hashes the refresh token, runs those two statements (their SQL
taken from authserver.store, so it follows every change to them) with psycopg, and answers a token
JSON carrying a new refresh token; no Flask, no checks, no token format, no sealing (it stores
random bytes as long as the sealed retry answer in its place), no metrics. `authserver` is
`wsgi:app` as served by `make bench-serve`, refreshing the same way. Both run against one fresh
database (`authserver_bench_<pid>` beside the given URL, dropped afterwards), seeded as
bench/hot_paths.py seeds it, driven in alternating rounds by one client: 8 keep-alive connections
(as the peer benchmark's), each following its own chain of rotating refresh tokens, from an
asyncio loop in this process.

For each round it prints refreshes per second and CPU milliseconds per refresh from /proc: the
server's processes, the machine's PostgreSQL and Redis processes (all of them: run it when nothing
else uses them), this client, and the whole machine (/proc/stat). Numbers, not assertions
(docs/benchmarks.md reads them).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hot_paths import ISSUER, SCOPE, free_port, make_database, seed  # noqa: E402
from phases import cpu_seconds, server_pids, store_pids  # noqa: E402
import psycopg  # noqa: E402

from authserver.timeutil import utcnow  # noqa: E402

#: Concurrent connections, each with its own chain (the peer benchmark's -c 8).
CONNECTIONS = 8
#: The floor app's settings, from the environment granian gives its workers (FLOOR_SPEC: a JSON file).
SPEC_VARIABLE = "FLOOR_SPEC"


# --- the floor app (imported by granian's workers as `floor:app`) -------------------------------

_local = threading.local()
_spec: dict | None = None


def app(environ, start_response):
    """A refresh with nothing but its two statements: read the client and the refresh token,
    rotate it and store the new pair (with a retry answer as long as ours) and the audit event,
    answer the new refresh token."""
    global _spec
    if _spec is None:
        with open(os.environ[SPEC_VARIABLE]) as f:
            _spec = json.load(f)
    spec = _spec
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(spec["url"], autocommit=True)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    refresh = body.split(b"refresh_token=", 1)[1].split(b"&", 1)[0]
    row = conn.execute(spec["read"], {"hash": hashlib.sha256(refresh).hexdigest(), "client_id": spec["client_id"]},
                       prepare=True).fetchone()
    token_id = row[spec["id_column"]]
    now = utcnow()
    new_access, new_refresh = "ast_" + secrets.token_urlsafe(32), "asr_" + secrets.token_urlsafe(32)
    answer = json.dumps({"token_type": "Bearer", "expires_in": 3600, "scope": spec["scope"],
                         "access_token": new_access, "refresh_token": new_refresh}).encode()
    params = {
        # As long as the sealed answer authserver keeps for an identical retry (nonce and tag added).
        "id": token_id, "now": now, "replay": os.urandom(len(answer) + 28),
        "grant_id": row[spec["grant_column"]], "code_id": None,
        "client_pk": row[spec["client_pk_column"]],
        "access_token_hash": hashlib.sha256(new_access.encode()).hexdigest(),
        "refresh_token_hash": hashlib.sha256(new_refresh.encode()).hexdigest(), "scope": spec["scope"],
        "authorized_scope": spec["scope"], "issued_at": now, "access_expires_at": now + timedelta(hours=1),
        "refresh_expires_at": now + timedelta(days=30), "auth_time": None, "created_at": now,
        "event": "token.issued", "user_id": row[spec["user_column"]], "hub_id": row[spec["hub_column"]],
        "client_id": spec["client_id"], "ip": environ.get("REMOTE_ADDR"), "request_id": secrets.token_hex(8),
        "detail": json.dumps({"grant_type": "refresh_token", "scope": spec["scope"]}),
        "touch_grant": False, "touch_client": False,
    }
    if conn.execute(spec["write"], params, prepare=True).fetchone() is None:
        start_response("400 Bad Request", [("Content-Type", "application/json")])
        return [b'{"error": "invalid_grant"}']
    start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                              ("Content-Length", str(len(answer)))])
    return [answer]


# --- the benchmark ----------------------------------------------------------------------------


def write_spec(database_url: str, client_id: str, scope: str, path: Path) -> None:
    """The floor app's SQL (authserver.store's, compiled for psycopg) and the columns it reads."""
    from authserver import create_app, store
    from authserver.extensions import db

    app_ = create_app({"SECRET_KEY": "x" * 40, "ISSUER": ISSUER, "DATABASE_URL": database_url})
    with app_.app_context():
        read, _, row_type, _ = store._CLIENT_AND_REFRESH.compiled(db.engine)
        write = store._ROTATION.compiled(db.engine)[0]
        db.engine.dispose()
    columns = row_type._fields
    path.write_text(json.dumps({
        "url": database_url.replace("postgresql+psycopg://", "postgresql://"), "read": read, "write": write,
        "client_id": client_id, "scope": scope, "id_column": columns.index("id"),
        "client_pk_column": columns.index("client__id"),
        "grant_column": columns.index("grant_id"), "user_column": columns.index("user_id"),
        "hub_column": columns.index("hub_id"),
    }))


def serve(kind: str, database_url: str, spec: Path, port: int, workers: int, threads: int,
          redis_url: str | None) -> subprocess.Popen:
    env = {**os.environ, "AUTHSERVER_SECRET_KEY": "bench-secret-key-" + "x" * 40, "AUTHSERVER_ISSUER": ISSUER,
           "AUTHSERVER_DATABASE_URL": database_url, "AUTHSERVER_LOG_LEVEL": "WARNING",
           "AUTHSERVER_RATELIMIT_ENABLED": "false", SPEC_VARIABLE: str(spec)}
    if redis_url:
        env["AUTHSERVER_REDIS_URL"] = redis_url
    target, folder = ("wsgi:app", ROOT) if kind == "authserver" else ("floor:app", ROOT / "bench")
    proc = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--blocking-threads", str(threads), "--no-access-log", "--log-level", "warning",
         target], cwd=folder, env=env, start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"{kind} did not start")


async def refresh_chains(port: int, chains: list[str], count: int, client_id: str) -> list[float]:
    """`count` refreshes shared by one connection per chain, each following its rotation; the
    latencies (seconds). Raises on any answer that is not a new refresh token."""
    left = [count]
    latencies: list[float] = []

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                body = (f"grant_type=refresh_token&refresh_token={chains[index]}&client_id={client_id}").encode()
                started = time.perf_counter()
                writer.write(b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                answer = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if b" 200 " not in status:
                    raise SystemExit(f"refresh refused: {status!r} {answer[:200]!r}")
                chains[index] = json.loads(answer)["refresh_token"]
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(len(chains))))
    return latencies


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, port: int, chains: list[str], count: int, client_id: str) -> dict:
    asyncio.run(refresh_chains(port, chains, min(count, 1000), client_id))  # warm-up
    servers, stores = server_pids(port), store_pids()  # after the warm-up opened the connections
    before = (cpu_seconds(servers), cpu_seconds(stores), time.process_time(), machine_busy(), time.perf_counter())
    latencies = sorted(asyncio.run(refresh_chains(port, chains, count, client_id)))
    after = (cpu_seconds(servers), cpu_seconds(stores), time.process_time(), machine_busy(), time.perf_counter())
    spent = [(b - a) * 1000 / count for a, b in zip(before, after)]
    return {"kind": kind, "ops_per_s": count / (after[4] - before[4]), "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000, "server": spent[0], "database": spent[1],
            "client": spent[2], "machine": spent[3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL URL (a bench database is created beside it)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/1",
                        help="authserver's Redis, as make bench-serve gives it ('' for none)")
    parser.add_argument("-n", type=int, default=10000, help="refreshes per round (after a warm-up of up to 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each server")
    parser.add_argument("--workers", type=int, default=2, help="granian workers (make bench-serve's)")
    parser.add_argument("--threads", type=int, default=4, help="granian blocking threads per worker")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        parser.error("the floor is measured on PostgreSQL")

    database_url, drop = make_database(args.database_url)
    spec = Path(tempfile.gettempdir()) / f"authserver-floor-{os.getpid()}.json"
    try:
        data = seed(database_url, 2 * CONNECTIONS)  # a chain per connection, for each server
        write_spec(database_url, data["client_id"], SCOPE, spec)
        refreshes = [refresh for _, refresh in data["pairs"]]
        chains = {"authserver": refreshes[:CONNECTIONS], "floor": refreshes[CONNECTIONS:]}
        print(f"{os.cpu_count()} CPUs shared by server, PostgreSQL and client; granian {args.workers} workers x "
              f"{args.threads} threads; {CONNECTIONS} connections; {args.n} refreshes per round")
        print(f"{'server':10s} {'round':>5s} {'refresh/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s}   CPU ms per refresh: "
              f"{'server':>6s} {'database':>8s} {'client':>6s} {'machine':>7s}")
        results: dict[str, list[dict]] = {"authserver": [], "floor": []}
        for round_ in range(1, args.rounds + 1):
            for kind in ("authserver", "floor"):
                port = free_port()
                server = serve(kind, database_url, spec, port, args.workers, args.threads, args.redis_url or None)
                try:
                    r = measure(kind, port, chains[kind], args.n, data["client_id"])
                finally:
                    os.killpg(server.pid, signal.SIGTERM)
                    server.wait(timeout=30)
                results[kind].append(r)
                print(f"{kind:10s} {round_:5d} {r['ops_per_s']:9.0f} {r['p50']:7.2f} {r['p99']:7.2f}   "
                      f"{'':20s}{r['server']:6.3f} {r['database']:8.3f} {r['client']:6.3f} {r['machine']:7.3f}")
        for kind, rows in results.items():
            best = sorted(rows, key=lambda r: r["ops_per_s"])[len(rows) // 2]
            print(f"median {kind}: {best['ops_per_s']:.0f} refreshes/s, machine {best['machine']:.3f} ms/refresh")
    finally:
        spec.unlink(missing_ok=True)
        drop()


if __name__ == "__main__":
    main()
