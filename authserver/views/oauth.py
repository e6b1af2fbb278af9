"""Machine endpoints: token, registration (RFC 7591/7592), introspection, revocation."""

from __future__ import annotations

from flask import Blueprint, request
from flask_limiter.util import get_remote_address

from .. import limits
from ..errors import oauth_json_error
from ..extensions import csrf, db
from ..oauth.credentials import basic_credentials
from ..oauth.server import refuse_repeated_parameters, server
from ..web import CORS_HEADERS

bp = Blueprint("oauth", __name__, url_prefix="/oauth")
csrf.exempt(bp)

# Browser-based MCP clients call these cross-origin (web.CORS_HEADERS).
CORS_ENDPOINTS = {"oauth.token", "oauth.register", "oauth.revoke", "oauth.client_configuration"}


@bp.after_request
def cors(response):
    if request.endpoint in CORS_ENDPOINTS:
        for key, value in CORS_HEADERS:
            response.headers[key] = value
    return response


#: Endpoints that authenticate clients or resource servers (see limits.FAILURES).
AUTHENTICATING_ENDPOINTS = {"oauth.token", "oauth.introspect", "oauth.revoke"}


@bp.before_request
def refuse_addresses_that_keep_failing():
    if request.method == "POST" and request.endpoint in AUTHENTICATING_ENDPOINTS:
        retry_after = limits.failures_exceeded(get_remote_address())
        if retry_after is not None:
            return oauth_json_error(429, "temporarily_unavailable",
                                    "Too many failed client authentications from this address; retry after the time "
                                    "in Retry-After.", {"Retry-After": str(retry_after)})
    return None


@bp.after_request
def count_client_auth_failures(response):
    limits.count_client_auth_failure(get_remote_address())
    return response


@bp.before_request
def refuse_malformed_basic_credentials():
    """Basic credentials must be base64 of UTF-8 `id:secret` (RFC 6749 §2.3.1); Authlib would
    fail on anything else deep inside client authentication, so answer 401 here."""
    try:
        basic_credentials(request.headers.get("Authorization"))
    except ValueError:
        limits.note_client_auth_failure()
        return oauth_json_error(401, "invalid_client", "The Authorization header is not valid Basic credentials.",
                                {"WWW-Authenticate": 'Basic realm="authserver"'})
    return None


FORM = "application/x-www-form-urlencoded"


@bp.before_request
def refuse_repeated_form_parameters():
    """Repeated parameters are refused here, before any machine endpoint runs (the rule:
    oauth/server.py refuse_repeated_parameters); endpoints that take JSON have none."""
    if request.mimetype == FORM:
        refuse_repeated_parameters(list(request.form.items(multi=True)))


def _require_form():
    """RFC 6749 §3.2 / RFC 7662 §2.1 / RFC 7009 §2.1: parameters come form-encoded in the body."""
    if request.method == "POST" and request.mimetype != FORM:
        return oauth_json_error(400, "invalid_request", f"Send the parameters in the body as {FORM}.")
    return None


def _committed(response):
    """One transaction per request: what the endpoint did (including revocations made while
    refusing a replay) is committed at the view boundary. A request whose work needed no
    transaction (a registration on PostgreSQL is one statement in autocommit) has nothing to
    commit, and skips the session's begin-and-commit of nothing."""
    session = db.session()
    if session.in_transaction():
        session.commit()
    return response


# Route limits key on the caller's address: before authentication nothing else is known. The
# per-client and per-resource-server limits are counted after authentication (oauth/server.py,
# oauth/introspection.py).
@bp.route("/token", methods=["POST", "OPTIONS"])
def token():
    if request.method == "OPTIONS":
        return "", 204
    refused = _per_address_limit(limits.TOKEN_PER_IP)
    return refused or _require_form() or _committed(server.create_token_response())


def _per_address_limit(limit):
    """The route's per-address limit, counted explicitly (not by a decorator) so that the WSGI
    lane counts on the same counter; a request the lane counted and passed on is not counted
    twice. A 429 response, or None."""
    if request.environ.get(limits.ADDRESS_COUNTED):
        return None
    retry_after = limits.hit(*limit, get_remote_address())
    return _too_many(retry_after) if retry_after is not None else None


def _too_many(retry_after: int):
    return oauth_json_error(429, "temporarily_unavailable", "Too many requests; retry after the time in Retry-After.",
                            {"Retry-After": str(retry_after)})


@bp.route("/register", methods=["POST", "OPTIONS"])
def register():
    if request.method == "OPTIONS":
        return "", 204
    if not request.environ.get(limits.ADDRESS_COUNTED):  # the WSGI lane counted it already
        retry_after = limits.registration_refused(get_remote_address())
        if retry_after is not None:
            return _too_many(retry_after)
    return _committed(server.create_endpoint_response("client_registration"))


@bp.route("/register/<path:client_id>", methods=["GET", "PUT", "DELETE", "OPTIONS"])
def client_configuration(client_id):
    if request.method == "OPTIONS":
        return "", 204
    return _committed(server.create_endpoint_response("client_configuration"))


@bp.route("/introspect", methods=["POST"])
def introspect():
    refused = _per_address_limit(limits.INTROSPECTION_PER_IP) or _require_form()
    if refused is not None:
        return refused
    # A read: no session, no transaction, nothing to commit (see oauth/introspection.py).
    return server.get_endpoint("introspection").respond(request)


@bp.route("/revoke", methods=["POST", "OPTIONS"])
def revoke():
    if request.method == "OPTIONS":
        return "", 204
    return _require_form() or _committed(server.create_endpoint_response("revocation"))
