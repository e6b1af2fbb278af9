"""CPU per operation of the hot paths, in process: the WSGI app called directly, no HTTP.

    .venv/bin/python bench/in_process.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/in_process.py --phases refresh --profile 25     # cProfile's top entries

It creates a fresh database as bench/hot_paths.py does (SQLite, or `authserver_bench_<pid>` beside
the given PostgreSQL URL, dropped afterwards), seeds it, then calls the app (the WSGI lane in front
of Flask, as served) for each phase: `refresh` (8 chains of rotating refresh tokens, as the peer
benchmark's workers), `dcr` (an identical public client, as the peer benchmark registers),
`dcr-new` (a new public client each time), `introspect` (a new token each time),
`introspect-again` (8 tokens in turn, as the peer benchmark's workers: on PostgreSQL answered from
the answer cache, authserver/changes.py), `mixed` (one refresh in ten, the others as
introspect-again: what a worker serving both sees; statements per operation show whether the
refreshes cost the cached answers), `flow` (the signed-in flow of a public
loopback client: consent page, consent, code exchange, through Flask's test client, whose own
CPU is counted too; each request's share is printed on a second line). For each it prints the Python CPU per
operation (time.process_time around the WSGI call: our code, the driver's client side) and, on
PostgreSQL, the CPU the database's backends spent (utime + stime from /proc of the backends of
this database) and the statements and round trips per operation (pg_stat_statements is not
needed: the app's statement listener counts them). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from base64 import b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hot_paths import ISSUER, RESOURCE, SCOPE, make_database, seed  # noqa: E402

REDIRECT_URI = "http://127.0.0.1:8976/callback"
#: The `mixed` phase: one refresh in every MIXED_EVERY operations, introspect-again's the others.
MIXED_EVERY = 10
TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(app) -> dict[int, float]:
    """Seconds of CPU each PostgreSQL client backend connected to the app's database has used, by
    process id (autovacuum workers come and go, and would take their CPU with them)."""
    from sqlalchemy import text

    from authserver.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return {}
        with db.engine.connect() as conn:
            pids = list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                          " AND backend_type = 'client backend'"
                                          " AND application_name <> 'authserver-changes'")).scalars())
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return used


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """The CPU the backends used between two backend_cpu readings. A backend that ended in between
    (the seeding app's connection, closed whenever it is garbage-collected) is left out: its
    lifetime's CPU would otherwise be subtracted from the phase's."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def environ(path: str, body: bytes, content_type: str, authorization: str | None = None) -> dict:
    env = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5200", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:5200", "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if authorization:
        env["HTTP_AUTHORIZATION"] = authorization
    return env


def call(app, env) -> tuple[str, bytes]:
    status = []
    body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
    return status[0], body


def form(values: dict) -> bytes:
    from urllib.parse import urlencode

    return urlencode(values).encode()


class SignedInFlow:
    """The peer benchmark's signed-in flow for a public loopback client (asked every time, RFC 8252
    §8.6): the authorization request (the consent page), the consent POST (the redirect with a
    code), the code exchange; through Flask's test client, whose own CPU is counted too."""

    #: The three requests of one flow, by the step names `step_cpu` reports.
    STEPS = ("consent page", "consent POST", "code exchange")

    def __init__(self, app, resource: str, scope: str):
        import re

        self.re = re
        self.step_cpu = dict.fromkeys(self.STEPS, 0.0)
        self.client = app.test_client()
        self.resource, self.scope = resource, scope
        page = self.client.get("/login", base_url=ISSUER).get_data(as_text=True)
        answer = self.client.post("/login", base_url=ISSUER, data={
            "csrf_token": self.field(page, "csrf_token"), "email": "bench@example.com", "password": "bench-password"})
        assert answer.status_code == 302, answer.status_code
        registered = self.client.post("/oauth/register", base_url=ISSUER, json={
            "client_name": "flow-bench", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]})
        self.client_id = registered.get_json()["client_id"]

    def field(self, html: str, name: str) -> str:
        return self.re.search(f'name="{name}" value="([^"]+)"', html).group(1)

    def once(self) -> None:
        import base64
        import hashlib
        import secrets
        from urllib.parse import parse_qs, urlsplit

        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
                  "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
                  "scope": self.scope, "resource": self.resource}
        page = self.timed("consent page", self.client.get, "/oauth/authorize", base_url=ISSUER, query_string=params)
        html = page.get_data(as_text=True)
        assert page.status_code == 200, page.status_code
        hub = self.field(html, "shown_hub")
        answer = self.timed("consent POST", self.client.post, "/oauth/authorize", base_url=ISSUER,
                            query_string=params, data={
                                "csrf_token": self.field(html, "csrf_token"), "hub": hub, "shown_hub": hub,
                                "decision": "allow", "scope": self.scope.split()})
        assert answer.status_code == 302, answer.status_code
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        tokens = self.timed("code exchange", self.client.post, "/oauth/token", base_url=ISSUER, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": self.client_id, "code_verifier": verifier, "resource": self.resource})
        assert tokens.status_code == 200, tokens.get_json()

    def timed(self, step: str, method, *args, **kwargs):
        """The test client's request, its CPU added to `step` (the test client's own work included)."""
        started = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            self.step_cpu[step] += time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL URL (a bench database is created beside it); default SQLite")
    parser.add_argument("--phases", default="refresh,dcr,dcr-new,introspect")
    parser.add_argument("-n", type=int, default=2000, help="operations per phase (after 200 warm-up ones)")
    parser.add_argument("--redis-url", help="count the rate limits in this Redis (default: limits lifted)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N (by own time)")
    parser.add_argument("--profile-file", metavar="PATH", help="also save the profile there (pstats format)")
    args = parser.parse_args()

    database_url, drop = make_database(args.database_url)
    try:
        data = seed(database_url, 8 + 2 * (args.n + 200))
        from authserver import create_app, rawsql

        limits = {"RATELIMIT_ENABLED": False}
        if args.redis_url:  # the production limits, counted in Redis (each high enough not to refuse)
            limits = {"REDIS_URL": args.redis_url, "RATELIMIT_KEY_PREFIX": f"bench{os.getpid()}",
                      **{name: "1000000 per minute" for name in (
                          "TOKEN_RATE_LIMIT_PER_IP", "TOKEN_RATE_LIMIT", "INTROSPECTION_RATE_LIMIT_PER_IP",
                          "INTROSPECTION_RATE_LIMIT", "REGISTRATION_RATE_LIMIT_PER_IP", "REGISTRATION_RATE_LIMIT_GLOBAL")}}
        app = create_app({"SECRET_KEY": "bench-secret-key-" + "x" * 40, "ISSUER": ISSUER, "DATABASE_URL": database_url,
                          "LOG_LEVEL": "WARNING", **limits})
        seen: list[str] = []
        rawsql.LISTENERS.append(seen.append)
        from sqlalchemy import event

        from authserver.extensions import db

        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
            event.listen(db.engine, "commit", lambda *a: seen.append("COMMIT"))
        resource_id, resource_secret = data["resource_auth"]
        basic = "Basic " + b64encode(f"{resource_id}:{resource_secret}".encode()).decode()
        chains = [refresh for _, refresh in data["pairs"][:8]]
        pairs = iter(data["pairs"][8:])
        counter = [0]

        def refresh_env():
            w = counter[0] % len(chains)
            return environ("/oauth/token", form({"grant_type": "refresh_token", "refresh_token": chains[w],
                                                 "client_id": data["client_id"]}), "application/x-www-form-urlencoded")

        def refresh_done(body):
            chains[counter[0] % len(chains)] = json.loads(body)["refresh_token"]

        registration = {"client_name": "flow-bench", "redirect_uris": [REDIRECT_URI],
                        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                        "token_endpoint_auth_method": "none"}

        def dcr_env():
            return environ("/oauth/register", json.dumps(registration).encode(), "application/json")

        def dcr_new_env():
            body = {**registration, "client_name": f"flow-bench {counter[0]}"}
            return environ("/oauth/register", json.dumps(body).encode(), "application/json")

        def introspect_env():
            return environ("/oauth/introspect", form({"token": next(pairs)[0]}), "application/x-www-form-urlencoded",
                           basic)

        repeated = [access for access, _ in data["pairs"][-8:]]  # introspect's own tokens come from the front

        def introspect_again_env():
            return environ("/oauth/introspect", form({"token": repeated[counter[0] % len(repeated)]}),
                           "application/x-www-form-urlencoded", basic)

        def mixed_env():
            return refresh_env() if counter[0] % MIXED_EVERY == 0 else introspect_again_env()

        def mixed_done(body):
            if counter[0] % MIXED_EVERY == 0:
                refresh_done(body)

        browser = SignedInFlow(app, resource=RESOURCE, scope=SCOPE) if "flow" in args.phases.split(",") else None
        phases = {"refresh": (refresh_env, refresh_done), "dcr": (dcr_env, None), "dcr-new": (dcr_new_env, None),
                  "introspect": (introspect_env, None), "introspect-again": (introspect_again_env, None),
                  "mixed": (mixed_env, mixed_done), "flow": (None, None)}
        for name in args.phases.split(","):
            make_env, done = phases[name]

            def run(count, profiler=None):
                cpu = 0.0
                for _ in range(count):
                    if make_env is None:  # the signed-in flow: three requests through a test client
                        started = time.process_time()
                        if profiler:
                            profiler.enable()
                        browser.once()
                        if profiler:
                            profiler.disable()
                        cpu += time.process_time() - started
                        continue
                    env = make_env()
                    started = time.process_time()
                    if profiler:
                        profiler.enable()
                    status, body = call(app, env)
                    if profiler:
                        profiler.disable()
                    cpu += time.process_time() - started
                    if not status.startswith("20"):
                        raise SystemExit(f"{name}: {status} {body[:300]!r}")
                    if done:
                        done(body)
                    counter[0] += 1
                return cpu

            run(200)
            if browser is not None:
                browser.step_cpu = dict.fromkeys(browser.STEPS, 0.0)
            seen.clear()
            backend_before = backend_cpu(app)
            cpu = run(args.n)
            backend = cpu_since(backend_before, backend_cpu(app))
            statements = [s for s in seen if s != "COMMIT"]
            commits = len(seen) - len(statements)
            print(f"{name:10s} python CPU {cpu / args.n * 1000:6.3f} ms/op   database CPU "
                  f"{backend / args.n * 1000:6.3f} ms/op   statements {len(statements) / args.n:4.2f}/op   "
                  f"commits {commits / args.n:4.2f}/op", flush=True)
            if make_env is None:
                print("           " + "   ".join(f"{step} {cpu / args.n * 1000:.3f} ms"
                                                 for step, cpu in browser.step_cpu.items()), flush=True)
            if args.profile:
                profiler = cProfile.Profile(time.process_time)
                run(args.n, profiler)
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                if args.profile_file:
                    stats.dump_stats(args.profile_file)
                stats.sort_stats("tottime").print_stats(args.profile)
                stats.sort_stats("cumulative").print_stats(args.profile)
                print(out.getvalue())
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
