"""The example connector's query language, through its MCP tools (the SDK's in-memory client):
a table of valid queries with the exact ids each returns, a table of mistakes with the error that
names the fix, record access intersected with every query, and OpenAI's search/fetch shape."""

from __future__ import annotations

import json
from contextlib import closing

import anyio
import pytest
from crm_mcp import data, dsl, server
from crm_mcp.auth import SCOPES_SUPPORTED, required_scopes
from crm_mcp.catalog import ASSOCIATIONS, OBJECT_TYPES
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

HUB = 4242
# authserver user ids: all records / their team's / own + unassigned, no amounts / all, no emails
ANN, BOB, CY, DEE = 501, 502, 503, 504

DATASET = {
    "teams": ["Red", "Blue"],
    "owners": [("ann", "Ann", "ann@crm.example", "Red", ANN), ("bob", "Bob", "bob@crm.example", "Red", BOB),
               ("cy", "Cy", "cy@crm.example", "Blue", CY)],
    "companies": [  # ids 1-4
        {"ref": "acme", "name": "Acme Corporation", "domain": "acme.example", "industry": "Manufacturing",
         "city": "Springfield", "employees": 1200, "owner": "ann"},
        {"ref": "initech", "name": "Initech", "domain": "initech.example", "industry": "Software", "city": "Austin",
         "employees": 300, "owner": "bob"},
        {"ref": "globex", "name": "Globex", "domain": "globex.example", "industry": "Energy", "city": "Cypress Creek",
         "employees": 5000, "owner": "cy"},
        {"ref": "umbrella", "name": "Umbrella Health", "domain": "umbrella.example", "industry": "Healthcare",
         "city": "Raccoon City"},
    ],
    "contacts": [  # ids 1-8
        {"ref": "ada", "firstname": "Ada", "lastname": "Lovelace", "email": "ada@acme.example", "jobtitle": "CTO",
         "lifecycle_stage": "customer", "company": "acme", "created_date": "2025-02-01", "owner": "ann"},
        {"ref": "grace", "firstname": "Grace", "lastname": "Hopper", "email": "grace@acme.example",
         "jobtitle": "Rear Admiral Engineer", "lifecycle_stage": "lead", "company": "acme",
         "created_date": "2025-06-15", "owner": "bob"},
        {"ref": "peter", "firstname": "Peter", "lastname": "Gibbons", "email": "peter@initech.example",
         "jobtitle": "Programmer", "lifecycle_stage": "opportunity", "company": "initech",
         "created_date": "2026-01-10", "owner": "bob"},
        {"ref": "milton", "firstname": "Milton", "lastname": "Waddams", "email": "milton@initech.example",
         "jobtitle": "Stapler Custodian", "lifecycle_stage": "subscriber", "company": "initech",
         "created_date": "2024-11-30"},
        {"ref": "hank", "firstname": "Hank", "lastname": "Scorpio", "email": "hank@globex.example", "jobtitle": "CEO",
         "lifecycle_stage": "customer", "company": "globex", "created_date": "2025-09-09", "owner": "cy"},
        {"ref": "homer", "firstname": "Homer", "lastname": "Simpson", "email": "homer@globex.example",
         "jobtitle": "Safety Inspector", "lifecycle_stage": "customer", "company": "globex",
         "created_date": "2025-10-01", "owner": "cy"},
        {"ref": "alice", "firstname": "Alice", "lastname": "Wesker", "email": "alice@umbrella.example",
         "lifecycle_stage": "lead", "company": "umbrella", "created_date": "2026-03-03", "owner": "ann"},
        {"ref": "sam", "firstname": "Sam", "lastname": "Nobody", "jobtitle": "Consultant", "created_date": "2026-05-05"},
    ],
    "deals": [  # ids 1-5
        {"name": "Acme rocket skates renewal", "stage": "closedwon", "amount": 120000, "company": "acme",
         "close_date": "2026-03-31", "owner": "ann", "contacts": ["ada"]},
        {"name": "Initech TPS reports", "stage": "negotiation", "amount": 45000, "company": "initech",
         "close_date": "2026-12-15", "owner": "bob", "contacts": ["peter", "milton"]},
        {"name": "Globex support plan", "stage": "appointmentscheduled", "amount": 30000, "company": "globex",
         "close_date": "2026-09-30", "owner": "cy", "contacts": ["hank"]},
        {"name": "Globex reactor retrofit", "stage": "qualifiedtobuy", "amount": 250000, "company": "globex",
         "close_date": "2027-01-31", "owner": "cy", "contacts": ["homer", "hank"]},
        {"name": "Umbrella pilot", "stage": "closedlost", "amount": 9000, "company": "umbrella",
         "close_date": "2025-12-01", "contacts": ["alice"]},
    ],
    "tickets": [  # ids 1-3
        {"subject": "Rocket skates squeak", "status": "new", "priority": "high", "created_date": "2026-04-02",
         "owner": "ann", "contacts": ["ada"], "companies": ["acme"]},
        {"subject": "Stapler missing", "status": "waiting", "priority": "urgent", "created_date": "2026-05-20",
         "contacts": ["milton"], "companies": ["initech"]},
        {"subject": "Reactor alarm", "status": "in_progress", "priority": "high", "created_date": "2026-03-04",
         "owner": "cy", "contacts": ["homer"], "companies": ["globex"]},
    ],
    "access": [(0, "all", False, ()), (BOB, "team", False, ()), (CY, "own", True, ("deals.amount",)),
               (DEE, "all", False, ("contacts.email",))],
}
#: What each person may see, by the rules above (owner Ann/Bob: Red team; Cy: own and unassigned).
VISIBLE = {
    ANN: None,  # everything
    BOB: {"contacts": {1, 2, 3, 7}, "companies": {1, 2}, "deals": {1, 2}, "tickets": {1}},
    CY: {"contacts": {4, 5, 6, 8}, "companies": {3, 4}, "deals": {3, 4, 5}, "tickets": {2, 3}},
}


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    store = data.CRM(str(tmp_path_factory.mktemp("crm") / "crm.sqlite3"))
    with closing(store._connect()) as conn, conn:
        data.load(conn, HUB, DATASET)
    return store


def call(crm, user_id: int, calls, scopes=SCOPES_SUPPORTED, hub=HUB):
    """Run tool calls through the MCP server in memory, as `user_id` with a token for `hub`."""
    mcp = server.build_mcp(crm, "https://crm.example/records")

    async def main():
        auth_context_var.set(AuthenticatedUser(AccessToken(
            token="t", client_id="c", scopes=list(scopes), claims={"hub_id": hub, "user_id": user_id})))
        async with Client(mcp) as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]

    return anyio.run(main)


def ids(result) -> list[str]:
    assert not result.is_error, result.content[0].text
    return [r["id"] for r in result.structured_content["results"]]


def _c(*numbers):
    return [f"contacts:{n}" for n in numbers]


VALID = [
    ("", _c(1, 2, 3, 4, 5, 6, 7, 8)),
    ("object_type:contacts", _c(1, 2, 3, 4, 5, 6, 7, 8)),
    ("lifecycle_stage:customer", _c(1, 5, 6)),
    ("lifecycle_stage:eq:customer", _c(1, 5, 6)),
    ("lifecycle_stage:CUSTOMER", _c(1, 5, 6)),
    ("lifecycle_stage:neq:customer", _c(2, 3, 4, 7, 8)),
    ("lifecycle_stage:in:lead,opportunity", _c(2, 3, 7)),
    ("lifecycle_stage:not_in:customer,lead", _c(3, 4, 8)),
    ("lifecycle_stage:not_has_property", _c(8)),
    ("lifecycle_stage:has_property", _c(1, 2, 3, 4, 5, 6, 7)),
    ("email:not_has_property", _c(8)),
    ("jobtitle:contains_token:engineer", _c(2)),
    ("jobtitle:contains_token:INSPECTOR", _c(6)),
    ("jobtitle:CEO", _c(5)),
    ("jobtitle:eq:ceo", _c(5)),
    ('jobtitle:"Safety Inspector"', _c(6)),
    ("created_date:gte:2026-01-01", _c(3, 7, 8)),
    ("created_date:lt:2025-01-01", _c(4)),
    ("created_date:2025-09-09", _c(5)),
    ("company_id:2", _c(3, 4)),
    ("ada", _c(1)),
    ("simpson", _c(6)),
    ("hank scorpio", _c(5)),
    ('"grace hopper"', _c(2)),
    ("acme.example", _c(1, 2)),
    ("object_type:contacts associated_companies:in:acme,initech", _c(1, 2, 3, 4)),
    ("associated_companies:1", _c(1, 2)),
    ("associated_companies:globex.example", _c(5, 6)),
    ("associated_companies:in:acme,nonexistent", _c(1, 2)),
    ("associated_companies:nonexistent", []),
    ("associated_deals:in:initech", _c(3, 4)),
    ("associated_tickets:stapler", _c(4)),
    ("lifecycle_stage:customer associated_companies:globex", _c(5, 6)),
    ("limit:2", _c(1, 2)),
    ("limit:2 offset:2", _c(3, 4)),
    ("sort:created_date:desc limit:3", _c(8, 7, 3)),
    ("sort:lastname", _c(3, 2, 1, 8, 5, 6, 4, 7)),
    ("owner_id:me", _c(1, 7)),
    ("owner_id:not_has_property", _c(4, 8)),
    ("object_type:companies", ["companies:1", "companies:2", "companies:3", "companies:4"]),
    ("object_type:companies industry:Software", ["companies:2"]),
    ("object_type:companies industry:in:energy,healthcare", ["companies:3", "companies:4"]),
    ("object_type:companies employees:gt:1000", ["companies:1", "companies:3"]),
    ("object_type:companies employees:not_has_property", ["companies:4"]),
    ("object_type:companies corp", ["companies:1"]),
    ("object_type:companies associated_contacts:hank", ["companies:3"]),
    ("object_type:deals amount:gt:10000", ["deals:1", "deals:2", "deals:3", "deals:4"]),
    ("object_type:deals amount:gt:10000 close_date:lte:2026-12-31", ["deals:1", "deals:2", "deals:3"]),
    ("object_type:deals stage:not_in:closedwon,closedlost", ["deals:2", "deals:3", "deals:4"]),
    ("object_type:deals sort:amount:desc limit:2", ["deals:4", "deals:1"]),
    ("object_type:deals associated_companies:globex", ["deals:3", "deals:4"]),
    ("object_type:deals associated_contacts:in:hank,peter", ["deals:2", "deals:3", "deals:4"]),
    ("object_type:deals name:contains_token:globex", ["deals:3", "deals:4"]),
    ("object_type:deals amount:in:9000,45000", ["deals:2", "deals:5"]),
    ("object_type:deals close_date:gt:2026-12-31", ["deals:4"]),
    ("object_type:deals amount:lte:30000 amount:gte:9000", ["deals:3", "deals:5"]),
    ("object_type:tickets status:new", ["tickets:1"]),
    ("object_type:tickets priority:in:high,urgent sort:created_date", ["tickets:3", "tickets:1", "tickets:2"]),
    ("object_type:tickets associated_companies:initech", ["tickets:2"]),
    ("object_type:tickets stapler", ["tickets:2"]),
]

#: The same language for people who see less: never a record outside their access, also in paging.
VALID_WITH_ACCESS = [
    (BOB, "", _c(1, 2, 3, 7)),
    (BOB, "associated_companies:initech", _c(3)),
    (BOB, "object_type:companies", ["companies:1", "companies:2"]),
    (BOB, "owner_id:me", _c(2, 3)),
    (CY, "", _c(4, 5, 6, 8)),
    (CY, "limit:2 offset:2", _c(6, 8)),
    (CY, "object_type:deals", ["deals:3", "deals:4", "deals:5"]),
    (CY, "object_type:deals sort:close_date:desc", ["deals:4", "deals:3", "deals:5"]),
    (CY, "associated_companies:acme", []),
    (CY, "object_type:deals associated_contacts:in:hank,peter", ["deals:3", "deals:4"]),
    # Free text and association names do not match a hidden property either.
    (DEE, "acme.example", []),
    (DEE, "ada", _c(1)),
    (DEE, "object_type:deals associated_contacts:ada@acme.example", []),
    (DEE, "object_type:deals associated_contacts:ada", ["deals:1"]),
]

INVALID = [
    (ANN, "lifecyle_stage:customer", 'Unknown property "lifecyle_stage" for contacts; did you mean "lifecycle_stage"?'),
    (ANN, "object_type:contact", ('Unknown object_type "contact"; did you mean "contacts"? Use one of: contacts, '
                                  "companies, deals, tickets.")),
    (ANN, "object_type:ticket status:new", 'Unknown object_type "ticket"; did you mean "tickets"?'),
    (ANN, "object_type:deals amount:gtt:5", ('Unknown operator "gtt" for amount (number); did you mean "gt"? '
                                             "Operators for number: eq, neq, lt, lte, gt, gte")),
    (ANN, "lifecycle_stage:gt:lead", ('Operator "gt" does not apply to lifecycle_stage (enumeration). Operators for '
                                      "enumeration: eq, neq, in, not_in, has_property, not_has_property.")),
    (ANN, "lifecycle_stage:custmer", 'lifecycle_stage has no value "custmer"; did you mean "customer"?'),
    (ANN, "object_type:tickets status:open", 'status has no value "open". Values: new, waiting, in_progress, closed.'),
    (ANN, "object_type:deals amount:ten", 'amount is a number; "ten" is not. Example: amount:gt:10000'),
    (ANN, "object_type:deals close_date:lte:tomorrow",
     ('close_date is a date written YYYY-MM-DD; "tomorrow" is not (relative dates such as today are not '
      "supported). Example: close_date:lte:2026-12-31")),
    (ANN, "object_type:deals close_date:2026-13-01", 'close_date is a date written YYYY-MM-DD; "2026-13-01" is not'),
    (ANN, "limit:500", 'limit must be a whole number from 1 to 100; got "500". Example: limit:50'),
    (ANN, "offset:-1", 'offset must be a whole number from 0 to 10000; got "-1". Example: offset:20'),
    (ANN, "sort:close_date", 'Cannot sort contacts by "close_date"; did you mean "created_date"?'),
    (ANN, "sort:lastname:down", 'The sort direction must be asc or desc; got "down". Example: sort:lastname:desc'),
    (ANN, "lifecycle_stage:customer OR lifecycle_stage:lead",
     ("There is no OR: all tokens must match. For several values of one property use in, e.g. "
      "lifecycle_stage:in:lead,customer")),
    (ANN, "AND ada", "AND is implied between tokens; remove it."),
    (ANN, "(ada)", "Parentheses are not supported (no nesting)"),
    (ANN, "(lifecycle_stage:customer jobtitle:CTO)", "Parentheses are not supported (no nesting)"),
    (ANN, "-ada", 'There is no "-" negation; use neq or not_in, e.g. lifecycle_stage:neq:customer.'),
    (ANN, '"ada', 'A double quote is not closed. Close the phrase, e.g. "ada lovelace".'),
    (ANN, "email:has_property:yes", "has_property takes no value; write email:has_property"),
    (ANN, "lifecycle_stage:in:", ("lifecycle_stage:in needs comma-separated values. Example: "
                                  "lifecycle_stage:in:subscriber,lead")),
    (ANN, "jobtitle:", "jobtitle:eq needs a value after the colon. Example: jobtitle:CTO"),
    (ANN, 'jobtitle:contains_token:"chief officer"', "contains_token takes one word"),
    (ANN, "object_type:deals associated_tickets:1", ('Deals have no "associated_tickets"; did you mean '
                                                     '"associated_contacts"? Use one of: associated_contacts, '
                                                     "associated_companies.")),
    (ANN, "associated_companies:gt:5", ('Unknown operator "gt" for associated_companies. Associations take eq '
                                        "(the default) or in.")),
    (ANN, "object_type:deals object_type:contacts", "object_type is given twice; give it once."),
    (ANN, "limit:5 limit:6", "limit is given twice; give it once. Example: limit:50"),
    # A hidden property does not exist for this person: not as a filter, a sort key or a suggestion.
    (CY, "object_type:deals amount:gt:5", ('Unknown property "amount" for deals. Properties: name, stage, '
                                           "company_id, close_date, owner_id;")),
    (DEE, "email:has_property", 'Unknown property "email" for contacts. Properties: firstname, lastname, jobtitle,'),
    (CY, "object_type:deals sort:amount", ('Cannot sort deals by "amount". Sort by one of: id, name, stage, '
                                           "company_id, close_date, owner_id.")),
]


def test_the_tables_are_as_large_as_promised():
    assert len(VALID) + len(VALID_WITH_ACCESS) >= 40 and len(INVALID) >= 20


@pytest.mark.parametrize("query, expected", VALID, ids=[q or "(empty)" for q, _ in VALID])
def test_valid_queries_return_exactly_these_records(crm, query, expected):
    assert ids(call(crm, ANN, [("search", {"query": query})])[0]) == expected


@pytest.mark.parametrize("user_id, query, expected", VALID_WITH_ACCESS)
def test_queries_see_only_the_records_the_person_may_see(crm, user_id, query, expected):
    assert ids(call(crm, user_id, [("search", {"query": query})])[0]) == expected


@pytest.mark.parametrize("user_id, query, message", INVALID, ids=[q for _, q, _ in INVALID])
def test_mistakes_get_an_error_that_names_the_fix(crm, user_id, query, message):
    result = call(crm, user_id, [("search", {"query": query})])[0]
    assert result.is_error
    assert message in result.content[0].text


@pytest.mark.parametrize("user_id", [BOB, CY])
def test_no_query_reaches_past_record_access_or_shows_a_hidden_property(crm, user_id):
    queries = [q for q, _ in VALID] + [q for _, q, _ in VALID_WITH_ACCESS]
    results = call(crm, user_id, [("search", {"query": q}) for q in queries])
    for query, result in zip(queries, results):
        if result.is_error:  # only what hides a property from this person may fail
            assert "amount" in query and user_id == CY, (query, result.content[0].text)
            continue
        for record_id in ids(result):
            object_type, number = record_id.split(":")
            assert int(number) in VISIBLE[user_id][object_type], (query, record_id)
    every_record = [f"{t}:{n}" for t, count in (("contacts", 8), ("companies", 4), ("deals", 5), ("tickets", 3))
                    for n in range(1, count + 1)]
    fetched = call(crm, user_id, [("fetch", {"id": i}) for i in every_record])
    for record_id, result in zip(every_record, fetched):
        object_type, number = record_id.split(":")
        if int(number) in VISIBLE[user_id][object_type]:
            assert not result.is_error and result.structured_content["id"] == record_id
        else:
            assert result.is_error and f"Not found: no record {record_id} in this hub." in result.content[0].text
        if user_id == CY and object_type == "deals":
            assert "amount" not in result.content[0].text.lower()
            assert "amount" not in (result.structured_content or {}).get("metadata", {})
    properties = call(crm, user_id, [("list_properties", {"object_type": "deals"})])[0].structured_content
    assert ("amount" in [p["name"] for p in properties["properties"]]) == (user_id != CY)
    assert "amount" not in properties["example"] or user_id != CY


def test_search_and_fetch_have_the_shape_openai_documents(crm):
    """https://platform.openai.com/docs/mcp: one string argument each; one text content item that
    is a JSON object, search's {"results": [{"id", "title", "url"}]}, fetch's {"id", "title",
    "text", "url", "metadata"}."""
    mcp = server.build_mcp(crm, "https://crm.example/records")

    async def tools():
        async with Client(mcp) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    listed = anyio.run(tools)
    for name, argument in (("search", "query"), ("fetch", "id")):
        schema = listed[name].input_schema
        assert schema["required"] == [argument] and list(schema["properties"]) == [argument]
        assert schema["properties"][argument]["type"] == "string"
    assert "associated_companies:in:acme,initech" in listed["search"].description

    searched, fetched = call(crm, ANN, [("search", {"query": "object_type:deals associated_companies:globex"}),
                                        ("fetch", {"id": "deals:3"})])
    for result in (searched, fetched):
        assert not result.is_error
        assert len(result.content) == 1 and result.content[0].type == "text"
        assert json.loads(result.content[0].text) == result.structured_content
    body = searched.structured_content
    assert list(body) == ["results"] and len(body["results"]) == 2
    for item in body["results"]:
        assert set(item) == {"id", "title", "url"} and all(isinstance(v, str) and v for v in item.values())
    assert body["results"][0] == {"id": "deals:3", "title": "Globex support plan",
                                  "url": f"https://crm.example/records/{HUB}/deals/3"}
    document = fetched.structured_content
    assert set(document) == {"id", "title", "text", "url", "metadata"}
    assert document["id"] == "deals:3" and document["title"] == "Globex support plan"
    assert document["url"] == body["results"][0]["url"]
    assert "Amount: 30000" in document["text"] and "Deal stage: appointmentscheduled" in document["text"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in document["metadata"].items())
    assert document["metadata"]["object_type"] == "deals" and document["metadata"]["hub_id"] == str(HUB)


@pytest.mark.parametrize("record_id", ["deals", "deals:", "deal:3", "deals:three", ""])
def test_fetch_explains_what_an_id_looks_like(crm, record_id):
    result = call(crm, ANN, [("fetch", {"id": record_id})])[0]
    assert result.is_error and "Ids are an object type, a colon and a number, as search returns them" in \
        result.content[0].text


def test_the_earlier_tools_apply_the_same_access(crm):
    found, hidden_filter, seen, unseen = call(crm, CY, [
        ("search_crm_objects", {"object_type": "deals"}),
        ("search_crm_objects", {"object_type": "deals", "filters": {"amount": "30000"}}),
        ("get_crm_object", {"object_type": "deals", "object_id": 3}),
        ("get_crm_object", {"object_type": "deals", "object_id": 1}),
    ])
    body = found.structured_content
    assert [r["id"] for r in body["results"]] == [3, 4, 5] and body["total"] == 3
    assert all("amount" not in r["properties"] for r in body["results"])
    assert hidden_filter.is_error and "Unknown deals properties: amount" in hidden_filter.content[0].text
    assert "amount" not in seen.structured_content["properties"]
    assert unseen.is_error and "No deal with id 1 in this hub." in unseen.content[0].text


@pytest.mark.parametrize("record_id", ["deals:3", " deals:3", "deals:3 "])
def test_fetch_needs_the_read_scope_of_the_ids_type_however_it_is_spelled(crm, record_id):
    assert required_scopes("fetch", {"id": record_id}) == ["crm.objects.deals.read"]
    result = call(crm, ANN, [("fetch", {"id": record_id})], scopes=["crm.objects.contacts.read"])[0]
    assert result.is_error and "This token lacks the scope crm.objects.deals.read." in result.content[0].text


def test_associations_and_another_hub_stay_within_access(crm):
    companies, contacts, other_hub = call(crm, CY, [
        ("get_associations", {"id": "contacts:5", "to_object_type": "companies"}),
        ("get_associations", {"id": "companies:3", "to_object_type": "contacts"}),
        ("get_associations", {"id": "companies:1", "to_object_type": "contacts"}),  # Ann's: not found
    ])
    assert ids(companies) == ["companies:3"]
    assert ids(contacts) == _c(5, 6)
    assert other_hub.is_error and "Not found: no record companies:1" in other_hub.content[0].text
    elsewhere = call(crm, ANN, [("fetch", {"id": "contacts:1"}), ("search", {"query": "ada"})], hub=HUB + 1)
    assert elsewhere[0].is_error and "Not found" in elsewhere[0].content[0].text
    assert ids(elsewhere[1]) == []  # hub 4243 has its own generic data, never hub 4242's


def test_scopes_supported_are_exactly_the_scopes_the_tools_use():
    used = set()
    for t in OBJECT_TYPES:
        used.update(required_scopes("search", {"query": f"object_type:{t}"}))
        used.update(required_scopes("fetch", {"id": f"{t}:1"}))
        used.update(required_scopes("list_properties", {"object_type": t}))
        for other in ASSOCIATIONS[t]:
            used.update(required_scopes("get_associations", {"id": f"{t}:1", "to_object_type": other}))
        used.update(required_scopes("get_crm_object", {"object_type": t}))
    used.update(required_scopes("create_note", {}))
    assert sorted(used) == sorted(SCOPES_SUPPORTED)
    # Filtering by another type's records reads them too.
    assert required_scopes("search", {"query": "object_type:deals associated_companies:acme"}) == [
        "crm.objects.deals.read", "crm.objects.companies.read"]


@pytest.mark.parametrize("query", ["object_type:deals", 'object_type:"deals"', "OBJECT_TYPE:DEALS",
                                   'object_type:"Deals "', "associated_deals:1", 'associated_deals:"initech"'])
def test_a_token_without_the_scope_cannot_read_that_type(crm, query):
    # The HTTP gate (403) and the tool read the query the same way, however it is spelled.
    assert "crm.objects.deals.read" in required_scopes("search", {"query": query})
    result = call(crm, ANN, [("search", {"query": query})], scopes=["crm.objects.contacts.read"])[0]
    assert result.is_error and "This token lacks the scope crm.objects.deals.read." in result.content[0].text


def test_the_seed_commands_fill_a_hub_and_set_access(tmp_path, capsys):
    from crm_mcp import seed

    path = str(tmp_path / "crm.sqlite3")
    seed.main(["--database", path, "bulk", "--hub", "7", "--contacts", "500"])
    store = data.CRM(path)
    everyone = store.viewer(7, 1)
    assert [r["id"] for r in store.search(everyone, dsl.parse("limit:100 offset:450"))][-1] == 500
    with pytest.raises(SystemExit, match="hub 7 already has data"):
        seed.main(["--database", path, "bulk", "--hub", "7", "--contacts", "10"])
    seed.main(["--database", path, "access", "--hub", "7", "--user", "1", "--level", "own",
               "--seat", "owner3@hub7.example", "--hide", "contacts.email"])
    assert "User 1 in hub 7: own records, hidden: contacts.email" in capsys.readouterr().out
    own = store.viewer(7, 1)
    rows = store.search(own, dsl.parse("limit:100", own.hidden))
    assert rows and {r["properties"]["owner_id"] for r in rows} == {own.seat}
    assert all("email" not in r["properties"] for r in rows)
    with pytest.raises(SystemExit, match="unknown properties: deals.price"):
        seed.main(["--database", path, "access", "--hub", "7", "--user", "1", "--level", "all", "--hide", "deals.price"])
