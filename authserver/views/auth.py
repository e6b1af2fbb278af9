"""Login and logout pages, the signed-in user, and the local-only `next` rule."""

from __future__ import annotations

import logging
import secrets
import time
from functools import wraps
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import TooManyRequests

from .. import accounts, audit, consent, limits, store, upstream
from ..errors import error_page
from ..extensions import db
from ..models import User
from ..secrets import sha256_hex
from ..timeutil import utcnow, to_epoch
from ..web import OAUTH_CHARS

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

LOGIN_ERROR = "That email and password don't match an account. Check them and try again."


def safe_next(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this server, else `default` (no open redirects).

    Refuses absolute and scheme-relative URLs (`//evil`), backslashes (browsers treat `/\\evil`
    as `//evil`), and control characters."""
    if not target or not isinstance(target, str) or len(target) > 4000:
        return default
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def current_user() -> User | None:
    """The signed-in, enabled user, or None."""
    if "user" not in g:
        user = None
        # What current_user_read found for this request's read-ahead, moments ago, if it ran.
        signed_in = g.pop(_SIGN_IN_READ, None) or _session_sign_in()
        if signed_in is not None:
            user_id, sid_hash, auth_time = signed_in
            user = store.get_session_user(user_id, sid_hash)
            if user is not None and (user.disabled or accounts.session_ended(user, auth_time)):
                user = None
        g.user = user
    return g.user


def _session_sign_in() -> tuple[int, str, int] | None:
    """The user id, session id hash and sign-in time the session cookie names, while within its
    lifetime; None otherwise (nobody signed in)."""
    user_id, sid, auth_time = session.get("user_id"), session.get("sid"), session.get("auth_time")
    if isinstance(user_id, int) and isinstance(sid, str) and _within_lifetime(auth_time):
        return user_id, sha256_hex(sid), auth_time
    return None


#: Where current_user_read leaves the session's sign-in for current_user, which follows it (the
#: session cookie's fields checked, the session id hashed, once per request rather than twice).
_SIGN_IN_READ = "authserver.sign_in_read"


def current_user_read() -> tuple | None:
    """The read current_user will make (for rawsql.read_ahead); None when it makes none."""
    if "user" in g:
        return None
    signed_in = _session_sign_in()
    if signed_in is None:
        return None
    setattr(g, _SIGN_IN_READ, signed_in)
    return store.session_user_read(*signed_in[:2])


def _within_lifetime(auth_time) -> bool:
    """A session lasts SESSION_ABSOLUTE_LIFETIME seconds from its sign-in, however active."""
    if not isinstance(auth_time, int):
        return False
    return to_epoch(utcnow()) - auth_time < int(current_app.config["SESSION_ABSOLUTE_LIFETIME"])


def login_url(next_path: str) -> str:
    return url_for("auth.login") + "?" + urlencode({"next": next_path})


def login_required(view):
    """Send people who are not signed in to the login page, coming back here afterwards."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_user() is None:
            return redirect(login_url(request.full_path if request.query_string else request.path))
        return view(*args, **kwargs)

    return wrapped


def _throttle(account: str, address: str) -> None:
    """Count this attempt before the password is checked, and refuse it over the per-address or
    per-(account, address) limit: counting first means concurrent attempts cannot all pass a
    check made before any of them was counted. Per account alone nothing is refused (anyone who
    knows an email could lock its owner out); attempts wait longer the more recent failures the
    account has, up to LOGIN_DELAY_MAX seconds."""
    retry_after = limits.hit("LOGIN_ATTEMPTS_PER_IP", "login-ip", address) or limits.hit(
        "LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP", "login-account-ip", account, address
    )
    if retry_after is not None:
        raise TooManyRequests(retry_after=retry_after)
    config = current_app.config
    failures = limits.count("LOGIN_DELAY_WINDOW", "login-account-failures", account)
    delay = min(float(config["LOGIN_DELAY_MAX"]), float(config["LOGIN_DELAY_PER_FAILURE"]) * failures)
    if delay > 0:
        time.sleep(delay)


def login_page(next_path: str, email: str = "", error: str | None = None) -> str:
    """The sign-in page: the app waiting for the person (when `next` resumes an authorization),
    the password form (unless PASSWORD_LOGIN_ENABLED is off), then a button per upstream provider."""
    return render_template("auth/login.html", next=next_path, email=email, error=error,
                           waiting=_waiting_app(next_path),
                           password_login=current_app.config["PASSWORD_LOGIN_ENABLED"],
                           providers=upstream.providers())


def _waiting_app(next_path: str) -> consent.ClientIdentity | None:
    """The app whose authorization request `next` resumes, if it names one client and at most one
    redirect URI in printable ASCII (anything else: None, the plain page; never an error)."""
    parts = urlsplit(next_path)
    if parts.path != url_for("authorize.authorize"):
        return None
    params = parse_qs(parts.query, keep_blank_values=True)
    client_ids, redirect_uris = params.get("client_id", []), params.get("redirect_uri", [])
    if len(client_ids) != 1 or len(redirect_uris) > 1:
        return None
    if not all(v and OAUTH_CHARS.match(v) for v in client_ids + redirect_uris):
        return None
    return consent.waiting_app(client_ids[0], redirect_uris[0] if redirect_uris else None)


def begin_session(user: User, **detail) -> None:
    """Sign `user` in, whichever way they proved who they are. A fresh session on every sign-in:
    nothing set before authentication survives it (session fixation), and the CSRF token is
    renewed."""
    session.clear()
    session["user_id"] = user.id
    session["auth_time"] = to_epoch(utcnow())
    session["sid"] = secrets.token_urlsafe(16)
    audit.record("login.success", user=user, **detail)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_path = safe_next(request.values.get("next"))
    if request.method == "GET":
        return login_page(next_path)
    if not current_app.config["PASSWORD_LOGIN_ENABLED"]:
        return error_page(403, "Password sign-in is off",
                          "This server signs people in through their organisation's sign-in only. "
                          "Go back and choose it on the sign-in page.")

    email = request.form.get("email", "")
    account, address = accounts.normalize_email(email)[:320], get_remote_address()
    _throttle(account, address)
    user = accounts.authenticate(email, request.form.get("password", ""))
    if user is None:
        limits.record("LOGIN_DELAY_WINDOW", "login-account-failures", account)
        audit.record("login.failure", email=account)
        db.session.commit()
        return login_page(next_path, email[:320], LOGIN_ERROR), 200

    begin_session(user)
    limits.clear("LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP", "login-account-ip", account, address)
    db.session.commit()
    return redirect(next_path)


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    if request.method == "GET":
        return render_template("auth/logout.html", user=current_user())
    user, sid = current_user(), session.get("sid")
    if user is not None and isinstance(sid, str):
        # End this session for every copy of the cookie, not only the browser's.
        store.end_session(sha256_hex(sid), utcnow() + current_app.permanent_session_lifetime)
        audit.record("logout", user=user)
        db.session.commit()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/")
def index():
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login"))
    hubs = accounts.find_user_hubs(user)
    return render_template("auth/index.html", user=user, hubs=hubs)


@bp.app_context_processor
def inject_current_user():
    return {"current_user": current_user()}
