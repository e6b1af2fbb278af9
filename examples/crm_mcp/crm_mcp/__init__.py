"""crm_mcp: an example CRM MCP server whose tools are protected by authserver-issued bearer tokens."""
