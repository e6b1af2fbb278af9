"""Sign-in through an upstream OpenID Connect provider: the start (a POST from the sign-in page's
button) and the provider's redirect back, which signs the person in as the password form does."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, redirect, request

from .. import audit, upstream
from ..errors import error_page
from ..extensions import db
from .auth import begin_session, safe_next

bp = Blueprint("upstream", __name__, url_prefix="/login/upstream")
log = logging.getLogger(__name__)


def _provider(name: str) -> dict:
    provider = upstream.get_provider(name)
    if provider is None:
        abort(404, "No sign-in provider has that name.")
    return provider


def _refused(provider: dict, refusal: upstream.SignInRefused):
    """The readable page for a refused sign-in, with the reason kept in the audit trail (apart:
    the request commits nothing)."""
    log.info("upstream sign-in refused: provider=%s reason=%s", provider["name"], refusal.reason)
    audit.record_apart("login.failure", provider=provider["name"], reason=refusal.reason)
    return error_page(refusal.status, refusal.title, refusal.message)


@bp.route("/<name>", methods=["POST"])
def start(name: str):
    """POST only (CSRF-checked): starting a sign-in writes the session, so no link can do it."""
    provider = _provider(name)
    try:
        url = upstream.authorization_url(provider, safe_next(request.form.get("next")))
    except upstream.SignInRefused as refusal:
        return _refused(provider, refusal)
    return redirect(url)


@bp.route("/<name>/callback")
def callback(name: str):
    provider = _provider(name)
    try:
        identity, next_path = upstream.finish(provider)
        user = upstream.account_for(identity, provider)
    except upstream.SignInRefused as refusal:
        return _refused(provider, refusal)
    begin_session(user, provider=provider["name"])
    db.session.commit()
    return redirect(safe_next(next_path))
