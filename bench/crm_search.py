"""How fast the example connector's `search` answers in a hub of 100,000 contacts.

    .venv/bin/python bench/crm_search.py                      # a fresh file in a temporary directory
    .venv/bin/python bench/crm_search.py --contacts 100000 --database crm_bench.sqlite3 --repeat 50

Seeds the hub once (`python -m crm_mcp.seed bulk`), then runs each query of QUERIES through the
query language and the store (as the `search` tool does, without the HTTP and MCP layers) as a
person who sees every record and as one who sees only their own and unassigned ones, and prints
the median and 95th percentile in milliseconds. Numbers, not a pass/fail test: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "crm_mcp"))

from crm_mcp import dsl
from crm_mcp.data import CRM
from crm_mcp.seed import bulk

HUB = 10000003
QUERIES = [
    "lifecycle_stage:customer",
    "email:nobody@example.com",  # an index lookup that finds nothing
    "lastname:Hopper limit:50",
    "created_date:gte:2026-06-01 sort:created_date:desc",
    "lifecycle_stage:in:lead,opportunity owner_id:7",
    "associated_companies:17",
    'associated_companies:in:"company 3","company 4"',
    "object_type:deals amount:gt:400000 close_date:lte:2026-12-31",
    "object_type:deals stage:negotiation sort:amount:desc limit:20",
    "object_type:tickets status:new priority:urgent",
    "grace",  # free text: a scan, for comparison
    '"ada lovelace" offset:100',
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database", help="reuse this file (seeded on the first run)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    path = args.database or str(Path(tempfile.mkdtemp()) / "crm_bench.sqlite3")
    crm = CRM(path)
    started = time.perf_counter()
    try:
        bulk(crm, HUB, args.contacts)
        print(f"seeded {args.contacts} contacts into {path} in {time.perf_counter() - started:.1f} s")
    except SystemExit:
        print(f"reusing hub {HUB} in {path}")
    everyone = crm.viewer(HUB, None)
    crm.set_access(HUB, 990001, "own", unassigned=True)
    crm.assign_seat(HUB, 990001, f"owner7@hub{HUB}.example")
    own = crm.viewer(HUB, 990001)
    print(f"{'query':58} {'viewer':6} {'rows':>4} {'median ms':>9} {'p95 ms':>7}")
    for query in QUERIES:
        for name, viewer in (("all", everyone), ("own", own)):
            parsed = dsl.parse(query, viewer.hidden)
            timings = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                rows = crm.search(viewer, parsed)
                timings.append((time.perf_counter() - t0) * 1000)
            timings.sort()
            p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
            print(f"{query[:58]:58} {name:6} {len(rows):>4} {statistics.median(timings):>9.2f} {p95:>7.2f}")


if __name__ == "__main__":
    main()
