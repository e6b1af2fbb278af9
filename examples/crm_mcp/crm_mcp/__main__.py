"""Start the example CRM MCP server: `python -m crm_mcp` (or the `crm-mcp` script)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from .config import ConfigError, from_env
from .server import create_app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = from_env()
    except ConfigError as exc:
        sys.exit(f"crm-mcp: {exc}")
    print(f"CRM MCP server on {settings.resource} (authorization server {settings.issuer})", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
