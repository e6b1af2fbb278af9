"""The authorization endpoint: validate with Authlib first, then log in, then consent."""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, render_template, request

from .. import audit, consent, rawsql, resources, store
from ..errors import error_page, oauth_json_error
from ..extensions import db
from ..oauth import cimd
from ..oauth.server import server
from ..web import answers_in_json
from .auth import current_user, current_user_read, login_url, safe_next

bp = Blueprint("authorize", __name__)
log = logging.getLogger(__name__)


def _invalid_request_page(error: OAuth2Error):
    """An error that may not be redirected (unverified client or redirect URI): a page, 400; RFC
    6749 JSON to a program that asks for it (mcp-remote registers again only on a JSON
    invalid_client, so a client whose registration was deleted can recover)."""
    log.info("authorization request refused: %s %s", error.error, error.description)
    if answers_in_json():
        return oauth_json_error(error.status_code, error.error, error.description or error.error)
    return error_page(
        400,
        "This app's sign-in request isn't valid",
        f"{error.description or error.error} Please contact the app's developer.",
    )


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize():
    _read_ahead()
    user = current_user()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        if user is None and error.redirect_uri and not _vetted_redirect_uris():
            # RFC 9700 §4.11.2: redirecting a stranger's error to a URI anyone could register
            # would make this domain an open redirector. Sign in first; then the same request
            # is validated again and its error redirected.
            return _redirect_to_login() if _can_return_after_login() else _invalid_request_page(error)
        response = server.authorization_error_response(error)
        return response if response is not None else _invalid_request_page(error)

    if user is None:
        return _redirect_to_login()

    if request.method == "GET":
        decision = consent.remembered_decision(user, grant)
        if decision is not None:
            return _authorization_response(grant, decision, "consent.remembered")
        return _consent_page(user, grant, request.args.get("hub"))

    # POST: the user's decision. Flask-WTF has already checked the CSRF token.
    decision_field = request.form.get("decision")
    hub, ticked = request.form.get("hub"), request.form.getlist("scope")
    if decision_field == "switch":
        # "Show permissions for this hub": the same page for the hub now selected; grants nothing.
        return _consent_page(user, grant, hub, set(ticked))
    if decision_field != "allow":
        audit.record("consent.denied", user=user, client=grant.client)
        return _authorization_response(grant, None)
    try:
        decision = consent.decide(user, grant, hub, request.form.get("shown_hub"), ticked)
    except consent.HubNotShown as error:
        # Without scripts the radios can change while other permissions are on display: show the
        # permissions of the hub chosen and let the person confirm them.
        db.session.rollback()
        return _consent_page(user, grant, str(error.hub.public_id), set(ticked), notice=str(error))
    except consent.ConsentError as error:
        db.session.rollback()
        return _consent_page(user, grant, hub, set(ticked), error=str(error)), 400
    return _authorization_response(grant, decision, "consent.granted")


def _read_ahead() -> None:
    """What this request will read, in one round trip before anything asks for it
    (rawsql.read_ahead): the signed-in user, the client and the resource server it names, and the
    user's hubs with their live grants to that client and resource. current_user, query_client,
    the resource indicator and consent then read each as always and find it there. A
    metadata-document client is left to its own loader. Those rows are only read here: they are
    taken as values (store.read_as_values)."""
    store.read_as_values()
    client_id = request.args.get("client_id")
    signed_in = current_user_read()
    client = None if cimd.is_url_client_id(client_id or "") else store.client_read(client_id)
    resource = resources.uri_read(request.args.get("resource"))
    many = None
    if signed_in is not None and client is not None and resource is not None:
        many = store.hubs_and_grants_read(signed_in[1]["user_id"], client_id, resource[1]["uri"])
    rawsql.read_ahead([read for read in (signed_in, client, resource) if read is not None], many)


def _authorization_response(grant, decision: consent.Decision | None, event: str | None = None):
    """The redirect with a code for `decision` (None: access_denied), committed; the audit `event`
    is written with the code (store.save_authorization_code). Authlib is handed the OAuth request
    it validated, which it would otherwise build again from the HTTP request."""
    if decision is not None:
        decision.event = audit.event_row(event, user=decision.user, hub=decision.hub, client=grant.client,
                                         scope=decision.scope)
    response = server.create_authorization_response(grant.request, grant_user=decision, grant=grant)
    _commit()
    return response


def _commit() -> None:
    """Commit what the request wrote through its session, if anything: a request that only read
    (outside any transaction, rawsql.read) sends no COMMIT."""
    if rawsql.in_transaction():
        db.session.commit()


def _consent_page(user, grant, hub: str | None, ticked: set[str] | None = None, error: str | None = None,
                  notice: str | None = None):
    """The consent page for `hub` (None: the person's last or first hub), with `ticked` boxes;
    committed, as what validating the request stored (a metadata-document client) is kept."""
    page = consent.build_page(user, grant, hub, ticked)
    html = render_template("oauth/consent.html", page=page, error=error, notice=notice)
    _commit()
    return html


#: Clients whose redirect URIs the operator vetted (pre-registered with the CLI); the URIs of
#: dynamically registered and metadata-document clients are whatever their author chose.
VETTED_REGISTRATIONS = frozenset({"cli"})


def _vetted_redirect_uris() -> bool:
    """Whether the request's client had its redirect URIs vetted by the operator."""
    client = server.query_client(request.args.get("client_id"))
    return client is not None and client.registration in VETTED_REGISTRATIONS


def _can_return_after_login() -> bool:
    """A GET whose URL survives the login page's `next` rule; anything else gets the error page."""
    return request.method == "GET" and safe_next(request.full_path, default="") == request.full_path


def _redirect_to_login():
    """Sign in first, keeping what validating the request stored (committed)."""
    from flask import redirect

    _commit()
    return redirect(login_url(request.full_path))
