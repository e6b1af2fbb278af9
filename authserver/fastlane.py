"""A WSGI lane in front of Flask for the one request that dominates the load: introspection.

Every MCP tool call starts with an introspection, so its cost is the cost of the product. Flask's
request machinery (contexts, proxies, hooks, a Request and a Response object) is most of that cost
once the database work is one statement. This lane answers a well-formed, clean introspection
request with the same code that decides it in the Flask view (resources.authenticate,
store.get_introspection_row, Introspection.payload) and the same response headers; anything it
does not fully understand (another content type, a repeated, overlong or non-printable parameter,
failed authentication, a rate limit reached) goes on to Flask untouched, whose answer (and
error) is the reference. Rate limits are counted on the same counters as the view's. So the lane can make a request faster, never different.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import secrets
import time
from urllib.parse import parse_qsl, unquote

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Flask

from . import limits, store
from .metrics import INTROSPECTIONS, LATENCY, REQUESTS
from .oauth.introspection import HEADERS, INACTIVE, Introspection, authenticate_caller
from .secrets import sha256_hex

INTROSPECT_PATH = "/oauth/introspect"
#: Set in the WSGI environ once the lane has counted a request against its address's limit.
COUNTED = "authserver.introspection_counted"
FORM = "application/x-www-form-urlencoded"
#: Bodies larger than this are not for the lane (a token and a hint fit in far less).
MAX_BODY = 8192
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class FastLane:
    """WSGI middleware: answers clean introspection requests, passes everything else to Flask."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.max_parameter = int(app.config["MAX_PARAMETER_CHARS"])
        self.extra_headers = _security_headers(app)
        self.requests_ok = REQUESTS.labels("oauth.introspect", "POST", "200")
        self.latency = LATENCY.labels("oauth.introspect")
        self.active = INTROSPECTIONS.labels("active")
        self.inactive = INTROSPECTIONS.labels("inactive")
        self.endpoint = Introspection()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == INTROSPECT_PATH and environ.get("REQUEST_METHOD") == "POST":
            started = time.perf_counter()
            answer = self.introspect(environ)
            if answer is not None:
                incoming = environ.get("HTTP_X_REQUEST_ID", "")
                request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
                headers = [*answer, ("X-Request-Id", request_id)]
                start_response("200 OK", headers[1:])
                self.requests_ok.inc()
                self.latency.observe(time.perf_counter() - started)
                return [headers[0]]
        return self.wsgi_app(environ, start_response)

    def introspect(self, environ) -> list | None:
        """[body, *headers] for a request the lane can answer, else None (after restoring the
        body for Flask)."""
        if environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != FORM:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it again if the lane declines
        form = _form(body, self.max_parameter)
        if form is None or not form.get("token"):
            return None
        credential_id, secret = _credentials(environ.get("HTTP_AUTHORIZATION"), form)
        address = environ.get("REMOTE_ADDR") or "127.0.0.1"
        with self.app.app_context():
            # The same limits as the view, in the same order, on the same counters.
            if limits.failures_exceeded(address) is not None:
                return None
            if limits.hit(*limits.INTROSPECTION_PER_IP, address) is not None:
                return None  # the view counts it again, finds the limit reached and answers 429
            environ[COUNTED] = True  # the view must not count this request against the address again
            try:
                caller = authenticate_caller(credential_id, secret)
            except OAuth2Error:
                return None  # Flask answers 401 or 429 (and counts a failure)
            row = store.get_introspection_row(sha256_hex(form["token"]), caller.id)
            payload = self.endpoint.payload(row)
        if payload is INACTIVE:
            self.inactive.inc()
            body = b'{"active": false}'
        else:
            self.active.inc()
            body = json.dumps(payload).encode()
        return [body, *HEADERS.items(), ("Content-Length", str(len(body))), *self.extra_headers]


def _form(body: bytes, max_parameter: int) -> dict | None:
    """The form's parameters, or None when anything about them needs Flask's checks and errors."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    form = dict(pairs)
    if len(form) != len(pairs):
        return None  # a repeated parameter: Flask refuses it with invalid_request
    for key, value in pairs:
        if len(key) > max_parameter or len(value) > max_parameter:
            return None
        if not (_PRINTABLE.match(key) and _PRINTABLE.match(value)):
            return None
    return form


def _credentials(authorization: str | None, form: dict) -> tuple[str | None, str | None]:
    """client_secret_basic (RFC 6749 §2.3.1, as Authlib decodes it) or client_secret_post."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None, None
        credential_id, sep, secret = decoded.partition(":")
        return (unquote(credential_id), unquote(secret)) if sep else (None, None)
    return form.get("client_id"), form.get("client_secret")


def _security_headers(app: Flask) -> list[tuple[str, str]]:
    """The headers web.security_headers adds to every machine response."""
    from .web import machine_headers

    return machine_headers(app)

