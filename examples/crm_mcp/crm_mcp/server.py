"""The MCP server: CRM tools over Streamable HTTP (stateless), each reading only the token's hub,
as the token's person: the scopes say what the app may do, the CRM's record access what this
person may see, and every tool applies both.

`search` and `fetch` follow OpenAI's "Building MCP servers for ChatGPT and API integrations"
(https://platform.openai.com/docs/mcp): each takes one string and returns one JSON object, as
the only text content item and as structured content."""

from __future__ import annotations

import html
from typing import Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from typing_extensions import (
    TypedDict,  # pydantic needs it for nested TypedDicts before Python 3.12
)

from . import data, dsl
from .auth import BearerGate, IntrospectionVerifier, read_scope, required_scopes
from .catalog import (
    ASSOCIATIONS,
    OBJECT_TYPES,
    PROPERTIES,
    example_query,
    parse_record_id,
    singular,
)
from .config import Settings

ObjectType = Literal["contacts", "companies", "deals", "tickets"]

SEARCH_DESCRIPTION = """Search the CRM records of the connected hub that you may see.

The query is space-separated key[:operator]:value tokens; every token must match.
- object_type:contacts|companies|deals|tickets (default contacts)
- a property (list_properties shows them) with an operator, eq by default: eq neq lt lte gt gte
  contains_token in not_in (in/not_in take comma-separated values) has_property not_has_property
  (these two take no value); dates are YYYY-MM-DD; owner_id:me means your own records
- a bare word or a "double-quoted phrase" matches names and emails
- associated_companies, associated_contacts, associated_deals, associated_tickets: an id or a name,
  or in: with several
- limit:1-100 (default 10), offset:N, sort:property[:asc|desc]
There is no OR, no nesting and no relative dates. A mistake returns an error saying how to fix it.

Examples:
- contacts at Acme or Initech -> object_type:contacts associated_companies:in:acme,initech
- customers called Ada -> lifecycle_stage:customer ada
- open deals above 10,000 closing by the end of 2026 -> object_type:deals stage:not_in:closedwon,closedlost amount:gt:10000 close_date:lte:2026-12-31
- the five largest deals -> object_type:deals sort:amount:desc limit:5
- urgent or high new tickets -> object_type:tickets status:new priority:in:high,urgent
- my contacts without a job title -> owner_id:me jobtitle:not_has_property
- "Grace Hopper" by full name -> "grace hopper"
- the second page of 20 -> lifecycle_stage:lead limit:20 offset:20

Returns {"results": [{"id", "title", "url"}]}; pass an id such as contacts:12 to fetch."""

FETCH_DESCRIPTION = """Fetch one CRM record by the id search returned (such as contacts:12 or deals:7).

Returns {"id", "title", "text", "url", "metadata"}: the text lists the record's properties."""


class SearchResult(TypedDict):
    id: str
    title: str
    url: str


class SearchResults(TypedDict):
    results: list[SearchResult]


class Document(TypedDict):
    id: str
    title: str
    text: str
    url: str
    metadata: dict[str, str]


def _token_for(tool: str, arguments: dict[str, Any]) -> AccessToken:
    """The caller's verified token, refusing the call when its scopes don't allow it (the HTTP
    layer already answered 403; this is the same rule, checked again where the data is read)."""
    access = get_access_token()
    if access is None:
        raise ToolError("Not authenticated.")
    _require(required_scopes(tool, arguments))
    return access


def _require(scopes: list[str]) -> None:
    """Refuse the call unless the token holds every one of `scopes` (naming those it lacks)."""
    missing = [s for s in scopes if s not in get_access_token().scopes]
    if missing:
        raise ToolError(f"This token lacks the scope {' '.join(missing)}.")


def _hub(access: AccessToken) -> int:
    return int((access.claims or {})["hub_id"])


def _record_id(value: str) -> tuple[str, int]:
    """The id's type and number, refusing a type the token may not read (checked again here,
    after parsing, whatever the HTTP layer made of the raw string)."""
    parsed = parse_record_id(value)
    if parsed is None:
        raise ToolError(f'"{value}" is not a record id. Ids are an object type, a colon and a number, as search '
                        f"returns them: one of {', '.join(f'{t}:12' for t in OBJECT_TYPES)}.")
    _require([read_scope(parsed[0])])
    return parsed


def build_mcp(crm: data.CRM, record_url_base: str = "http://127.0.0.1:8001/records") -> MCPServer:
    mcp = MCPServer(
        name="crm",
        title="Example CRM",
        instructions="Search and read the CRM contacts, companies, deals and tickets of the hub you connected "
                     "(only the records and properties your CRM user may see); add notes. Use search with its "
                     "query language, then fetch a result; list_properties shows what a query may filter on.",
    )

    def viewer(tool: str, arguments: dict[str, Any]) -> data.Viewer:
        access = _token_for(tool, arguments)
        return crm.viewer(_hub(access), (access.claims or {}).get("user_id"))

    def url(hub_id: int, object_type: str, object_id: int) -> str:
        return f"{record_url_base}/{hub_id}/{object_type}/{object_id}"

    def result(who: data.Viewer, row: dict) -> SearchResult:
        record_id = f"{row['object_type']}:{row['id']}"
        return {"id": record_id, "title": row["title"] or record_id, "url": url(who.hub_id, row["object_type"], row["id"])}

    @mcp.tool(description=SEARCH_DESCRIPTION)
    def search(query: str) -> SearchResults:
        who = viewer("search", {"query": query})
        try:
            parsed = dsl.parse(query, who.hidden)
        except dsl.QueryError as exc:
            raise ToolError(str(exc)) from None
        read = [read_scope(t) for t in dict.fromkeys([parsed.object_type, *(a.object_type for a in parsed.associations)])]
        _require(read)  # the types the parsed query reads, whatever the text looked like
        return {"results": [result(who, row) for row in crm.search(who, parsed)]}

    @mcp.tool(description=FETCH_DESCRIPTION)
    def fetch(id: str) -> Document:
        who = viewer("fetch", {"id": id})
        object_type, object_id = _record_id(id)
        row = crm.get(who, object_type, object_id)
        if row is None:
            raise ToolError(f"Not found: no record {object_type}:{object_id} in this hub.")
        labels = PROPERTIES[object_type]
        shown = {k: v for k, v in row["properties"].items() if v not in (None, "")}
        text = "\n".join([f"{singular(object_type).capitalize()}: {row['title']}"] +
                         [f"{labels[k].label}: {v}" for k, v in shown.items()])
        metadata = {"object_type": object_type, "hub_id": str(who.hub_id), **{k: str(v) for k, v in shown.items()}}
        return {"id": f"{object_type}:{object_id}", "title": row["title"] or f"{object_type}:{object_id}",
                "text": text, "url": url(who.hub_id, object_type, object_id), "metadata": metadata}

    @mcp.tool()
    def list_properties(object_type: ObjectType) -> dict[str, Any]:
        """The properties of an object type that you may see and filter on in search, with their type,
        operators and allowed values, and the types it can be associated with."""
        who = viewer("list_properties", {"object_type": object_type})
        return {
            "object_type": object_type,
            "properties": [PROPERTIES[object_type][p].describe() for p in who.visible_properties(object_type)],
            "associations": [f"associated_{t}" for t in ASSOCIATIONS[object_type]],
            "example": example_query(object_type, who.visible_properties(object_type)),
        }

    @mcp.tool()
    def get_associations(id: str, to_object_type: ObjectType, limit: int = 100) -> dict[str, Any]:
        """The records of `to_object_type` associated with the record `id` (e.g. the companies of
        contacts:12), among those you may see; pass their ids to fetch."""
        who = viewer("get_associations", {"id": id, "to_object_type": to_object_type})
        object_type, object_id = _record_id(id)
        if to_object_type not in ASSOCIATIONS[object_type]:
            raise ToolError(f"{object_type.capitalize()} have no associated {to_object_type}; use one of: "
                            f"{', '.join(ASSOCIATIONS[object_type])}.")
        rows = crm.associations(who, object_type, object_id, to_object_type, max(1, min(int(limit), 100)))
        if rows is None:
            raise ToolError(f"Not found: no record {object_type}:{object_id} in this hub.")
        return {"id": f"{object_type}:{object_id}", "to_object_type": to_object_type,
                "results": [result(who, row) for row in rows]}

    @mcp.tool()
    def search_crm_objects(
        object_type: ObjectType,
        query: str | None = None,
        filters: dict[str, str] | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Search contacts, companies, deals or tickets in the connected hub (the `search` tool's
        query language does more).

        `query` matches names and emails; `filters` maps a property to an exact value (list_properties
        shows them)."""
        who = viewer("search_crm_objects", {"object_type": object_type})
        filters = filters or {}
        visible = who.visible_properties(object_type)
        unknown = [p for p in filters if p not in visible]
        if unknown:
            raise ToolError(f"Unknown {object_type} properties: {', '.join(unknown)}. Use one of: {', '.join(visible)}.")
        parsed = dsl.Query(object_type=object_type, limit=max(1, min(int(limit), 100)), text=[query] if query else [])
        properties = {p: PROPERTIES[object_type][p] for p in visible}
        try:
            parsed.conditions = [dsl.condition(object_type, properties, p, None, str(v)) for p, v in filters.items()]
        except dsl.QueryError as exc:
            raise ToolError(str(exc)) from None
        results = crm.search(who, parsed)
        return {"hub_id": who.hub_id, "object_type": object_type, "total": len(results), "results": results}

    @mcp.tool()
    def get_crm_object(object_type: ObjectType, object_id: int) -> dict[str, Any]:
        """Get one contact, company, deal or ticket of the connected hub by id, with its notes."""
        who = viewer("get_crm_object", {"object_type": object_type})
        found = crm.get(who, object_type, object_id, notes=True)
        if found is None:
            raise ToolError(f"No {singular(object_type)} with id {object_id} in this hub.")
        return found

    @mcp.tool()
    def create_note(object_type: ObjectType, object_id: int, body: str) -> dict[str, Any]:
        """Add a note to a contact, company, deal or ticket of the connected hub (needs crm.objects.notes.write)."""
        access = _token_for("create_note", {"object_type": object_type})
        who = crm.viewer(_hub(access), (access.claims or {}).get("user_id"))
        body = body.strip()
        if not body or len(body) > 5000:
            raise ToolError("A note needs 1 to 5000 characters of text.")
        note = crm.add_note(who, object_type, object_id, body, access.subject or "", access.client_id)
        if note is None:
            raise ToolError(f"No {object_type} record with id {object_id} in this hub.")
        return note

    return mcp


async def record_page(scope, receive, send) -> None:
    """The stable address of a record (the `url` of search and fetch). A real CRM shows the record
    here to a signed-in person; this example has no web sign-in, so it only names the record."""
    parts = scope["path"].strip("/").split("/")
    name = " ".join(parts[1:4]) if len(parts) == 4 else "unknown record"
    body = (f"<!doctype html><title>Example CRM</title><p>Record {html.escape(name)}: open it in your CRM. "
            "This example CRM has no web interface; its MCP tools show the records.</p>").encode()
    await send({"type": "http.response.start", "status": 200 if len(parts) == 4 else 404,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings):
    """The ASGI app: protected resource metadata, the MCP endpoint behind the bearer gate, and
    the record addresses."""
    crm = data.CRM(settings.database)
    mcp = build_mcp(crm, settings.record_url_base)
    inner = mcp.streamable_http_app(
        streamable_http_path=settings.mcp_path,
        stateless_http=True,
        json_response=True,
        host=settings.host,
    )
    gate = BearerGate(inner, settings, IntrospectionVerifier(settings))

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/records/") and scope["method"] == "GET":
            await record_page(scope, receive, send)
        else:
            await gate(scope, receive, send)

    return app
