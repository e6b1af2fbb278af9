"""The CRM data set: contacts, companies, deals, tickets and notes in one SQLite file, every row in
one hub, plus who may see what (owners, teams, each person's record access and hidden properties).

Every read takes a Viewer (hub, person, access) and filters on it in SQL, so a record the person
may not see is never returned, counted or paged over, and nothing here can reach across hubs.
Hubs are seeded on first use (the demo hubs with named records, any other hub with generic ones)."""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime

from . import dsl
from .catalog import (
    ASSOCIATIONS,
    NAME_FIELDS,
    OBJECT_TYPES,
    PROPERTIES,
    TEXT_FIELDS,
    title,
)

LEVELS = ("all", "team", "own")
#: Records may name (associate with) records of the types loaded before them.
LOAD_ORDER = ("companies", "contacts", "deals", "tickets")

SCHEMA = """
CREATE TABLE IF NOT EXISTS seeded_hubs (hub_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS teams (id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owners (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, name TEXT NOT NULL, email TEXT, team_id INTEGER,
    user_id INTEGER);  -- authserver's user_id of the person holding this seat, if any
CREATE UNIQUE INDEX IF NOT EXISTS ux_owners_user ON owners (hub_id, user_id);
-- Record access per (hub, authserver user); user_id 0 is the hub's rule for everyone else.
CREATE TABLE IF NOT EXISTS access (
    hub_id INTEGER NOT NULL, user_id INTEGER NOT NULL, level TEXT NOT NULL, unassigned INTEGER NOT NULL,
    hidden TEXT NOT NULL DEFAULT '', PRIMARY KEY (hub_id, user_id));
CREATE TABLE IF NOT EXISTS companies (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, owner_id INTEGER, name TEXT, domain TEXT, industry TEXT,
    city TEXT, employees INTEGER);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, owner_id INTEGER, firstname TEXT, lastname TEXT, email TEXT,
    jobtitle TEXT, lifecycle_stage TEXT, company_id INTEGER, created_date TEXT);
CREATE TABLE IF NOT EXISTS deals (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, owner_id INTEGER, name TEXT, stage TEXT, amount INTEGER,
    company_id INTEGER, close_date TEXT);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, owner_id INTEGER, subject TEXT, status TEXT, priority TEXT,
    created_date TEXT);
CREATE TABLE IF NOT EXISTS associations (
    hub_id INTEGER NOT NULL, from_type TEXT NOT NULL, from_id INTEGER NOT NULL, to_type TEXT NOT NULL,
    to_id INTEGER NOT NULL, PRIMARY KEY (hub_id, from_type, from_id, to_type, to_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_associations_to ON associations (hub_id, to_type, to_id, from_type, from_id);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY, hub_id INTEGER NOT NULL, object_type TEXT, object_id INTEGER, body TEXT,
    created_by TEXT, client_id TEXT, created_at TEXT);
CREATE INDEX IF NOT EXISTS ix_notes_hub ON notes (hub_id, object_type, object_id);
""" + "".join(
    # The filters a hub of 100,000 records answers from an index (bench/crm_search.py measures them).
    f"CREATE INDEX IF NOT EXISTS ix_{table}_{'_'.join(c.split()[0] for c in cols)} ON {table} (hub_id, {', '.join(cols)});\n"
    for table, cols in [
        ("contacts", ["owner_id"]), ("contacts", ["email COLLATE NOCASE"]), ("contacts", ["lastname COLLATE NOCASE"]),
        ("contacts", ["lifecycle_stage"]), ("contacts", ["created_date"]), ("contacts", ["company_id"]),
        ("companies", ["owner_id"]), ("companies", ["name COLLATE NOCASE"]), ("companies", ["domain COLLATE NOCASE"]),
        ("companies", ["industry"]),
        ("deals", ["owner_id"]), ("deals", ["stage"]), ("deals", ["amount"]), ("deals", ["close_date"]),
        ("deals", ["company_id"]),
        ("tickets", ["owner_id"]), ("tickets", ["status"]), ("tickets", ["priority"]),
    ]
)


@dataclass(frozen=True)
class Viewer:
    """Who is reading, and what the CRM lets them see in this hub."""

    hub_id: int
    user_id: int | None
    level: str = "all"  # all | team | own
    owner_ids: tuple[int, ...] = ()  # the seats whose records are theirs (own) or their team's (team)
    seat: int | None = None  # their own seat, for `owner_id:me`
    unassigned: bool = False  # with team/own: also records that nobody owns
    hidden: frozenset[str] = frozenset()  # "deals.amount"

    def visible_properties(self, object_type: str) -> list[str]:
        return [p for p in PROPERTIES[object_type] if f"{object_type}.{p}" not in self.hidden]

    def clause(self, table: str) -> tuple[str, list]:
        """SQL that keeps the rows of `table` this person may see (in their hub)."""
        sql, args = f"{table}.hub_id = ?", [self.hub_id]
        if self.level == "all":
            return sql, args
        parts = []
        if self.owner_ids:
            parts.append(f"{table}.owner_id IN ({', '.join('?' * len(self.owner_ids))})")
            args.extend(self.owner_ids)
        if self.unassigned:
            parts.append(f"{table}.owner_id IS NULL")
        return f"{sql} AND ({' OR '.join(parts) or '0'})", args


def _has_token(value, token) -> bool:
    """contains_token: the value has this word (case-insensitively), e.g. "Acme rocket skates" has "rocket"."""
    if value is None or token is None:
        return False
    text, token = str(value).lower(), str(token).lower()
    return token in re.findall(r"\w+", text) or token in text.split()


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class CRM:
    """The data store. One short-lived connection per call keeps it safe across threads."""

    def __init__(self, path: str):
        self.path = path
        self._seed_lock = threading.Lock()
        self._seeded: set[int] = set()
        with closing(self._connect()) as conn, conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.create_function("has_token", 2, _has_token, deterministic=True)
        return conn

    # --- who sees what ---------------------------------------------------------------------------
    def viewer(self, hub_id: int, user_id: int | None) -> Viewer:
        """The person's access in the hub: their own rule, else the hub's rule, else everything."""
        self.ensure_hub(hub_id)
        with closing(self._connect()) as conn:
            rule = conn.execute(
                "SELECT level, unassigned, hidden FROM access WHERE hub_id = ? AND user_id IN (?, 0)"
                " ORDER BY user_id DESC LIMIT 1", (hub_id, user_id or 0)).fetchone()
            seat = conn.execute("SELECT id, team_id FROM owners WHERE hub_id = ? AND user_id = ?",
                                (hub_id, user_id)).fetchone() if user_id is not None else None
            if rule is None:
                return Viewer(hub_id, user_id, seat=seat["id"] if seat else None)
            owner_ids: tuple[int, ...] = ()
            if seat is not None and rule["level"] == "team" and seat["team_id"] is not None:
                owner_ids = tuple(r[0] for r in conn.execute(
                    "SELECT id FROM owners WHERE hub_id = ? AND team_id = ?", (hub_id, seat["team_id"])))
            elif seat is not None:
                owner_ids = (seat["id"],)
        return Viewer(hub_id, user_id, rule["level"], owner_ids, seat["id"] if seat else None,
                      bool(rule["unassigned"]), frozenset(rule["hidden"].split()))

    def set_access(self, hub_id: int, user_id: int, level: str, *, unassigned: bool = False,
                   hidden: tuple[str, ...] = ()) -> None:
        """Set a person's record access in a hub (user_id 0: everyone without a rule of their own)."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        unknown = [h for h in hidden if h.partition(".")[0] not in OBJECT_TYPES
                   or h.partition(".")[2] not in PROPERTIES[h.partition(".")[0]]]
        if unknown:
            raise ValueError(f"unknown properties: {', '.join(unknown)} (write them as type.property)")
        self.ensure_hub(hub_id)
        with closing(self._connect()) as conn, conn:
            conn.execute("INSERT OR REPLACE INTO access (hub_id, user_id, level, unassigned, hidden) VALUES (?, ?, ?, ?, ?)",
                         (hub_id, user_id, level, int(unassigned), " ".join(hidden)))

    def assign_seat(self, hub_id: int, user_id: int, owner_email: str) -> int:
        """Make authserver's user `user_id` the person behind the owner with this email."""
        self.ensure_hub(hub_id)
        with closing(self._connect()) as conn, conn:
            row = conn.execute("SELECT id FROM owners WHERE hub_id = ? AND email = ?", (hub_id, owner_email)).fetchone()
            if row is None:
                raise ValueError(f"no owner {owner_email} in hub {hub_id}")
            conn.execute("UPDATE owners SET user_id = NULL WHERE hub_id = ? AND user_id = ?", (hub_id, user_id))
            conn.execute("UPDATE owners SET user_id = ? WHERE id = ?", (user_id, row["id"]))
            return row["id"]

    # --- seeding ---------------------------------------------------------------------------------
    def ensure_hub(self, hub_id: int) -> None:
        """Seed the hub on first use; remembered, since every tool call asks."""
        if hub_id in self._seeded:
            return
        from .seed import DEMO_DATA, generic  # the data sets, kept apart from the store

        with self._seed_lock, closing(self._connect()) as conn, conn:
            if not conn.execute("SELECT 1 FROM seeded_hubs WHERE hub_id = ?", (hub_id,)).fetchone():
                load(conn, hub_id, DEMO_DATA.get(hub_id) or generic(hub_id))
        self._seeded.add(hub_id)

    # --- reads -----------------------------------------------------------------------------------
    def search(self, viewer: Viewer, query: dsl.Query) -> list[dict]:
        """The records of one page of a parsed query, among those the person may see."""
        self.ensure_hub(viewer.hub_id)
        table = query.object_type  # from OBJECT_TYPES, checked by the parser
        where, args = viewer.clause(table)
        sql = [f"SELECT {table}.* FROM {table} WHERE {where}"]
        for condition in query.conditions:
            part, values = _condition_sql(table, condition, viewer)
            sql.append("AND " + part)
            args.extend(values)
        fields = [f for f in TEXT_FIELDS[table] if f"{table}.{f}" not in viewer.hidden]
        if table == "contacts" and {"firstname", "lastname"} <= set(fields):
            fields.append("firstname || ' ' || lastname")
        for text in query.text:
            sql.append("AND (" + " OR ".join(f"{f} LIKE ? ESCAPE '\\'" for f in fields) + ")" if fields else "AND 0")
            args.extend([_like(text)] * len(fields))
        for association in query.associations:
            part, values = _association_sql(table, association, viewer)
            sql.append("AND " + part)
            args.extend(values)
        prop, direction = query.sort or ("id", "asc")
        order = f"{prop} {direction.upper()}" + (", id" if prop != "id" else "")
        sql.append(f"ORDER BY {order} LIMIT ? OFFSET ?")
        args.extend([query.limit, query.offset])
        with closing(self._connect()) as conn:
            return [self._row(viewer, table, r) for r in conn.execute(" ".join(sql), args)]

    def get(self, viewer: Viewer, object_type: str, object_id: int, *, notes: bool = False) -> dict | None:
        """One record, or None when it does not exist in the hub or the person may not see it."""
        self.ensure_hub(viewer.hub_id)
        where, args = viewer.clause(object_type)
        with closing(self._connect()) as conn:
            row = conn.execute(f"SELECT * FROM {object_type} WHERE {where} AND id = ?", [*args, object_id]).fetchone()
            if row is None:
                return None
            result = self._row(viewer, object_type, row)
            if notes:
                result["notes"] = [dict(n) for n in conn.execute(
                    "SELECT id, body, created_at FROM notes WHERE hub_id = ? AND object_type = ? AND object_id = ?"
                    " ORDER BY id", (viewer.hub_id, object_type, object_id))]
            return result

    def associations(self, viewer: Viewer, object_type: str, object_id: int, to_type: str, limit: int = 100) -> list[dict] | None:
        """The visible records of `to_type` associated with a visible record; None if it isn't one."""
        if self.get(viewer, object_type, object_id) is None:
            return None
        where, args = viewer.clause(to_type)
        sql = (f"SELECT {to_type}.* FROM associations a JOIN {to_type} ON {to_type}.id = a.to_id "
               f"WHERE a.hub_id = ? AND a.from_type = ? AND a.from_id = ? AND a.to_type = ? AND {where} "
               f"ORDER BY {to_type}.id LIMIT ?")
        with closing(self._connect()) as conn:
            rows = conn.execute(sql, [viewer.hub_id, object_type, object_id, to_type, *args, limit])
            return [self._row(viewer, to_type, r) for r in rows]

    def add_note(self, viewer: Viewer, object_type: str, object_id: int, body: str, created_by: str,
                 client_id: str) -> dict | None:
        if self.get(viewer, object_type, object_id) is None:
            return None
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with closing(self._connect()) as conn, conn:
            cur = conn.execute(
                "INSERT INTO notes (hub_id, object_type, object_id, body, created_by, client_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (viewer.hub_id, object_type, object_id, body, created_by, client_id, now),
            )
            return {"id": cur.lastrowid, "object_type": object_type, "object_id": object_id, "body": body,
                    "created_at": now}

    @staticmethod
    def _row(viewer: Viewer, object_type: str, row: sqlite3.Row) -> dict:
        properties = {p: row[p] for p in viewer.visible_properties(object_type)}
        return {"id": row["id"], "object_type": object_type, "title": title(object_type, properties),
                "properties": properties}


_COMPARE = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _condition_sql(table: str, condition: dsl.Condition, viewer: Viewer) -> tuple[str, list]:
    column = f"{table}.{condition.prop}"  # a name from PROPERTIES, checked by the parser
    prop = PROPERTIES[table][condition.prop]
    values = [(viewer.seat if viewer.seat is not None else -1) if v == "me" else v for v in condition.values]
    nocase = " COLLATE NOCASE" if prop.type == "string" else ""
    op = condition.op
    if op == "has_property":
        return f"({column} IS NOT NULL AND {column} <> '')", []
    if op == "not_has_property":
        return f"({column} IS NULL OR {column} = '')", []
    if op == "contains_token":
        return f"has_token({column}, ?)", values
    if op in ("in", "not_in"):
        marks = ", ".join("?" * len(values))
        if op == "in":
            return f"{column}{nocase} IN ({marks})", values
        return f"({column} IS NULL OR {column}{nocase} NOT IN ({marks}))", values
    if op == "neq":  # records without the property differ from the value too
        return f"({column} IS NULL OR {column}{nocase} <> ?)", values
    return f"{column}{nocase} {_COMPARE[op]} ?", values


def _association_sql(table: str, association: dsl.Association, viewer: Viewer) -> tuple[str, list]:
    """Keep the rows associated with at least one of the named records the person may see."""
    other = association.object_type
    where, args = viewer.clause(other)
    matches, match_args = [], []
    ids = [int(v) for v in association.values if v.isdigit()]
    if ids:
        matches.append(f"{other}.id IN ({', '.join('?' * len(ids))})")
        match_args.extend(ids)
    for name in (v for v in association.values if not v.isdigit()):
        for field in NAME_FIELDS[other]:
            if f"{other}.{field}" in viewer.hidden:
                continue
            matches.append(f"({other}.{field} = ? COLLATE NOCASE OR {other}.{field} LIKE ? ESCAPE '\\')")
            match_args.extend([name, _like(name)[:-1] + " %"])
    sub = (f"SELECT {other}.id FROM {other} WHERE {where} AND ({' OR '.join(matches) or '0'})")
    # Driven from the named records through ix_associations_to: a few index lookups, not a scan.
    sql = (f"{table}.id IN (SELECT a.from_id FROM associations a WHERE a.hub_id = ? AND a.to_type = '{other}' "
           f"AND a.to_id IN ({sub}) AND a.from_type = '{table}')")
    return sql, [viewer.hub_id, *args, *match_args]


def load(conn: sqlite3.Connection, hub_id: int, data: dict) -> dict[str, int]:
    """Insert a data set into a hub (see seed.py for its shape); returns its references' ids."""
    refs: dict[str, int] = {}
    for team in data.get("teams", ()):
        refs[team] = conn.execute("INSERT INTO teams (hub_id, name) VALUES (?, ?)", (hub_id, team)).lastrowid
    for ref, name, email, team, user_id in data.get("owners", ()):
        refs[ref] = conn.execute(
            "INSERT INTO owners (hub_id, name, email, team_id, user_id) VALUES (?, ?, ?, ?, ?)",
            (hub_id, name, email, refs.get(team), user_id)).lastrowid
    for object_type in LOAD_ORDER:
        for record in data.get(object_type, ()):
            record = dict(record)
            ref = record.pop("ref", None)
            links = {t: record.pop(t) for t in ASSOCIATIONS[object_type] if t in record}
            record["owner_id"] = refs.get(record.pop("owner", None))
            if "company" in record:
                company = record.pop("company")
                record["company_id"] = refs[company]
                links.setdefault("companies", []).append(company)
            columns = ["hub_id", *record]
            new_id = conn.execute(
                f"INSERT INTO {object_type} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [hub_id, *record.values()]).lastrowid
            if ref:
                refs[ref] = new_id
            for other, targets in links.items():
                for target in targets:
                    target_id = refs[target]
                    conn.executemany(
                        "INSERT OR IGNORE INTO associations VALUES (?, ?, ?, ?, ?)",
                        [(hub_id, object_type, new_id, other, target_id), (hub_id, other, target_id, object_type, new_id)])
    for user_id, level, unassigned, hidden in data.get("access", ()):
        conn.execute("INSERT OR REPLACE INTO access VALUES (?, ?, ?, ?, ?)",
                     (hub_id, user_id, level, int(unassigned), " ".join(hidden)))
    conn.execute("INSERT OR IGNORE INTO seeded_hubs (hub_id) VALUES (?)", (hub_id,))
    return refs

