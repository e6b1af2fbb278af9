"""A WSGI lane in front of Flask for the requests that dominate the load: introspection (every MCP
tool call), the token endpoint (every connected client, refreshing for as long as it stays) and
open registration (hosted AI clients register on every connection).

Once the database work is a statement or a few, Flask's request machinery (hooks, routing, a
Request and a Response object, the view's decorators) is most of the cost. The lane answers a
well-formed, clean request with the same code that decides it in the views (for introspection
resources.authenticate, store.get_introspection_row and Introspection.payload; for tokens the
Authlib grants of oauth/grants.py, unchanged, and for a plain refresh grants.LeanRefresh, which
applies the refresh grant's rules through the same functions in two statements; for registration
the view's endpoint, oauth/registration.py ClientRegistration) and the same response headers.
Anything it does not fully understand (another content type, a query string, a repeated, overlong
or non-printable parameter, failed authentication, a rate limit reached, an error, a replay) goes
on to Flask untouched, whose answer is the reference; what the lane wrote is rolled back first. Rate limits are counted on the same
counters as the views'. So the lane can make a request faster, never different.
"""

from __future__ import annotations

import io
import json
import time
from urllib.parse import parse_qsl

from authlib.integrations.flask_oauth2 import client_authenticated
from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Flask, g
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import faults, limits, resources, web
from .errors import database_unavailable
from .extensions import db
from .metrics import LATENCY, REQUESTS
from .oauth.cimd import is_url_client_id
from .oauth.credentials import basic_credentials
from .oauth.introspection import (
    HEADERS,
    Introspection,
    authenticate_caller,
    caller_credentials,
)
from .oauth.grants import AuthorizationCodeGrant, LeanExchange, LeanRefresh, RefreshTokenGrant
from .oauth.pkce import S256CodeChallenge
from .oauth.registration import WSGIRegistrationRequest
from .oauth.resource import ResourceIndicator
from .oauth.revocation import required_token
from .oauth.server import count_token_client, refuse_repeated_parameters, server
from .oauth.tokens import IssuingFor
from .web import CORS_HEADERS, machine_headers

INTROSPECT_PATH = "/oauth/introspect"
TOKEN_PATH = "/oauth/token"
REGISTER_PATH = "/oauth/register"
#: Grants the lane completes (both are Authlib grants of oauth/grants.py, run unchanged).
LANE_GRANT_TYPES = ("authorization_code", "refresh_token")
#: The request body, kept in the environ so that Flask can read it again when the lane declines.
BODY = "authserver.body"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
#: JSON bodies larger than this are not for the lane (client metadata fits in far less).
MAX_JSON_BODY = 65536
#: Bodies larger than this are not for the lane (a token and a hint fit in far less).
MAX_BODY = 8192


class FastLane:
    """WSGI middleware: answers clean introspection and token requests, passes the rest to Flask."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.max_parameter = int(app.config["MAX_PARAMETER_CHARS"])
        self.extra_headers = machine_headers(app)  # what web.security_headers adds to every response
        self.lanes = {
            INTROSPECT_PATH: (self.introspect, self.form, "200 OK", REQUESTS.labels("oauth.introspect", "POST", "200"),
                              LATENCY.labels("oauth.introspect")),
            TOKEN_PATH: (self.token, self.form, "200 OK", REQUESTS.labels("oauth.token", "POST", "200"),
                         LATENCY.labels("oauth.token")),
            REGISTER_PATH: (self.register, self.json_body, "201 CREATED",
                            REQUESTS.labels("oauth.register", "POST", "201"), LATENCY.labels("oauth.register")),
        }
        self.endpoint = Introspection()

    def __call__(self, environ, start_response):
        lane = self.lanes.get(environ.get("PATH_INFO"))
        if lane is not None and environ.get("REQUEST_METHOD") == "POST":
            answer, read, status, requests_ok, latency = lane
            started = time.perf_counter()
            data = read(environ)
            request_id = web.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
            try:
                response = answer(environ, data, request_id) if data is not None else None
            except Exception as error:
                if not faults.database_unavailable(error):
                    raise
                return self.unavailable(error, environ, request_id, start_response)
            if data is not None and response is None:
                environ["wsgi.input"] = io.BytesIO(environ[BODY])  # Flask reads the body afresh
            if response is not None:
                body, headers = response
                start_response(status, [*headers, ("Content-Length", str(len(body))), *self.extra_headers,
                                        ("X-Request-Id", request_id)])
                requests_ok.inc()
                latency.observe(time.perf_counter() - started)
                return [body]
        return self.wsgi_app(environ, start_response)

    def unavailable(self, error: Exception, environ, request_id: str, start_response):
        """The 503 the view would answer (errors.database_unavailable), answered here: handing the
        request to Flask would make it wait on the same database a second time."""
        with self.app.request_context(environ):
            g.request_id = request_id
            response = database_unavailable(error)
        start_response(response.status, [*response.headers.items(), *self.extra_headers,
                                          ("X-Request-Id", request_id)])
        return [response.get_data()]

    def form(self, environ) -> dict | None:
        """The clean form parameters of a request the lane may take, else None (after restoring
        the body for Flask)."""
        if environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != FORM:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY:
            return None
        body = environ[BODY] = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, should the lane not take the request
        return _form(body, self.max_parameter)

    def json_body(self, environ) -> bytes | None:
        """The body of a JSON request the lane may take (no query string, no credentials, within
        the registration size limit), else None (after restoring the body for Flask)."""
        if environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != JSON:
            return None
        if environ.get("QUERY_STRING") or environ.get("HTTP_AUTHORIZATION"):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= min(MAX_JSON_BODY, int(self.app.config["REGISTRATION_MAX_BYTES"])):
            return None
        body = environ[BODY] = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    def register(self, environ, body: bytes, request_id: str):
        """(body, headers) of a successful open registration (RFC 7591 §3.2.1), made by the view's
        own endpoint (oauth/registration.py ClientRegistration) without Flask's dispatch, or None:
        Flask answers anything else (a refusal, a limit reached, another registration mode)."""
        if self.app.config["REGISTRATION_MODE"] != "open":
            return None
        address = environ.get("REMOTE_ADDR") or "127.0.0.1"
        # An app context, no request context: the endpoint reads the request from the environ
        # (registration.WSGIRegistrationRequest), never Flask's request, session or URL adapter,
        # and building them, then tearing them down, was about a fifth of a registration.
        with self.app.app_context():
            g.request_id = request_id
            if limits.registration_refused(address) is not None:
                return None  # the view counts it again, finds the limit reached and answers 429
            environ[limits.ADDRESS_COUNTED] = True
            endpoint = server.get_endpoint("client_registration")
            try:
                data = self.app.json.loads(body)  # what the view's request.get_json() does
            except ValueError:
                return None  # Flask answers 400
            try:
                status, answer, headers = endpoint(WSGIRegistrationRequest(environ, body, data, request_id))
                if status != 201:
                    raise _Declined
                # SQLite: the session's statements (PostgreSQL: none, and no session is made to ask).
                if db.session.registry.has() and db.session().in_transaction():
                    db.session.commit()
            except (OAuth2Error, HTTPException, _Declined, SQLAlchemyError,
                    db.engine.dialect.loaded_dbapi.Error) as error:
                try:
                    db.session.rollback()
                except (SQLAlchemyError, db.engine.dialect.loaded_dbapi.Error):
                    db.session.close()
                if faults.database_unavailable(error) and not faults.connection_dropped(error):
                    raise
                return None
        return json.dumps(answer).encode(), [*headers, *CORS_HEADERS]

    def introspect(self, environ, form: dict, request_id: str):
        """(body, headers) of an introspection (RFC 7662) decided as the view decides it, or None."""
        try:
            token = required_token(form)
        except OAuth2Error:
            return None
        credential_id, secret = caller_credentials(environ.get("HTTP_AUTHORIZATION"), form)
        address = environ.get("REMOTE_ADDR") or "127.0.0.1"
        with self.app.app_context():
            # The same limits as the view, in the same order, on the same counters, in one round
            # trip: the address's failures and introspections, then (once the credentials are
            # proven) the resource server's own. A caller this process remembers is proven
            # without the database or a slow hash (resources.known_caller), so its limit joins
            # the others; any other caller is authenticated after them, as the view does.
            caller = resources.known_caller(credential_id, secret)
            checks = [("test", *limits.FAILURES, address), ("hit", *limits.INTROSPECTION_PER_IP, address)]
            if caller is not None:
                checks.append(("hit", *limits.INTROSPECTION_PER_RESOURCE, caller.credential_id))
            refused = limits.charge(*checks)
            if refused is not None and refused < 2:
                return None  # the view counts it again, finds the limit reached and answers 429
            environ[limits.ADDRESS_COUNTED] = True  # the view must not count this request against the address again
            if refused is not None:
                return None  # the resource server's own limit: the view answers 429
            if caller is None:
                try:
                    caller = authenticate_caller(credential_id, secret)
                except OAuth2Error:
                    return None  # Flask answers 401 or 429 (and counts a failure)
            return self.endpoint.answer(caller, token), HEADERS.items()

    def token(self, environ, form: dict, request_id: str):
        """(body, headers) of a successful code exchange or refresh, made by the same Authlib
        grants as the view's (or, for a plain refresh, LeanRefresh), or None. Any error, replay or
        unusual client authentication rolls back whatever the lane did and lets Flask handle the
        request from the start: the database ends as if only Flask had seen it. The grants' Authlib
        hooks run here as in the view; those that ran for a request the lane passes on run again in
        Flask, as its checks do."""
        if form.get("grant_type") not in LANE_GRANT_TYPES or "client_assertion" in form:
            return None
        if is_url_client_id(form.get("client_id") or ""):
            return None  # metadata-document clients may fetch their document: Flask's path
        try:
            basic = basic_credentials(environ.get("HTTP_AUTHORIZATION"))
        except ValueError:
            return None  # malformed credentials (the view answers 401)
        if environ.get("HTTP_AUTHORIZATION") and basic is None:
            return None  # another scheme
        if basic is not None and is_url_client_id(basic[0]):
            return None  # a metadata-document client, as above
        address = environ.get("REMOTE_ADDR") or "127.0.0.1"
        with self.app.app_context():
            g.request_id = request_id
            # The view's address limits, in one round trip (the client's own follows its authentication).
            if limits.charge(("test", *limits.FAILURES, address), ("hit", *limits.TOKEN_PER_IP, address)) is not None:
                return None
            environ[limits.ADDRESS_COUNTED] = True
            lean = LEAN[form["grant_type"]]
            if _lean_allowed(lean):
                answered = self.lean(lean(form, basic), environ, address, request_id)
                if answered is not None:
                    return answered
            return self.grant(environ, form, request_id)

    def lean(self, lean, environ, address: str, request_id: str):
        """(body, headers) of a plain code exchange or refresh made by grants.LeanTokenRequest, or
        None for the grant's path. A database error it meets is handled as the grant's path
        handles one (it wrote nothing)."""
        try:
            method = lean.authenticate()
            if method is None:
                return None
            try:
                count_token_client(environ, lean.client.client_id, method, address)
            except OAuth2Error:
                return None  # the grant's path finds the limit reached too, and answers 429
            token = lean.issue(environ.get("REMOTE_ADDR"), request_id)  # the address Flask would record
        except (SQLAlchemyError, db.engine.dialect.loaded_dbapi.Error) as error:
            if faults.database_unavailable(error) and not faults.connection_dropped(error):
                raise
            return None
        if token is None:
            return None
        return json.dumps(token).encode(), [*lean.TOKEN_RESPONSE_HEADER, *CORS_HEADERS]

    def grant(self, environ, form: dict, request_id: str):
        """(body, headers) of a code exchange or refresh made by the Authlib grant, or None."""
        with self.app.request_context(environ):  # in the lane's app context, whose g has the request id
            try:
                request = server.create_oauth2_request(None)
                grant = server.get_token_grant(request)
                grant.validate_token_request()
                if getattr(request, "replayed_response", None) is not None:
                    raise _Declined
                status, body, headers = grant.create_token_response()
                if status != 200:
                    raise _Declined
                db.session.commit()
            except (OAuth2Error, _Declined, SQLAlchemyError, db.engine.dialect.loaded_dbapi.Error) as error:
                try:
                    db.session.rollback()
                except (SQLAlchemyError, db.engine.dialect.loaded_dbapi.Error):
                    db.session.close()
                if faults.database_unavailable(error) and not faults.connection_dropped(error):
                    raise  # the database is away or hung: answered 503 at once
                # A connection the database dropped: Flask starts again on a fresh one.
                return None
        return json.dumps(body).encode(), [*headers, *CORS_HEADERS]


#: The lean path of each grant the lane completes, with its grant class and the extensions whose
#: work it does.
LEAN = {LeanRefresh.GRANT_TYPE: LeanRefresh, LeanExchange.GRANT_TYPE: LeanExchange}
_LEAN_DOES = {
    LeanRefresh: (RefreshTokenGrant, [IssuingFor]),
    LeanExchange: (AuthorizationCodeGrant, [S256CodeChallenge, ResourceIndicator, IssuingFor]),
}


def _lean_allowed(lean) -> bool:
    """Whether a lean path may answer for its grant: it does the work of the grant's own
    extensions and sends no Authlib signal, so it stands aside while another extension is
    registered on the grant or anything listens to client authentication."""
    grant_cls, extensions = server.token_grant_extensions(lean.GRANT_TYPE)
    expected_cls, expected = _LEAN_DOES[lean]
    return (grant_cls is expected_cls and len(extensions) == len(expected)
            and {type(e) for e in extensions} == set(expected) and not client_authenticated.receivers)


class _Declined(Exception):
    """The lane leaves this request to Flask."""


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
    try:
        form = refuse_repeated_parameters(pairs)
    except OAuth2Error:
        return None  # Flask refuses it with invalid_request
    for key, value in pairs:
        if len(key) > max_parameter or len(value) > max_parameter:
            return None
        if not (web.OAUTH_CHARS.match(key) and web.OAUTH_CHARS.match(value)):
            return None
    return form
