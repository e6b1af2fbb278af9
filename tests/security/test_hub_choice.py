"""Threat: a grant for another hub than the person chose (issue 11 item 9). The page has no
scripts (CSP), so the hub radios can change while the permissions of another hub are on display.
Defence: the radios, the scope boxes and a hidden `shown_hub` are one POST form; Allow grants
only when the chosen hub is the hub shown, anything else re-renders the page for the chosen hub
and grants nothing. "Show permissions for this hub" re-renders too (a CSRF-checked POST)."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, authorize_params, csrf_token, query, shown_hub

from authserver.extensions import db
from authserver.models import Grant

from .support import nothing_issued

ACME, GLOBEX = "10000001", "10000002"
READ, WRITE = "crm.objects.contacts.read", "crm.objects.contacts.write"


def _post(flow, params, html, **fields):
    data = {"csrf_token": csrf_token(html), "scope": [READ, WRITE], **fields}
    return flow.client.post("/oauth/authorize", query_string=params, data={k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize("fields", [
    pytest.param({"hub": GLOBEX, "shown_hub": ACME, "decision": "allow"}, id="allow with another hub selected"),
    pytest.param({"hub": GLOBEX, "shown_hub": None, "decision": "allow"}, id="allow without shown_hub"),
    pytest.param({"hub": GLOBEX, "shown_hub": ACME, "decision": "switch"}, id="show permissions for this hub"),
])
def test_a_hub_other_than_the_one_shown_is_shown_not_granted(app, flow, register, fields):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), scope=f"{READ} {WRITE}")
    acme = flow.consent_page(params).get_data(as_text=True)
    assert shown_hub(acme) == ACME  # the first hub is shown

    response = _post(flow, params, acme, **fields)
    assert response.status_code == 200 and "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert shown_hub(html) == GLOBEX and "Permissions in Globex" in html
    assert f'value="{GLOBEX}" checked' in html
    assert "Unavailable: you don't have this permission in Globex" in html  # Globex's own permissions
    if fields["decision"] == "allow":
        assert "Check the permissions for Globex and press Allow again" in html
    assert nothing_issued(app)

    # Allow on the page now shown grants the hub chosen, with what that hub allows.
    granted = _post(flow, params, html, hub=GLOBEX, shown_hub=shown_hub(html), decision="allow")
    assert granted.status_code == 302 and query(granted.headers["Location"])["code"]
    with app.app_context():
        [grant] = db.session.scalars(db.select(Grant)).all()
        assert (grant.hub.public_id, grant.scope) == (int(GLOBEX), READ)


def test_showing_another_hub_needs_the_csrf_token(app, flow, register):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE())
    response = flow.client.post("/oauth/authorize", query_string=params,
                                data={"hub": GLOBEX, "shown_hub": ACME, "decision": "switch"})
    assert response.status_code == 400 and "Location" not in response.headers
    assert nothing_issued(app)


def test_hub_links_still_show_that_hub(flow, register):
    client_id = register()["client_id"]
    page = flow.consent_page(authorize_params(client_id, PKCE()), hub=GLOBEX)
    assert page.status_code == 200 and shown_hub(page.get_data(as_text=True)) == GLOBEX
