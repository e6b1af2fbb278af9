"""Structured logging: one JSON object per line, each carrying the request id."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from flask import Flask, g, has_app_context


class RequestIdFilter(logging.Filter):
    """Stamp every record with the current request id ("-" outside a request). The WSGI lane
    (fastlane.py) answers some requests in an app context alone, with the id on `g` as well."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_app_context() else "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def init_app(app: Flask) -> None:
    """Send the `authserver` loggers to stderr as JSON lines (or plain text if LOG_FORMAT=text)."""
    logger = logging.getLogger("authserver")
    logger.setLevel(app.config["LOG_LEVEL"])
    if any(getattr(h, "_authserver", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._authserver = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    if app.config["LOG_FORMAT"] == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
