"""Threat 11: a hand-edited consent form (RFC 9700 §4.7 insufficient consent; the product's
"never more than the person could do themselves in that hub").

Defence: consent.decide accepts only a hub the user is a member of, and grants requested ∩ the
user's permissions in that hub ∩ the ticked boxes; anything else is a 400 page with no code."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, authorize_params

from .support import browser, nothing_issued

READ, WRITE = "crm.objects.contacts.read", "crm.objects.contacts.write"


@pytest.mark.parametrize("hub", ["10000002", "99999999", "not-a-number", "", "99999999999999999999"],
                         ids=["existing hub, not a member", "no such hub", "garbage", "empty", "beyond BIGINT"])
def test_consent_tampering_hub_user_does_not_belong_to_issues_no_code(app, world, register, hub):
    bob = browser(app, world, "bob@example.com")  # a member of Acme (10000001) only
    client_id = register()["client_id"]
    response = bob.decide(authorize_params(client_id, PKCE()), hub=hub, scopes=[READ])
    assert response.status_code == 400 and "Location" not in response.headers
    assert nothing_issued(app)


def test_consent_tampering_added_write_scope_in_viewer_hub_not_granted(flow, register):
    client_id = register()["client_id"]
    # Globex: alice is a viewer; the write box is disabled on the page but added to the form by hand.
    code, pkce, _ = flow.get_code(client_id, hub="10000002", scope=f"{READ} {WRITE}", scopes=[READ, WRITE])
    tokens = flow.exchange(client_id, code, pkce).get_json()
    assert tokens["scope"] == READ
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == READ


def test_consent_tampering_only_write_scope_in_viewer_hub_issues_no_code(app, flow, register):
    client_id = register()["client_id"]
    response = flow.decide(authorize_params(client_id, PKCE(), scope=WRITE), hub="10000002", scopes=[WRITE])
    assert response.status_code == 400 and "Location" not in response.headers
    assert nothing_issued(app)


def test_consent_tampering_scope_not_in_the_request_not_granted(flow, register):
    client_id = register()["client_id"]
    extra = ["crm.objects.deals.read", "crm.objects.deals.write"]  # alice may, but the app didn't ask
    code, pkce, _ = flow.get_code(client_id, scope=READ, scopes=[READ, *extra])
    assert flow.exchange(client_id, code, pkce).get_json()["scope"] == READ
