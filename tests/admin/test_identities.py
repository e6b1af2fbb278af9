"""Upstream identities through the admin API: the product's back end links a person's subject at
its identity provider to their account (linking by email and creating accounts are off by
default, so this is how a deployment says who is who), lists and removes the links; a refusal
changes nothing, and a link is audited with the credential that made it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from authserver import accounts
from authserver.extensions import db
from authserver.models import AuditEvent, UpstreamIdentity

from .conftest import assert_api_error

pytestmark = pytest.mark.app_config(UPSTREAM_PROVIDERS=[{
    "name": "corp", "display_name": "Corp SSO", "issuer": "https://login.corp.example",
    "client_id": "authserver", "client_secret": "not-used-here"}])


def links(app) -> list[tuple]:
    with app.app_context():
        return [(i.provider, i.subject, i.user_id) for i in db.session.scalars(
            select(UpstreamIdentity).order_by(UpstreamIdentity.id))]


def test_link_list_relink_and_unlink(app, api, admin, make_user):
    ann = make_user("ann@example.com")
    path = f"/users/{ann.id}/identities"
    assert api.get(path).get_json() == {"identities": []}

    linked = api.put(path + "/corp", json={"subject": "00u-ann"})
    assert linked.status_code == 201, linked.get_json()
    body = linked.get_json()
    assert body["provider"] == "corp" and body["subject"] == "00u-ann" and body["user_id"] == ann.id
    assert body["last_login_at"] is None and body["created_at"].endswith("Z")
    assert api.get(path).get_json() == {"identities": [body]}
    # PUT is idempotent: the same link again is done, not a second row.
    again = api.put(path + "/corp", json={"subject": "00u-ann"})
    assert again.status_code == 200 and again.get_json() == body
    assert links(app) == [("corp", "00u-ann", ann.id)]
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "user.upstream_linked")).one()
        assert event.user_id == ann.id and admin.id in str(event.detail)

    assert api.delete(path + "/corp").status_code == 204
    assert links(app) == [] and api.get(path).get_json() == {"identities": []}
    assert_api_error(api.delete(path + "/corp"), 404, "not_found", "no identity")


def test_one_subject_belongs_to_one_account_and_one_account_has_one_subject_per_provider(app, api, make_user,
                                                                                         unchanged):
    ann, bob = make_user("ann@example.com"), make_user("bob@example.com")
    assert api.put(f"/users/{ann.id}/identities/corp", json={"subject": "00u-ann"}).status_code == 201
    with unchanged():
        assert_api_error(api.put(f"/users/{bob.id}/identities/corp", json={"subject": "00u-ann"}),
                         409, "conflict", "already linked to user")
        assert_api_error(api.put(f"/users/{ann.id}/identities/corp", json={"subject": "00u-other"}),
                         409, "conflict", "unlink it first")
    assert links(app) == [("corp", "00u-ann", ann.id)]


@pytest.mark.parametrize(("provider", "body", "status", "error", "says"), [
    ("okta", {"subject": "x"}, 404, "not_found", "configured: corp"),
    ("corp", {}, 400, "invalid_request", "Missing member"),
    ("corp", {"subject": 7}, 400, "invalid_request", "must be a string"),
    ("corp", {"subject": ""}, 422, "invalid_request", "printable ASCII"),
    ("corp", {"subject": "x" * 256}, 422, "invalid_request", "printable ASCII"),
    ("corp", {"subject": "ünïcode"}, 422, "invalid_request", "printable ASCII"),
    ("corp", {"subject": "tab\there"}, 422, "invalid_request", "printable ASCII"),
    ("corp", {"subject": "x", "email": "a@b"}, 400, "invalid_request", "Unknown member"),
])
def test_bad_links_are_refused_and_change_nothing(app, api, make_user, unchanged, provider, body, status, error,
                                                  says):
    ann = make_user("ann@example.com")
    with unchanged():
        assert_api_error(api.put(f"/users/{ann.id}/identities/{provider}", json=body), status, error, says)
    assert links(app) == []


def test_an_unknown_user_is_not_found(api, unchanged):
    with unchanged():
        assert_api_error(api.put("/users/999999/identities/corp", json={"subject": "x"}), 404, "not_found")
        assert_api_error(api.get("/users/999999/identities"), 404, "not_found")


def test_a_linked_subject_is_how_upstream_sign_in_finds_the_account(app, api, make_user):
    """The link the API makes is the one sign-in reads (accounts.get_upstream_identity)."""
    ann = make_user("ann@example.com")
    api.put(f"/users/{ann.id}/identities/corp", json={"subject": "00u-ann"})
    with app.app_context():
        assert accounts.get_upstream_identity("corp", "00u-ann").user_id == ann.id
        assert accounts.get_upstream_identity("corp", "00u-bob") is None
