"""Per-request plumbing shared by every page: request ids and security headers."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from flask import Flask, abort, g, request

from .oauth.errors import safe_description

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_OAUTH_CHARS = re.compile(r"^[\x20-\x7e]*$")

# No scripts at all; styles from our own origin; never framed (clickjacking).
# No form-action directive: browsers apply it to the redirect that follows the consent POST,
# which must be allowed to reach the client's registered redirect URI.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def init_app(app: Flask) -> None:
    @app.before_request
    def assign_request_id():
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)

    @app.before_request
    def check_parameters():
        # No parameter has a use for NUL, and PostgreSQL cannot store it in text; none of ours
        # (tokens, client assertions, state) needs kilobytes. Refuse both here with a clear 400
        # rather than fail deep in a query or echo a huge state back in a redirect.
        limit = app.config["MAX_PARAMETER_CHARS"]
        protocol = request.path.startswith("/oauth/")
        sources = [request.args]
        if request.mimetype == "application/x-www-form-urlencoded":
            sources.append(request.form)
        for source in sources:
            for key, values in source.lists():
                if "\x00" in key or any("\x00" in v for v in values):
                    abort(400, "Parameters must not contain NUL characters.")
                if len(key) > limit or any(len(v) > limit for v in values):
                    abort(400, f"Parameter '{safe_description(key, 40)}' is too long (at most {limit} characters).")
                # Every OAuth parameter is printable ASCII (RFC 6749 Appendix A); anything else
                # is refused here, before it can reach an error message or a query.
                if protocol and not (_OAUTH_CHARS.match(key) and all(_OAUTH_CHARS.match(v) for v in values)):
                    abort(400, f"Parameter '{safe_description(key, 40)}' must contain only printable ASCII characters.")

    # HSTS only when the issuer is https (browsers ignore it over http anyway, and a local http
    # issuer must keep working). No includeSubDomains: we don't know what runs on names under the
    # issuer's host; a deployment that does can add it at its proxy.
    hsts = "max-age=31536000" if urlsplit(app.config["ISSUER"]).scheme == "https" else None

    @app.after_request
    def security_headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if hsts:
            response.headers["Strict-Transport-Security"] = hsts
        # Codes and tokens never leak to third parties through the Referer header.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        return response
