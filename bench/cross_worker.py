"""How long a revocation made elsewhere takes to reach every worker's introspection answers.

    make bench-serve                                   # terminal 1: prints the resource server's secret
    .venv/bin/python bench/cross_worker.py http://127.0.0.1:5200 --introspect-auth rs_demo:SECRET

It gives the demo user a token of its own in the bench database (a grant and a token row, as
bench/seed_tokens.py makes them, with a known value), introspects it on fresh connections and on
8 open keep-alive ones (so that every worker has it cached: authserver/changes.py), revokes it with
an UPDATE on a connection of its own (as another worker, the CLI or an operator would), then fires
the open connections at once and keeps introspecting for 2 seconds. It prints how many answers
were still active, and how long after the commit the last of them started. Numbers, not
assertions; PostgreSQL only (the bench database of make bench-serve).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROUNDS, OPEN_CONNECTIONS, SECONDS = 5, 8, 2.0


def make_token(database_url: str) -> tuple[str, str]:
    """A live access token for the demo user in the demo hub: (its value, its libpq URL)."""
    os.environ["AUTHSERVER_DATABASE_URL"] = database_url
    from sqlalchemy import text

    from authserver import create_app
    from authserver.extensions import db
    from authserver.secrets import sha256_hex
    from seed_tokens import demo_owner

    app = create_app({"TESTING": True, "SECRET_KEY": secrets.token_urlsafe(48)})
    with app.app_context():
        user, hub, resource, client = demo_owner(f"cross-worker-{secrets.token_hex(8)}", "Cross-worker check")
        grant_id = db.session.scalar(text(
            "INSERT INTO grants (user_id, hub_id, client_pk, resource_id, scope, redirect_uri, created_at) "
            "VALUES (:user_id, :hub_id, :client_pk, :resource_id, 'crm.objects.contacts.read', "
            "'https://seeded.bench.example/cb', now()) RETURNING id"),
            {"user_id": user.id, "hub_id": hub.id, "client_pk": client.id, "resource_id": resource.id})
        token = "asat_" + secrets.token_urlsafe(32)
        db.session.execute(text(
            "INSERT INTO tokens (grant_id, client_pk, scope, access_token_hash, issued_at, access_expires_at) "
            "VALUES (:grant_id, :client_pk, 'crm.objects.contacts.read', :hash, now() AT TIME ZONE 'utc', "
            "now() AT TIME ZONE 'utc' + interval '1 hour')"),
            {"grant_id": grant_id, "client_pk": client.id, "hash": sha256_hex(token)})
        db.session.commit()
        libpq = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return token, libpq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the server (loopback), e.g. http://127.0.0.1:5200")
    parser.add_argument("--introspect-auth", required=True, metavar="ID:SECRET")
    parser.add_argument("--database-url", default=os.environ.get(
        "AUTHSERVER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/authserver_bench"))
    args = parser.parse_args()
    import psycopg

    from authserver.secrets import sha256_hex

    target = urlsplit(args.url)
    auth = "Basic " + base64.b64encode(args.introspect_auth.removeprefix("basic:").encode()).decode()

    def active(conn: http.client.HTTPConnection, token: str) -> bool:
        conn.request("POST", "/oauth/introspect", urlencode({"token": token}),
                     {"Content-Type": "application/x-www-form-urlencoded", "Authorization": auth})
        return b'"active":true' in conn.getresponse().read().replace(b" ", b"")

    def fresh(token: str) -> bool:
        conn = http.client.HTTPConnection(target.hostname, target.port)
        try:
            return active(conn, token)
        finally:
            conn.close()

    for _ in range(ROUNDS):
        token, libpq = make_token(args.database_url)
        if not all(fresh(token) for _ in range(40)):
            raise SystemExit("the token is not active before its revocation: check --introspect-auth")
        kept = [http.client.HTTPConnection(target.hostname, target.port) for _ in range(OPEN_CONNECTIONS)]
        if not all(active(conn, token) for conn in kept):
            raise SystemExit("the token is not active before its revocation")
        with psycopg.connect(libpq, autocommit=True) as db:
            db.execute("UPDATE tokens SET access_revoked_at = now() AT TIME ZONE 'utc' WHERE access_token_hash = %s",
                       (sha256_hex(token),))
        committed = time.perf_counter()
        answers = []
        for conn in kept:
            started = time.perf_counter() - committed
            answers.append((started, active(conn, token)))
        while time.perf_counter() - committed < SECONDS:
            started = time.perf_counter() - committed
            answers.append((started, fresh(token)))
        for conn in kept:
            conn.close()
        stale = [started for started, still in answers if still]
        print(f"{len(answers):,} introspections in {SECONDS:.0f} s after the revocation committed elsewhere; "
              f"still active: {len(stale)}" + (f", the last started {stale[-1] * 1000:.2f} ms after" if stale else ""))


if __name__ == "__main__":
    main()
