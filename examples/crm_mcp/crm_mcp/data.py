"""The CRM data set: contacts, companies, deals and notes in one SQLite file, every row in one hub.

Every query takes the hub id and filters on it; nothing here can reach across hubs. Hubs are
seeded on first use (the demo hubs with named records, any other hub with generic ones)."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timezone

OBJECT_TYPES = ("contacts", "companies", "deals")

#: Searchable properties per object type (also the only column names ever put into SQL).
PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email", "jobtitle", "lifecycle_stage", "company_id"),
    "companies": ("name", "domain", "industry", "city"),
    "deals": ("name", "stage", "amount", "company_id", "close_date"),
}
#: The properties a free-text `query` matches.
TEXT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email"),
    "companies": ("name", "domain"),
    "deals": ("name",),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS seeded_hubs (hub_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS companies (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, name TEXT, domain TEXT, industry TEXT, city TEXT);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, firstname TEXT, lastname TEXT, email TEXT,
    jobtitle TEXT, lifecycle_stage TEXT, company_id INTEGER);
CREATE TABLE IF NOT EXISTS deals (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, name TEXT, stage TEXT, amount INTEGER,
    company_id INTEGER, close_date TEXT);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, object_type TEXT, object_id INTEGER, body TEXT,
    created_by TEXT, client_id TEXT, created_at TEXT);
CREATE INDEX IF NOT EXISTS ix_companies_hub ON companies (hub_id);
CREATE INDEX IF NOT EXISTS ix_contacts_hub ON contacts (hub_id);
CREATE INDEX IF NOT EXISTS ix_deals_hub ON deals (hub_id);
CREATE INDEX IF NOT EXISTS ix_notes_hub ON notes (hub_id, object_type, object_id);
"""

# The demo hubs of `flask --app wsgi demo seed`, each with its own recognisable records.
DEMO_DATA: dict[int, dict[str, list[tuple]]] = {
    10000001: {  # Acme Sales
        "companies": [("Acme Corporation", "acme.example", "Manufacturing", "Springfield"),
                      ("Initech", "initech.example", "Software", "Austin")],
        "contacts": [("Ada", "Lovelace", "ada@acme.example", "CTO", "customer", 0),
                     ("Grace", "Hopper", "grace@acme.example", "Engineer", "lead", 0),
                     ("Peter", "Gibbons", "peter@initech.example", "Programmer", "opportunity", 1)],
        "deals": [("Acme rocket skates renewal", "closedwon", 120000, 0, "2026-03-31"),
                  ("Initech TPS reports", "negotiation", 45000, 1, "2026-12-15")],
    },
    10000002: {  # Globex Support
        "companies": [("Globex Corporation", "globex.example", "Energy", "Cypress Creek")],
        "contacts": [("Hank", "Scorpio", "hank@globex.example", "CEO", "customer", 0),
                     ("Homer", "Simpson", "homer@globex.example", "Safety inspector", "customer", 0)],
        "deals": [("Globex support plan", "appointmentscheduled", 30000, 0, "2026-09-30")],
    },
}


def _generic(hub_id: int) -> dict[str, list[tuple]]:
    return {
        "companies": [(f"Example Co {hub_id}", f"hub{hub_id}.example", "Services", "Metropolis")],
        "contacts": [("Sam", f"Sample-{hub_id}", f"sam@hub{hub_id}.example", "Buyer", "lead", 0)],
        "deals": [(f"First deal of hub {hub_id}", "qualifiedtobuy", 1000, 0, "2026-06-30")],
    }


class CRM:
    """The data store. One short-lived connection per call keeps it safe across threads."""

    def __init__(self, path: str):
        self.path = path
        self._seed_lock = threading.Lock()
        with closing(self._connect()) as conn, conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def ensure_hub(self, hub_id: int) -> None:
        with self._seed_lock, closing(self._connect()) as conn, conn:
            if conn.execute("SELECT 1 FROM seeded_hubs WHERE hub_id = ?", (hub_id,)).fetchone():
                return
            data = DEMO_DATA.get(hub_id) or _generic(hub_id)
            company_ids = []
            for name, domain, industry, city in data["companies"]:
                cur = conn.execute(
                    "INSERT INTO companies (hub_id, name, domain, industry, city) VALUES (?, ?, ?, ?, ?)",
                    (hub_id, name, domain, industry, city),
                )
                company_ids.append(cur.lastrowid)
            for first, last, email, title, stage, company in data["contacts"]:
                conn.execute(
                    "INSERT INTO contacts (hub_id, firstname, lastname, email, jobtitle, lifecycle_stage, company_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (hub_id, first, last, email, title, stage, company_ids[company]),
                )
            for name, stage, amount, company, close in data["deals"]:
                conn.execute(
                    "INSERT INTO deals (hub_id, name, stage, amount, company_id, close_date) VALUES (?, ?, ?, ?, ?, ?)",
                    (hub_id, name, stage, amount, company_ids[company], close),
                )
            conn.execute("INSERT INTO seeded_hubs (hub_id) VALUES (?)", (hub_id,))

    def search(self, hub_id: int, object_type: str, query: str | None, filters: dict[str, str], limit: int) -> list[dict]:
        self.ensure_hub(hub_id)
        sql = [f"SELECT * FROM {object_type} WHERE hub_id = ?"]  # object_type is from OBJECT_TYPES
        args: list = [hub_id]
        if query:
            like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql.append("AND (" + " OR ".join(f"{p} LIKE ? ESCAPE '\\'" for p in TEXT_PROPERTIES[object_type]) + ")")
            args.extend([like] * len(TEXT_PROPERTIES[object_type]))
        for prop, value in filters.items():  # names already checked against PROPERTIES
            sql.append(f"AND CAST({prop} AS TEXT) = ? COLLATE NOCASE")
            args.append(str(value))
        sql.append("ORDER BY id LIMIT ?")
        args.append(limit)
        with closing(self._connect()) as conn:
            return [self._row(object_type, r) for r in conn.execute(" ".join(sql), args)]

    def get(self, hub_id: int, object_type: str, object_id: int) -> dict | None:
        self.ensure_hub(hub_id)
        with closing(self._connect()) as conn:
            row = conn.execute(f"SELECT * FROM {object_type} WHERE hub_id = ? AND id = ?", (hub_id, object_id)).fetchone()
            if row is None:
                return None
            result = self._row(object_type, row)
            notes = conn.execute(
                "SELECT id, body, created_at FROM notes WHERE hub_id = ? AND object_type = ? AND object_id = ? ORDER BY id",
                (hub_id, object_type, object_id),
            )
            result["notes"] = [dict(n) for n in notes]
            return result

    def add_note(self, hub_id: int, object_type: str, object_id: int, body: str, created_by: str, client_id: str) -> dict | None:
        self.ensure_hub(hub_id)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with closing(self._connect()) as conn, conn:
            exists = conn.execute(f"SELECT 1 FROM {object_type} WHERE hub_id = ? AND id = ?", (hub_id, object_id)).fetchone()
            if not exists:
                return None
            cur = conn.execute(
                "INSERT INTO notes (hub_id, object_type, object_id, body, created_by, client_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (hub_id, object_type, object_id, body, created_by, client_id, now),
            )
            return {"id": cur.lastrowid, "object_type": object_type, "object_id": object_id, "body": body,
                    "created_at": now}

    @staticmethod
    def _row(object_type: str, row: sqlite3.Row) -> dict:
        values = dict(row)
        values.pop("hub_id", None)
        return {"id": values.pop("id"), "object_type": object_type, "properties": values}
