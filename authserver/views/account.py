"""The connected-apps page: a person's grants per hub, their recent account activity, and revoking."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from flask import Blueprint, flash, redirect, render_template, url_for

from .. import audit, scopes, store
from ..errors import error_page
from ..extensions import db
from ..models import Grant, Hub
from ..models.clients import redirect_host
from .auth import current_user, login_required

bp = Blueprint("account", __name__, url_prefix="/account")

#: How many audit events the page shows (most recent first).
RECENT_EVENTS = 20
#: Plain words for the audit events a person sees; others show their name.
EVENT_LABELS = {
    "login.success": "Signed in",
    "login.failure": "Failed sign-in attempt",
    "logout": "Signed out",
    "consent.granted": "You connected an app",
    "consent.remembered": "An app reconnected with your earlier consent",
    "consent.denied": "You turned down an app",
    "grant.revoked": "An app's access was revoked",
    "token.issued": "An app received a token",
    "membership.added": "You were added to a hub",
    "membership.removed": "You were removed from a hub",
}


@dataclass
class HubGrants:
    hub: Hub
    grants: list[Grant]


def _grouped(grants: list[Grant]) -> list[HubGrants]:
    ordered = sorted(grants, key=lambda g: (g.hub.name.lower(), g.hub.public_id))
    return [HubGrants(hub, list(items)) for hub, items in groupby(ordered, key=lambda g: g.hub)]


@bp.route("/apps")
@login_required
def apps():
    user = current_user()
    events = audit.find_events(user_id=user.id, limit=RECENT_EVENTS)
    return render_template(
        "account/apps.html",
        hubs=_grouped(store.find_user_grants(user)),
        events=events,
        client_names=store.client_names(e.client_id for e in events),
        describe=scopes.describe,
        redirect_host=redirect_host,
        event_labels=EVENT_LABELS,
    )


@bp.route("/apps/<int:grant_id>/revoke", methods=["POST"])
@login_required
def revoke(grant_id: int):
    # Flask-WTF has already checked the CSRF token. Another user's grant is "not found", so the
    # page never confirms that a grant id exists.
    user = current_user()
    grant = store.get_user_grant(user, grant_id)
    if grant is None:
        return error_page(404, "App not found", "There is no such connected app in your account.")
    name, hub = grant.client.client_name, grant.hub.name
    if grant.revoked_at is None:
        store.revoke_grant(grant, reason="user")
        db.session.commit()
    flash(f"{name} can no longer access {hub}. Its tokens stopped working at once.")
    return redirect(url_for("account.apps"), 303)
