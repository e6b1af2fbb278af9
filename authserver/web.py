"""Per-request plumbing shared by every page: request ids, who a request is for, parameter checks,
security headers, and the operator's product (name, logo) on every page."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, has_request_context, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .config import image_origin
from .oauth.errors import safe_description

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
#: Every OAuth parameter is printable ASCII (RFC 6749 Appendix A).
OAUTH_CHARS = re.compile(r"^[\x20-\x7e]*$")


def content_security_policy(logo_origin: str | None = None) -> str:
    """The pages' Content-Security-Policy: no scripts at all; styles from our own origin; images
    from our own origin and the operator's logo origin (PRODUCT_LOGO_URL), nothing wider; never
    framed (clickjacking). No form-action directive: browsers apply it to the redirect that follows
    the consent POST, which must be allowed to reach the client's registered redirect URI."""
    images = "'self' data:" + (f" {logo_origin}" if logo_origin else "")
    return (
        f"default-src 'none'; style-src 'self'; img-src {images}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


@dataclass(frozen=True)
class Product:
    """The operator's product as every page shows it: name, logo and home link (checked at start-up
    by config.check_product)."""

    name: str
    logo_url: str | None
    home_url: str | None

    @classmethod
    def from_config(cls, config) -> "Product":
        return cls(config["PRODUCT_NAME"], config["PRODUCT_LOGO_URL"], config["PRODUCT_HOME_URL"])


#: Blueprints that answer programs: their errors are RFC 6749 JSON (errors.py); every other
#: blueprint serves people. Those that speak OAuth take printable ASCII parameters only.
MACHINE_BLUEPRINTS = frozenset({"oauth", "well_known", "admin_api"})
OAUTH_BLUEPRINTS = frozenset({"oauth", "well_known", "authorize"})


def routed_blueprint() -> str | None:
    """The blueprint of the endpoint the request's path routes to, whatever the method (a 405 is
    the endpoint's own error); for a path that routes nowhere, the blueprint whose URL prefix it
    is under (an unknown /.well-known/ document is a 404 for a program)."""
    if request.url_rule is not None:
        return request.url_rule.endpoint.rpartition(".")[0] or None
    error = request.routing_exception
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        try:
            endpoint, _ = current_app.create_url_adapter(request).match(method=next(iter(error.valid_methods)))
        except HTTPException:
            return None
        return endpoint.rpartition(".")[0] or None
    for name, blueprint in current_app.blueprints.items():
        prefix = blueprint.url_prefix
        if prefix and (request.path == prefix or request.path.startswith(prefix.rstrip("/") + "/")):
            return name
    return None


def is_machine_request() -> bool:
    """Whether a program rather than a person is on the other end (the one rule: errors.py answers
    programs in RFC 6749 JSON and people with a page)."""
    return routed_blueprint() in MACHINE_BLUEPRINTS


def asks_for_json() -> bool:
    """Whether the caller prefers JSON to a page (a program on a page's path, such as mcp-remote
    probing /oauth/authorize with Accept: application/json)."""
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == "application/json"


def answers_in_json() -> bool:
    """The one rule for how an error is answered: RFC 6749 JSON to a program (a machine endpoint,
    or a page's path asked for JSON), a readable page to a person."""
    return is_machine_request() or asks_for_json()


def _plainly_clean(source, limit: int) -> bool:
    """Whether every key and value of `source` (a MultiDict) is printable ASCII of at most `limit`
    characters: what check_parameters accepts for any blueprint, decided in a few string methods
    over the whole; False sends it to the per-parameter checks, which give the exact error."""
    texts = [*source.keys(), *(value for _, value in source.items(multi=True))]
    if not texts:
        return True
    joined = "".join(texts)
    return joined.isascii() and joined.isprintable() and max(map(len, texts)) <= limit


def request_id(incoming: str) -> str:
    """The caller's X-Request-Id when it is a sane one (so logs line up across services), else new."""
    return incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)


class App(Flask):
    """Flask, minus two costs it pays on every request for nothing here (measured: about 10% of a
    plain request): checking whether each hook and view is a coroutine, and building the session
    cookie's signing serializer anew."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync: dict = {}
        self.session_interface = CachedSerializerSessionInterface()

    def ensure_sync(self, func):
        try:
            return self._sync[func]
        except KeyError:
            self._sync[func] = synced = super().ensure_sync(func)
            return synced
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the serializer built once per secret key, and each
    cookie's signature checked and its JSON decoded once per worker rather than on every request
    (a signed-in person's browser sends the same cookie until the session changes)."""

    _serializers: dict = {}
    #: Cookies whose signature was verified: (serializer, cookie) -> (data, signing time). Only
    #: the signature's verdict and the decoding are remembered; the age is checked on every
    #: request, as itsdangerous checks it, and a new secret key makes a new serializer (so no
    #: cookie verified under the old one is found). Emptied when full: a worker sees few live
    #: sessions, and a miss only costs the verification it saves.
    _verified: dict = {}
    VERIFIED_MAX = 4096
    #: Values a cached session may hold: immutable, so every request's copy of the dict is its own.
    _SCALARS = (str, int, float, bool, type(None))

    def get_signing_serializer(self, app: Flask):
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            if serializer is not None:
                self._serializers = {key: serializer}
        return serializer

    def open_session(self, app: Flask, request):
        """Flask's open_session (an unsigned, tampered or expired cookie opens an empty session),
        answering a cookie already verified from what its verification found."""
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        verified = self._verified.get((serializer, cookie))
        if verified is not None:
            data, signed_at = verified
            # itsdangerous' rule (TimestampSigner.unsign): too old, or signed in the future.
            if 0 <= int(time.time()) - signed_at <= max_age:
                return self.session_class(data)
        try:
            data, signed = serializer.loads(cookie, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        if isinstance(data, dict) and all(type(value) in self._SCALARS for value in data.values()):
            if len(self._verified) >= self.VERIFIED_MAX:
                self._verified.clear()
            self._verified[(serializer, cookie)] = (data, int(signed.timestamp()))
        return self.session_class(data)


class _KeyedTimestampSigner(TimestampSigner):
    """itsdangerous' TimestampSigner, deriving its key from the secret once rather than on every
    signature (the derivation is a hash of the salt and the secret: the same bytes each time)."""

    def derive_key(self, secret_key=None):
        if secret_key is not None:
            return super().derive_key(secret_key)
        key = self.__dict__.get("_derived_key")
        if key is None:
            key = self._derived_key = super().derive_key()
        return key


class CsrfTokens:
    """Flask-WTF's generate_csrf (the same session token, signed the same way: its
    URLSafeTimedSerializer with salt "wtf-csrf-token", so its validate_csrf checks it as before),
    with the serializer and its signing key made once per secret key and the signed payload once
    per session token, rather than all three on every page (about a tenth of a consent page)."""

    SALT = "wtf-csrf-token"

    def __init__(self):
        self._signing: dict = {}
        self._payloads: dict[str, bytes] = {}

    def _signer(self, secret_key):
        key = (type(secret_key), secret_key)
        signing = self._signing.get(key)
        if signing is None:
            serializer = URLSafeTimedSerializer(secret_key, salt=self.SALT)
            signing = (serializer, _KeyedTimestampSigner(serializer.secret_keys, salt=self.SALT,
                                                         **serializer.signer_kwargs))
            self._signing = {key: signing}
        return signing

    def _dumps(self, serializer, signer, raw) -> str:
        """serializer.dumps(raw), its payload remembered for a string token."""
        if type(raw) is not str:
            return serializer.dumps(raw)
        payload = self._payloads.get(raw)
        if payload is None:
            if len(self._payloads) >= 4096:
                self._payloads.clear()
            payload = self._payloads[raw] = serializer.dump_payload(raw)
        return signer.sign(payload).decode("utf-8")

    def __call__(self, secret_key=None, token_key=None) -> str:
        """generate_csrf(secret_key, token_key): the request's signed token (one per request)."""
        config = current_app.config  # the settings read as Flask-WTF reads them
        if secret_key is None:
            secret_key = config.get("WTF_CSRF_SECRET_KEY", current_app.secret_key)
        field_name = token_key if token_key is not None else config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        if secret_key is None or field_name is None:
            return generate_csrf(secret_key, token_key)  # Flask-WTF's own error
        if field_name not in g:
            serializer, signer = self._signer(secret_key)
            if field_name not in session:
                session[field_name] = hashlib.sha1(os.urandom(64)).hexdigest()
            try:
                token = self._dumps(serializer, signer, session[field_name])
            except TypeError:
                session[field_name] = hashlib.sha1(os.urandom(64)).hexdigest()
                token = self._dumps(serializer, signer, session[field_name])
            setattr(g, field_name, token)
        return g.get(field_name)


csrf_token = CsrfTokens()


#: Browser-based MCP clients call the machine endpoints cross-origin; they carry no cookies, so
#: any origin may (views/oauth.py CORS_ENDPOINTS, and the WSGI lane).
CORS_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
    ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
    ("Access-Control-Max-Age", "86400"),
]


def machine_headers(app: Flask) -> list[tuple[str, str]]:
    """Headers on every response, pages and machine endpoints alike."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        # Codes and tokens never leak to third parties through the Referer header.
        ("Referrer-Policy", "no-referrer"),
    ]
    # HSTS only when the issuer is https (browsers ignore it over http anyway, and a local http
    # issuer must keep working). No includeSubDomains: we don't know what runs on names under the
    # issuer's host; a deployment that does can add it at its proxy.
    if urlsplit(app.config["ISSUER"]).scheme == "https":
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


def init_app(app: Flask) -> None:
    @app.before_request
    def assign_request_id():
        g.request_id = request_id(request.headers.get("X-Request-Id", ""))

    @app.before_request
    def check_parameters():
        # No parameter has a use for NUL, and PostgreSQL cannot store it in text; none of ours
        # (tokens, client assertions, state) needs kilobytes. Refuse both here with a clear 400
        # rather than fail deep in a query or echo a huge state back in a redirect.
        limit = app.config["MAX_PARAMETER_CHARS"]
        protocol = routed_blueprint() in OAUTH_BLUEPRINTS
        sources = [request.args]
        if request.mimetype == "application/x-www-form-urlencoded":
            sources.append(request.form)
        for source in sources:
            if _plainly_clean(source, limit):
                continue
            for key, values in source.lists():
                if "\x00" in key or any("\x00" in v for v in values):
                    abort(400, "Parameters must not contain NUL characters.")
                if len(key) > limit or any(len(v) > limit for v in values):
                    abort(400, f"Parameter '{safe_description(key, 40)}' is too long (at most {limit} characters).")
                # Every OAuth parameter is printable ASCII (RFC 6749 Appendix A); anything else
                # is refused here, before it can reach an error message or a query.
                if protocol and not (OAUTH_CHARS.match(key) and all(OAUTH_CHARS.match(v) for v in values)):
                    abort(400, f"Parameter '{safe_description(key, 40)}' must contain only printable ASCII characters.")

    common = machine_headers(app)
    csp = content_security_policy(image_origin(app.config["PRODUCT_LOGO_URL"]))
    product = Product.from_config(app.config)

    # The links every page's frame carries (base.html), built once per script root: url_for
    # builds the same path for the same endpoint each time, at a noticeable share of a page.
    frames: dict[str, dict[str, str]] = {}

    # templates/oauth/_client.html's macro, for the consent page and the sign-in page in front of
    # it, as a global rather than imported by each: Jinja computes, on every render of a page that
    # imports from another template, whether the two templates' globals differ (a few percent of
    # a consent page); the macro module is the one the import gave (made once, without context).
    def client_identity(identity):
        return current_app.jinja_env.get_template("oauth/_client.html").module.client_identity(identity)

    app.jinja_env.globals["client_identity"] = client_identity

    # Flask-WTF's csrf_token() in templates, made cheaper (CsrfTokens); registered after
    # CSRFProtect's own context processor and global, so this one is what templates call.
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.context_processor
    def inject_product():
        if not has_request_context():
            return {"product": product}
        links = frames.get(request.script_root)
        if links is None:
            links = frames[request.script_root] = {
                "stylesheet": url_for("static", filename="style.css"), "home": url_for("auth.index"),
                "apps": url_for("account.apps"), "logout": url_for("auth.logout"),
            }
        return {"product": product, "links": links, "csrf_token": csrf_token}

    @app.after_request
    def security_headers(response):
        for key, value in common:
            response.headers[key] = value
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = csp
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        return response
