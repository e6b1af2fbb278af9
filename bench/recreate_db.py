"""Drop and recreate a PostgreSQL benchmark database: `python bench/recreate_db.py URL`.

Used by `make bench-serve` so that every benchmark starts from an empty schema. The database name
must contain "bench": this drops whatever it names, so a mistyped production URL is refused.
"""

from __future__ import annotations

import sys

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


def recreate(url: str) -> None:
    """Drop (closing its connections) and create the database the URL names."""
    target = make_url(url)
    if not target.get_backend_name().startswith("postgresql") or "bench" not in (target.database or ""):
        raise SystemExit(f"refusing to drop {target.render_as_string()}: a PostgreSQL database whose name "
                         "contains 'bench' is expected")
    # Connect to the maintenance database of the same server to drop and create the target.
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))
    print(f"Recreated the empty database {target.database!r}.")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    recreate(sys.argv[1])
