"""Insert N token rows (and the grants they hang from) into a benchmark database, fast.

    .venv/bin/python bench/seed_tokens.py 1000000                 # into the make bench-serve database
    .venv/bin/python bench/seed_tokens.py 1000000 --expired 500000 --database-url postgresql://...

For the data-growth measurements (docs/benchmarks.md): the server keeps answering while the table
grows, and `flask tokens purge-expired` is timed on the expired part. The rows belong to the demo
user in the demo hub (run `make bench-serve` first: it seeds them), one grant per 100 tokens, like
many users' connections, under a client of their own; --expired of them have both their access and
refresh tokens expired an hour ago, the rest live for 30 days. The token values are never known
(their hashes are random), so these rows only make the table and its indexes large. PostgreSQL only:
the rows are generated inside the server (INSERT ... SELECT generate_series), in committed chunks.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

CHUNK = 200_000
TOKENS_PER_GRANT = 100
SCOPE = "crm.objects.contacts.read"

GRANTS = text("""
    INSERT INTO grants (user_id, hub_id, client_pk, resource_id, scope, redirect_uri, created_at)
    SELECT :user_id, :hub_id, :client_pk, :resource_id, :scope, 'https://seeded.bench.example/cb', now()
    FROM generate_series(1, :count)
    RETURNING id
""")
# Token i of the chunk hangs from grant i / 100 of the chunk's grants; hashes are random 64-hex.
TOKENS = text("""
    INSERT INTO tokens (grant_id, client_pk, scope, access_token_hash, refresh_token_hash, issued_at,
                        access_expires_at, refresh_expires_at)
    SELECT (:grant_ids)[1 + (i - 1) / :per_grant], :client_pk, :scope,
           encode(sha256(convert_to(:salt || 'a' || i || random(), 'UTF8')), 'hex'),
           encode(sha256(convert_to(:salt || 'r' || i || random(), 'UTF8')), 'hex'),
           now() AT TIME ZONE 'utc' - interval '2 hours',
           now() AT TIME ZONE 'utc' + CASE WHEN i <= :expired THEN interval '-1 hour' ELSE interval '1 hour' END,
           now() AT TIME ZONE 'utc' + CASE WHEN i <= :expired THEN interval '-1 hour' ELSE interval '30 days' END
    FROM generate_series(1, :count) AS i
""")


def demo_owner(client_id: str, client_name: str):
    """(user, hub, resource server, client): the demo user, the demo hub and resource server of
    `make bench-serve`, and a new public client (added to the session) that tokens can hang from."""
    from authserver import accounts, resources
    from authserver.cli import DEMO_EMAIL, DEMO_HUBS, DEMO_RESOURCE_URI
    from authserver.extensions import db
    from authserver.models import Client

    user, hub = accounts.get_user_by_email(DEMO_EMAIL), accounts.get_hub(DEMO_HUBS[0][0])
    resource = resources.get_by_uri(DEMO_RESOURCE_URI)
    if None in (user, hub, resource):
        raise SystemExit("no demo data in this database: run `make bench-serve` (or `flask demo seed`) first")
    client = Client(client_id=client_id, registration="cli", client_metadata={
        "client_name": client_name, "redirect_uris": ["https://seeded.bench.example/cb"],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"]})
    db.session.add(client)
    db.session.flush()
    return user, hub, resource, client


def seed_tokens(count: int, expired: int) -> None:
    from authserver import create_app
    from authserver.extensions import db

    # A chunk of 200,000 rows can outlast the server's statement timeout (DATABASE_STATEMENT_TIMEOUT_MS,
    # 5 s by default) on a busy machine: a bulk load is the long job that setting says to lift.
    app = create_app({"TESTING": True, "SECRET_KEY": secrets.token_urlsafe(48), "DATABASE_STATEMENT_TIMEOUT_MS": 0})
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            raise SystemExit("bench/seed_tokens.py seeds PostgreSQL databases only")
        salt = secrets.token_hex(8)
        user, hub, resource, client = demo_owner(f"seeded-{salt}", "Seeded tokens")
        db.session.commit()
        started, done = time.monotonic(), 0
        while done < count:
            n = min(CHUNK, count - done)
            grant_ids = db.session.scalars(GRANTS, {
                "user_id": user.id, "hub_id": hub.id, "client_pk": client.id, "resource_id": resource.id,
                "scope": SCOPE, "count": -(-n // TOKENS_PER_GRANT)}).all()
            db.session.execute(TOKENS, {
                "grant_ids": grant_ids, "per_grant": TOKENS_PER_GRANT, "client_pk": client.id, "scope": SCOPE,
                "salt": f"{salt}-{done}-", "expired": max(0, min(n, expired - done)), "count": n})
            db.session.commit()
            done += n
            print(f"  {done:,} / {count:,} token rows", flush=True)
        # Fresh statistics, so the planner sees the table as it now is.
        db.session.execute(text("ANALYZE tokens"))
        db.session.execute(text("ANALYZE grants"))
        db.session.commit()
        total = db.session.scalar(text("SELECT count(*) FROM tokens"))
        print(f"Inserted {count:,} token rows ({min(expired, count):,} expired) in {time.monotonic() - started:.1f} s; "
              f"the tokens table now holds {total:,}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int, help="token rows to insert")
    parser.add_argument("--expired", type=int, default=0, help="how many of them are already expired")
    parser.add_argument("--database-url", default=os.environ.get(
        "AUTHSERVER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/authserver_bench"))
    args = parser.parse_args()
    os.environ["AUTHSERVER_DATABASE_URL"] = args.database_url
    seed_tokens(args.count, args.expired)


if __name__ == "__main__":
    main()
