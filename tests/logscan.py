"""Scanning log output for credentials: what authserver issues carries a recognisable prefix
(authserver/secrets.py), test passwords are known, and JWTs start with eyJ.

`Recorder` keeps every formatted record of the loggers it is attached to; tests/conftest.py
attaches one for the whole run and fails the run if any line holds a credential."""

from __future__ import annotations

import logging
import re

from authserver.secrets import (
    ACCESS_TOKEN_PREFIX,
    ADMIN_SECRET_PREFIX,
    AUTHORIZATION_CODE_PREFIX,
    CLIENT_SECRET_PREFIX,
    REFRESH_TOKEN_PREFIX,
    REGISTRATION_TOKEN_PREFIX,
    RESOURCE_SECRET_PREFIX,
)

_PREFIXES = (ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, AUTHORIZATION_CODE_PREFIX, CLIENT_SECRET_PREFIX,
             REGISTRATION_TOKEN_PREFIX, RESOURCE_SECRET_PREFIX, ADMIN_SECRET_PREFIX)
#: An issued credential (prefix + at least 20 base64url characters, not inside a longer
#: base64url run: a random client_id may hold "asa_" in its middle), a JWT, or a test password.
CREDENTIAL = re.compile(
    r"(?<![A-Za-z0-9_-])(?:" + "|".join(re.escape(p) for p in sorted(_PREFIXES, key=len, reverse=True)) + r")[A-Za-z0-9_-]{20,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}"
    r"|correct horse battery|demo-password"
)
#: The loggers whose output an operator would see.
LOGGERS = ("", "authserver", "werkzeug", "authlib", "gunicorn", "uvicorn", "mcp", "httpx2")


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception:  # a record with bad arguments: keep what we can
            line = str(record.msg)
        if record.exc_info:
            line += " " + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {line}")

    def attach(self) -> "Recorder":
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def detach(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def leaks(self) -> list[str]:
        return [line for line in self.lines if CREDENTIAL.search(line)]
