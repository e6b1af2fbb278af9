"""Errors: RFC 6749-shaped JSON for machine endpoints, a readable HTML page for people."""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Flask, g, jsonify, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from . import faults
from .metrics import DATABASE_UNAVAILABLE
from .web import answers_in_json

log = logging.getLogger(__name__)

# Short, stable public wording per status; detail stays in the log.
PAGE_TEXT = {
    400: ("This request can't be handled", "Something in the request was missing or not valid."),
    403: ("Not allowed", "You don't have permission to do that."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Not allowed here", "This address doesn't accept that kind of request."),
    413: ("Too much data", "The request was larger than this server accepts."),
    429: ("Too many attempts", "Please wait a little and try again."),
    500: ("Something went wrong", "The server hit an unexpected problem. Please try again."),
}
JSON_ERROR = {
    400: "invalid_request",
    401: "invalid_client",
    404: "invalid_request",
    405: "invalid_request",
    413: "invalid_request",
    415: "invalid_request",
    429: "temporarily_unavailable",
    500: "server_error",
}


def oauth_json_error(status: int, error: str, description: str, headers=None):
    """An RFC 6749 §5.2-shaped JSON error response."""
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_page(status: int, title: str | None = None, message: str | None = None):
    """The HTML error page for people."""
    default_title, default_message = PAGE_TEXT.get(status, PAGE_TEXT[400 if status < 500 else 500])
    return (
        render_template(
            "errors/error.html",
            status=status,
            title=title or default_title,
            message=message or default_message,
            request_id=g.get("request_id"),
        ),
        status,
    )


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        log.info("csrf rejected: %s", exc.description)
        if answers_in_json():
            return oauth_json_error(400, "invalid_request", "The form's CSRF token is missing or invalid.")
        return error_page(
            400,
            "This form has expired",
            "The form was missing its security token or was not sent from this site. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(OAuth2Error)
    def oauth_error(error: OAuth2Error):
        """An Authlib error raised out of a view (views catch only what they render themselves)."""
        status, body, headers = error()
        description = body.get("error_description", "")
        if answers_in_json():
            return oauth_json_error(status, body["error"], description,
                                    {k: v for k, v in headers if k.lower() != "content-type"})
        return error_page(status, message=description or None)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        headers = dict(exc.get_response().headers) if status in (405, 429) else {}
        headers.pop("Content-Type", None)
        headers.pop("Content-Length", None)
        # Our own abort(400, "...") messages say what was wrong; werkzeug's defaults don't.
        own = exc.description if exc.description != type(exc).description else None
        if status == 429:  # Flask-Limiter's description is the limit itself ("30 per 1 minute")
            own = f"Too many requests (limit: {own}); retry after the time in Retry-After." if own else None
        if answers_in_json():
            description = own or {
                413: "The request body is too large.",
                429: "Too many requests; retry after the time in Retry-After.",
                404: "Unknown endpoint.",
                405: "Method not allowed on this endpoint.",
            }.get(status, PAGE_TEXT.get(status, PAGE_TEXT[400])[1])
            return oauth_json_error(status, JSON_ERROR.get(status, "invalid_request"), description, headers)
        body, status = error_page(status, message=own if status != 429 else None)
        return body, status, headers

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        if faults.database_unavailable(exc):
            return database_unavailable(exc)
        log.exception("unhandled error (request id %s)", g.get("request_id"))
        if answers_in_json():
            return oauth_json_error(500, "server_error", "Unexpected server error.")
        return error_page(500)


def database_unavailable(exc: Exception):
    """The database is away, slow or out of connections (faults.database_unavailable): an expected
    fault, so a 503 with Retry-After and one log line, no traceback. JSON for programs, a page for
    people."""
    DATABASE_UNAVAILABLE.inc()
    cause = getattr(exc, "orig", None) or exc
    log.warning("database unavailable (request id %s): %s: %s", g.get("request_id"), type(cause).__name__,
                str(cause).strip().splitlines()[0][:200] if str(cause).strip() else "")
    headers = {"Retry-After": str(faults.RETRY_AFTER_SECONDS)}
    g.setdefault("user", None)  # the page must not ask the database who is signed in (auth.current_user)
    if answers_in_json():
        return oauth_json_error(503, faults.UNAVAILABLE["error"], faults.UNAVAILABLE["error_description"], headers)
    body, status = error_page(503, "Temporarily unavailable",
                              "This service is briefly unavailable. Please try again in a moment.")
    return body, status, headers
