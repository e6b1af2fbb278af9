"""The example's data sets and the commands that load them.

`python -m crm_mcp.seed bulk --hub 10000003 --contacts 100000` fills a hub for benchmarks;
`python -m crm_mcp.seed access --hub 10000002 --user 2 --level own --unassigned --hide deals.amount`
sets what one person (authserver's user id) may see. A data set is a dict: teams, owners
(ref, name, email, team, authserver user_id or None), records per type (an optional `ref`, an
`owner` ref, a `company` ref, and lists of refs of associated records of types loaded before),
and access rules (user_id, level, include unassigned, hidden properties; user_id 0 = everyone else)."""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from contextlib import closing

from .catalog import DEAL_STAGES, INDUSTRIES, LIFECYCLE_STAGES
from .data import CRM, LEVELS

# The demo hubs of `flask --app wsgi demo seed`. authserver's user 1 (demo@example.com on a fresh
# `make run`) holds the "Demo User" seat in both. Acme Sales lets everyone see every record;
# Globex Support shows each person only their own records and unassigned ones, without deal amounts.
DEMO_DATA: dict[int, dict] = {
    10000001: {  # Acme Sales
        "teams": ["East", "West"],
        "owners": [("demo", "Demo User", "demo@example.com", "East", 1),
                   ("dana", "Dana Scully", "dana@acme.example", "East", None),
                   ("fox", "Fox Mulder", "fox@acme.example", "West", None)],
        "companies": [
            {"ref": "acme", "name": "Acme Corporation", "domain": "acme.example", "industry": "Manufacturing",
             "city": "Springfield", "employees": 1200, "owner": "demo"},
            {"ref": "initech", "name": "Initech", "domain": "initech.example", "industry": "Software",
             "city": "Austin", "employees": 300, "owner": "fox"},
        ],
        "contacts": [
            {"ref": "ada", "firstname": "Ada", "lastname": "Lovelace", "email": "ada@acme.example", "jobtitle": "CTO",
             "lifecycle_stage": "customer", "company": "acme", "created_date": "2025-02-01", "owner": "demo"},
            {"ref": "grace", "firstname": "Grace", "lastname": "Hopper", "email": "grace@acme.example",
             "jobtitle": "Engineer", "lifecycle_stage": "lead", "company": "acme", "created_date": "2025-06-15",
             "owner": "dana"},
            {"ref": "peter", "firstname": "Peter", "lastname": "Gibbons", "email": "peter@initech.example",
             "jobtitle": "Programmer", "lifecycle_stage": "opportunity", "company": "initech",
             "created_date": "2026-01-10", "owner": "fox"},
        ],
        "deals": [
            {"name": "Acme rocket skates renewal", "stage": "closedwon", "amount": 120000, "company": "acme",
             "close_date": "2026-03-31", "owner": "demo", "contacts": ["ada"]},
            {"name": "Initech TPS reports", "stage": "negotiation", "amount": 45000, "company": "initech",
             "close_date": "2026-12-15", "owner": "fox", "contacts": ["peter"]},
        ],
        "tickets": [
            {"subject": "Rocket skates squeak", "status": "new", "priority": "high", "created_date": "2026-04-02",
             "owner": "dana", "contacts": ["ada"], "companies": ["acme"]},
            {"subject": "TPS cover sheet missing", "status": "waiting", "priority": "medium",
             "created_date": "2026-05-20", "contacts": ["peter"], "companies": ["initech"]},
        ],
        "access": [(0, "all", False, ())],
    },
    10000002: {  # Globex Support
        "teams": ["Support"],
        "owners": [("demo", "Demo User", "demo@example.com", "Support", 1),
                   ("marge", "Marge Bouvier", "marge@globex.example", "Support", None)],
        "companies": [
            {"ref": "globex", "name": "Globex Corporation", "domain": "globex.example", "industry": "Energy",
             "city": "Cypress Creek", "employees": 5000},
        ],
        "contacts": [
            {"ref": "hank", "firstname": "Hank", "lastname": "Scorpio", "email": "hank@globex.example",
             "jobtitle": "CEO", "lifecycle_stage": "customer", "company": "globex", "created_date": "2025-09-09",
             "owner": "demo"},
            {"ref": "homer", "firstname": "Homer", "lastname": "Simpson", "email": "homer@globex.example",
             "jobtitle": "Safety inspector", "lifecycle_stage": "customer", "company": "globex",
             "created_date": "2025-10-01", "owner": "marge"},
            {"ref": "lisa", "firstname": "Lisa", "lastname": "Simpson", "email": "lisa@globex.example",
             "jobtitle": "Analyst", "lifecycle_stage": "lead", "company": "globex", "created_date": "2026-02-14"},
        ],
        "deals": [
            {"name": "Globex support plan", "stage": "appointmentscheduled", "amount": 30000, "company": "globex",
             "close_date": "2026-09-30", "owner": "demo", "contacts": ["hank"]},
            {"name": "Globex reactor retrofit", "stage": "qualifiedtobuy", "amount": 250000, "company": "globex",
             "close_date": "2026-11-30", "owner": "marge", "contacts": ["homer"]},
        ],
        "tickets": [
            {"subject": "Doomsday device warranty", "status": "new", "priority": "urgent",
             "created_date": "2026-03-03", "owner": "demo", "contacts": ["hank"], "companies": ["globex"]},
            {"subject": "Reactor alarm keeps ringing", "status": "in_progress", "priority": "high",
             "created_date": "2026-03-04", "owner": "marge", "contacts": ["homer"], "companies": ["globex"]},
        ],
        "access": [(0, "own", True, ("deals.amount",))],
    },
}


def generic(hub_id: int) -> dict:
    """A small data set for any other hub, so that every hub has something to find."""
    return {
        "companies": [{"ref": "co", "name": f"Example Co {hub_id}", "domain": f"hub{hub_id}.example",
                       "industry": "Services", "city": "Metropolis", "employees": 10}],
        "contacts": [{"ref": "sam", "firstname": "Sam", "lastname": f"Sample-{hub_id}", "email": f"sam@hub{hub_id}.example",
                      "jobtitle": "Buyer", "lifecycle_stage": "lead", "company": "co", "created_date": "2026-01-01"}],
        "deals": [{"name": f"First deal of hub {hub_id}", "stage": "qualifiedtobuy", "amount": 1000, "company": "co",
                   "close_date": "2026-06-30", "contacts": ["sam"]}],
        "tickets": [{"subject": f"Welcome to hub {hub_id}", "status": "new", "priority": "low",
                     "created_date": "2026-01-02", "contacts": ["sam"]}],
    }


FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken", "Radia",
         "Linus", "Guido", "Hedy", "Tim", "Katherine", "Dennis", "Sophie", "Niklaus", "Leslie")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton", "Thompson",
        "Perlman", "Torvalds", "Rossum", "Lamarr", "Berners-Lee", "Johnson", "Ritchie", "Wilson", "Wirth", "Lamport")
TITLES = ("CEO", "CTO", "Engineer", "Buyer", "Analyst", "Manager", "Director", "Consultant")


def bulk(crm: CRM, hub_id: int, contacts: int, *, seed: int = 13) -> None:
    """Fill a hub with `contacts` contacts, a company per 100, a deal per 5 and a ticket per 10,
    owned by 50 owners in 5 teams (one record in ten unassigned); deterministic for a given seed."""
    rnd = random.Random(seed)
    with closing(sqlite3.connect(crm.path, timeout=30)) as conn, conn:
        if conn.execute("SELECT 1 FROM seeded_hubs WHERE hub_id = ?", (hub_id,)).fetchone():
            raise SystemExit(f"hub {hub_id} already has data in {crm.path}; pick another hub")
        teams = [conn.execute("INSERT INTO teams (hub_id, name) VALUES (?, ?)", (hub_id, f"Team {t}")).lastrowid
                 for t in range(5)]
        owners = [conn.execute("INSERT INTO owners (hub_id, name, email, team_id) VALUES (?, ?, ?, ?)",
                               (hub_id, f"Owner {o}", f"owner{o}@hub{hub_id}.example", teams[o % 5])).lastrowid
                  for o in range(50)]

        def owner():
            return None if rnd.random() < 0.1 else rnd.choice(owners)

        def day():
            return f"{rnd.randint(2024, 2026)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"

        n_companies = max(1, contacts // 100)
        conn.executemany("INSERT INTO companies (hub_id, owner_id, name, domain, industry, city, employees)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(hub_id, owner(), f"Company {i}", f"company{i}.example", rnd.choice(INDUSTRIES),
                           rnd.choice(("Austin", "Berlin", "Paris", "Osaka")), rnd.randint(1, 10000))
                          for i in range(n_companies)])
        first_company = conn.execute("SELECT min(id) FROM companies WHERE hub_id = ?", (hub_id,)).fetchone()[0]
        rows, links = [], []
        for i in range(contacts):
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            company = first_company + rnd.randrange(n_companies)
            rows.append((hub_id, owner(), first, last, f"{first}.{last}.{i}@example.com".lower(), rnd.choice(TITLES),
                         rnd.choice(LIFECYCLE_STAGES), company, day()))
        conn.executemany("INSERT INTO contacts (hub_id, owner_id, firstname, lastname, email, jobtitle,"
                         " lifecycle_stage, company_id, created_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        for contact_id, company_id in conn.execute("SELECT id, company_id FROM contacts WHERE hub_id = ?", (hub_id,)):
            links += [(hub_id, "contacts", contact_id, "companies", company_id),
                      (hub_id, "companies", company_id, "contacts", contact_id)]
        conn.executemany("INSERT INTO deals (hub_id, owner_id, name, stage, amount, company_id, close_date)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(hub_id, owner(), f"Deal {i}", rnd.choice(DEAL_STAGES), rnd.randint(1, 500) * 1000,
                           first_company + rnd.randrange(n_companies), day()) for i in range(contacts // 5)])
        for deal_id, company_id in conn.execute("SELECT id, company_id FROM deals WHERE hub_id = ?", (hub_id,)):
            links += [(hub_id, "deals", deal_id, "companies", company_id),
                      (hub_id, "companies", company_id, "deals", deal_id)]
        conn.executemany("INSERT INTO tickets (hub_id, owner_id, subject, status, priority, created_date)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         [(hub_id, owner(), f"Ticket {i}", rnd.choice(("new", "waiting", "in_progress", "closed")),
                           rnd.choice(("low", "medium", "high", "urgent")), day()) for i in range(contacts // 10)])
        conn.executemany("INSERT OR IGNORE INTO associations VALUES (?, ?, ?, ?, ?)", links)
        conn.execute("INSERT INTO seeded_hubs (hub_id) VALUES (?)", (hub_id,))
    with closing(sqlite3.connect(crm.path)) as conn:
        conn.execute("ANALYZE")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crm_mcp.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="crm_mcp.sqlite3", help="the example's data file (CRM_MCP_DATABASE)")
    commands = parser.add_subparsers(dest="command", required=True)
    fill = commands.add_parser("bulk", help="fill a new hub with generated records")
    fill.add_argument("--hub", type=int, required=True)
    fill.add_argument("--contacts", type=int, default=100_000)
    rule = commands.add_parser("access", help="set what one person may see in a hub")
    rule.add_argument("--hub", type=int, required=True)
    rule.add_argument("--user", type=int, required=True, help="authserver's user_id (0: everyone else)")
    rule.add_argument("--level", choices=LEVELS, required=True)
    rule.add_argument("--unassigned", action="store_true", help="with team/own: also records nobody owns")
    rule.add_argument("--hide", action="append", default=[], help="a hidden property, e.g. deals.amount")
    rule.add_argument("--seat", help="the email of the owner this person is")
    args = parser.parse_args(argv)
    crm = CRM(args.database)
    try:
        if args.command == "bulk":
            started = time.perf_counter()
            bulk(crm, args.hub, args.contacts)
            print(f"Seeded hub {args.hub} with {args.contacts} contacts in {time.perf_counter() - started:.1f} s.")
        else:
            if args.seat:
                crm.assign_seat(args.hub, args.user, args.seat)
            crm.set_access(args.hub, args.user, args.level, unassigned=args.unassigned, hidden=tuple(args.hide))
            print(f"User {args.user} in hub {args.hub}: {args.level} records"
                  + (" and unassigned ones" if args.unassigned else "") + (f", hidden: {' '.join(args.hide)}" if args.hide else ""))
    except ValueError as exc:
        sys.exit(f"crm_mcp.seed: {exc}")


if __name__ == "__main__":
    main()
