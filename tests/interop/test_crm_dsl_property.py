"""The property behind the query table: for any query the language accepts and any person,
`search` returns exactly the records that satisfy every token and that the person may see, in the
query's order and page. Checked against a plain-Python reading of the same rules, written apart
from the SQL, over generated queries."""

from __future__ import annotations

import re
from contextlib import closing

import pytest
from crm_mcp import data, dsl
from crm_mcp.catalog import (
    ASSOCIATIONS,
    NAME_FIELDS,
    OPERATORS,
    PROPERTIES,
    TEXT_FIELDS,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_crm_dsl import ANN, BOB, CY, DATASET, DEE, HUB

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The store with the table's data set, and the same rows read back as plain dicts."""
    crm = data.CRM(str(tmp_path_factory.mktemp("crm") / "crm.sqlite3"))
    with closing(crm._connect()) as conn, conn:
        data.load(conn, HUB, DATASET)
        rows = {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} WHERE hub_id = ? ORDER BY id", (HUB,))]
                for t in PROPERTIES}
        links = {(a, b, c, d) for _, a, b, c, d in conn.execute("SELECT * FROM associations WHERE hub_id = ?", (HUB,))}
    viewers = {user: crm.viewer(HUB, user) for user in (ANN, BOB, CY, DEE)}
    return crm, rows, links, viewers


# --- the rules, read plainly ---------------------------------------------------------------------
def may_see(viewer, row) -> bool:
    if viewer.level == "all":
        return True
    return row["owner_id"] in viewer.owner_ids or (viewer.unassigned and row["owner_id"] is None)


def _norm(prop, value):
    return value.lower() if prop.type == "string" and isinstance(value, str) else value


def holds(viewer, object_type, row, condition) -> bool:
    prop = PROPERTIES[object_type][condition.prop]
    value = _norm(prop, row[condition.prop])
    wanted = [_norm(prop, (viewer.seat if viewer.seat is not None else -1) if v == "me" else v)
              for v in condition.values]
    empty = value is None or value == ""
    op = condition.op
    if op == "has_property":
        return not empty
    if op == "not_has_property":
        return empty
    if op == "contains_token":
        return value is not None and (wanted[0].lower() in re.findall(r"\w+", str(value).lower())
                                      or wanted[0].lower() in str(value).lower().split())
    if op == "in":
        return value is not None and value in wanted
    if op == "not_in":
        return value is None or value not in wanted
    if op == "neq":
        return value is None or value != wanted[0]
    if value is None:
        return False
    return {"eq": value == wanted[0], "lt": value < wanted[0], "lte": value <= wanted[0],
            "gt": value > wanted[0], "gte": value >= wanted[0]}[op]


def text_matches(viewer, object_type, row, text) -> bool:
    fields = [row[f] for f in TEXT_FIELDS[object_type] if f"{object_type}.{f}" not in viewer.hidden]
    if object_type == "contacts" and row["firstname"] is not None and row["lastname"] is not None:
        fields.append(f"{row['firstname']} {row['lastname']}")
    return any(f is not None and text.lower() in str(f).lower() for f in fields)


def names(viewer, other, row, value) -> bool:
    if value.isdigit():
        return row["id"] == int(value)
    return any(row[f] is not None and (str(row[f]).lower() == value or str(row[f]).lower().startswith(value + " "))
               for f in NAME_FIELDS[other] if f"{other}.{f}" not in viewer.hidden)


def expected(world, viewer, query: dsl.Query) -> list[int]:
    _, rows, links, _ = world
    t = query.object_type
    found = []
    for row in rows[t]:
        if not may_see(viewer, row) or not all(holds(viewer, t, row, c) for c in query.conditions):
            continue
        if not all(text_matches(viewer, t, row, text) for text in query.text):
            continue
        if not all(any((t, row["id"], a.object_type, other["id"]) in links and may_see(viewer, other)
                       and any(names(viewer, a.object_type, other, v) for v in a.values)
                       for other in rows[a.object_type]) for a in query.associations):
            continue
        found.append(row)
    prop, direction = query.sort or ("id", "asc")
    return [r["id"] for r in ordered(found, prop, direction)[query.offset:query.offset + query.limit]]


def ordered(rows, prop, direction):
    """SQLite's ORDER BY prop, id: NULLs first going up and last going down, ties by id."""
    nulls = [r for r in rows if r[prop] is None]
    present = sorted((r for r in rows if r[prop] is not None), key=lambda r: r["id"])
    present.sort(key=lambda r: r[prop], reverse=direction == "desc")  # stable: ties stay by id
    return nulls + present if direction == "asc" else present + nulls


# --- queries -------------------------------------------------------------------------------------
def _values_of(object_type, name):
    values = {r.get(name) for r in DATASET[object_type] if r.get(name) is not None}
    return sorted(values, key=str) or ["x"]


@st.composite
def queries(draw):
    user = draw(st.sampled_from([ANN, BOB, CY, DEE]))
    t = draw(st.sampled_from(list(PROPERTIES)))
    hidden = {"deals.amount"} if user == CY else {"contacts.email"} if user == DEE else set()
    visible = [p for p in PROPERTIES[t].values() if f"{t}.{p.name}" not in hidden]
    tokens = [f"object_type:{t}"]
    for _ in range(draw(st.integers(0, 3))):
        prop = draw(st.sampled_from(visible))
        op = draw(st.sampled_from(OPERATORS[prop.type]))
        if op in ("has_property", "not_has_property"):
            tokens.append(f"{prop.name}:{op}")
            continue
        pool = (list(prop.options) if prop.options else
                [1, 2, 3, "me"] if prop.name == "owner_id" else
                _values_of(t, prop.name) if prop.name not in ("company_id",) else [1, 2, 3, 4])
        if prop.type == "number" and prop.name != "owner_id":
            pool = pool + [v + d for v in pool if isinstance(v, int) for d in (-1, 1)]
        if op == "contains_token":
            pool = sorted({w for v in pool for w in re.findall(r"\w+", str(v))}) or ["x"]
        if op in ("in", "not_in"):
            chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
            value = ",".join(str(v) for v in chosen)
        else:
            if op in ("lt", "lte", "gt", "gte"):
                pool = [v for v in pool if v != "me"] or [1]
            value = str(draw(st.sampled_from(pool)))
            if prop.type == "string":
                value = draw(st.sampled_from([value, value.lower(), value.upper()]))
        tokens.append(f'{prop.name}:{op}:"{value}"' if " " in value else f"{prop.name}:{op}:{value}")
    if draw(st.booleans()):
        words = sorted({w for f in TEXT_FIELDS[t] for v in _values_of(t, f) for w in re.findall(r"\w+", str(v))})
        word = draw(st.sampled_from(words))
        tokens.append(draw(st.sampled_from([word, word[1:4] or word, word.lower()])))
    if draw(st.booleans()):
        other = draw(st.sampled_from(ASSOCIATIONS[t]))
        candidates = ["1", "2", "3"] + sorted({str(v).split()[0].lower() for f in NAME_FIELDS[other]
                                               for v in _values_of(other, f)})
        chosen = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=2))
        tokens.append(f"associated_{other}:in:{','.join(chosen)}" if len(chosen) > 1 else f"associated_{other}:{chosen[0]}")
    if draw(st.booleans()):
        key = draw(st.sampled_from(["id", *(p.name for p in visible)]))
        tokens.append(f"sort:{key}:{draw(st.sampled_from(['asc', 'desc']))}")
    tokens.append(f"limit:{draw(st.integers(1, 10))}")
    if draw(st.booleans()):
        tokens.append(f"offset:{draw(st.integers(0, 4))}")
    return user, " ".join(draw(st.permutations(tokens)))


@PROPERTY
@given(queries())
def test_search_returns_exactly_the_matching_records_the_person_may_see(world, generated):
    crm, _, _, viewers = world
    user, text = generated
    viewer = viewers[user]
    query = dsl.parse(text, viewer.hidden)
    got = [r["id"] for r in crm.search(viewer, query)]
    assert got == expected(world, viewer, query), text
