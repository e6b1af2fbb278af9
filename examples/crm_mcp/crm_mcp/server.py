"""The MCP server: CRM tools over Streamable HTTP (stateless), each reading only the token's hub."""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from . import data
from .auth import BearerGate, IntrospectionVerifier, required_scopes
from .config import Settings

ObjectType = Literal["contacts", "companies", "deals"]


def _token_for(tool: str, arguments: dict[str, Any]) -> AccessToken:
    """The caller's verified token, refusing the call when its scopes don't allow it (the HTTP
    layer already answered 403; this is the same rule, checked again where the data is read)."""
    access = get_access_token()
    if access is None:
        raise ToolError("Not authenticated.")
    missing = [s for s in required_scopes(tool, arguments) if s not in access.scopes]
    if missing:
        raise ToolError(f"This token lacks the scope {' '.join(missing)}.")
    return access


def _hub(access: AccessToken) -> int:
    return int((access.claims or {})["hub_id"])


def build_mcp(crm: data.CRM) -> MCPServer:
    mcp = MCPServer(
        name="crm",
        title="Example CRM",
        instructions="Search and read CRM contacts, companies and deals in the hub you connected; add notes.",
    )

    @mcp.tool()
    def search_crm_objects(
        object_type: ObjectType,
        query: str | None = None,
        filters: dict[str, str] | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Search contacts, companies or deals in the connected hub.

        `query` matches names and emails; `filters` maps a property to an exact value (contacts:
        firstname, lastname, email, jobtitle, lifecycle_stage, company_id; companies: name, domain,
        industry, city; deals: name, stage, amount, company_id, close_date)."""
        access = _token_for("search_crm_objects", {"object_type": object_type})
        filters = filters or {}
        unknown = [p for p in filters if p not in data.PROPERTIES[object_type]]
        if unknown:
            raise ToolError(
                f"Unknown {object_type} properties: {', '.join(unknown)}. "
                f"Use one of: {', '.join(data.PROPERTIES[object_type])}."
            )
        limit = max(1, min(int(limit), 100))
        results = crm.search(_hub(access), object_type, query, filters, limit)
        return {"hub_id": _hub(access), "object_type": object_type, "total": len(results), "results": results}

    @mcp.tool()
    def get_crm_object(object_type: ObjectType, object_id: int) -> dict[str, Any]:
        """Get one contact, company or deal of the connected hub by id, with its notes."""
        access = _token_for("get_crm_object", {"object_type": object_type})
        found = crm.get(_hub(access), object_type, object_id)
        if found is None:
            raise ToolError(f"No {object_type[:-1] if object_type != 'companies' else 'company'} with id {object_id} in this hub.")
        return found

    @mcp.tool()
    def create_note(object_type: ObjectType, object_id: int, body: str) -> dict[str, Any]:
        """Add a note to a contact, company or deal of the connected hub (needs crm.objects.notes.write)."""
        access = _token_for("create_note", {"object_type": object_type})
        body = body.strip()
        if not body or len(body) > 5000:
            raise ToolError("A note needs 1 to 5000 characters of text.")
        note = crm.add_note(_hub(access), object_type, object_id, body, access.subject or "", access.client_id)
        if note is None:
            raise ToolError(f"No {object_type} record with id {object_id} in this hub.")
        return note

    return mcp


def create_app(settings: Settings):
    """The ASGI app: protected resource metadata, and the MCP endpoint behind the bearer gate."""
    crm = data.CRM(settings.database)
    mcp = build_mcp(crm)
    inner = mcp.streamable_http_app(
        streamable_http_path=settings.mcp_path,
        stateless_http=True,
        json_response=True,
        host=settings.host,
    )
    return BearerGate(inner, settings, IntrospectionVerifier(settings))
