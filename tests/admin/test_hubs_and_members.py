"""Hubs, memberships and per-member permission overrides through the admin API, and their refusals
(unknown roles and scopes are named with the valid ones; nothing changes on a refusal)."""

from __future__ import annotations

import pytest

from authserver import accounts, audit

from .conftest import assert_api_error

VIEWER = ["crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
          "crm.objects.tickets.read", "crm.objects.notes.read", "crm.objects.owners.read"]


def test_hubs_create_read_and_list(api):
    acme = api.post("/hubs", json={"name": "Acme", "id": 10000001})
    assert acme.status_code == 201, acme.get_json()
    assert acme.get_json()["id"] == 10000001 and acme.get_json()["name"] == "Acme"
    assert acme.headers["Location"].endswith("/admin/api/v1/hubs/10000001")
    chosen = api.post("/hubs", json={"name": "Globex"}).get_json()
    assert 10_000_000 <= chosen["id"] <= 99_999_999
    assert api.get("/hubs/10000001").get_json() == acme.get_json()
    listed = api.get("/hubs").get_json()
    assert [h["id"] for h in listed["hubs"]] == sorted([10000001, chosen["id"]]) and listed["next_after"] is None
    first = api.get("/hubs", query_string={"limit": 1}).get_json()
    assert len(first["hubs"]) == 1 and first["next_after"] == first["hubs"][0]["id"]
    rest = api.get("/hubs", query_string={"limit": 1, "after": first["next_after"]}).get_json()
    assert rest["hubs"][0]["id"] != first["hubs"][0]["id"]


def test_memberships_add_change_override_list_and_remove(app, api, make_user, make_hub):
    user, hub = make_user("ann@example.com"), make_hub("Acme", 10000001)
    path = f"/hubs/10000001/members/{user.id}"

    added = api.post("/hubs/10000001/members", json={"user_id": user.id, "role": "viewer"})
    assert added.status_code == 201, added.get_json()
    assert added.headers["Location"].endswith(path)
    assert added.get_json() == {"user_id": user.id, "hub_id": 10000001, "hub_name": "Acme", "role": "viewer",
                                "granted": [], "denied": [], "permissions": VIEWER}

    sales = api.patch(path, json={"role": "sales"}).get_json()
    assert sales["role"] == "sales" and "crm.objects.deals.write" in sales["permissions"]

    granted = api.put(path + "/granted/crm.objects.tickets.write").get_json()
    assert granted["granted"] == ["crm.objects.tickets.write"]
    assert "crm.objects.tickets.write" in granted["permissions"]
    denied = api.put(path + "/denied/crm.objects.tickets.write").get_json()
    assert denied["granted"] == [] and denied["denied"] == ["crm.objects.tickets.write"]
    assert "crm.objects.tickets.write" not in denied["permissions"]
    assert api.delete(path + "/denied/crm.objects.tickets.write").get_json()["denied"] == []
    api.put(path + "/granted/crm.objects.tickets.write")
    assert api.delete(path + "/granted/crm.objects.tickets.write").get_json()["granted"] == []

    replaced = api.patch(path, json={"granted": ["crm.objects.tickets.read"],
                                     "denied": ["crm.objects.deals.write", "crm.objects.deals.write"]}).get_json()
    assert replaced["granted"] == ["crm.objects.tickets.read"] and replaced["denied"] == ["crm.objects.deals.write"]
    assert "crm.objects.deals.write" not in replaced["permissions"]
    assert api.patch(path, json={"denied": []}).get_json()["denied"] == []

    assert api.get(path).get_json() == api.get("/hubs/10000001/members").get_json()["memberships"][0]
    assert api.get(f"/users/{user.id}/memberships").get_json()["memberships"] == [api.get(path).get_json()]

    assert api.delete(path).status_code == 204
    assert api.get("/hubs/10000001/members").get_json() == {"memberships": []}
    with app.app_context():
        assert accounts.get_membership(accounts.get_user(user.id), accounts.get_hub(10000001)) is None


def test_every_change_is_audited_with_the_credential(app, api, admin, make_user, make_hub):
    user, _ = make_user("ann@example.com"), make_hub("Acme", 10000001)
    path = f"/hubs/10000001/members/{user.id}"
    api.post("/hubs/10000001/members", json={"user_id": user.id, "role": "viewer"})
    api.patch(path, json={"role": "sales", "granted": ["crm.objects.tickets.read"]})
    api.put(path + "/denied/crm.objects.notes.write")
    api.delete(path + "/denied/crm.objects.notes.write")
    api.put(path + "/granted/crm.objects.notes.write")
    api.delete(path + "/granted/crm.objects.notes.write")
    api.delete(path)
    created = api.post("/users", json={"email": "new@example.com"}).get_json()
    api.patch(f"/users/{created['id']}", json={"display_name": "New", "disabled": True})
    api.post(f"/users/{created['id']}/sessions/end")
    api.post("/hubs", json={"name": "Globex"})
    with app.app_context():
        # Everything recorded during a request (the fixtures' rows were made outside any).
        events = [e for e in audit.find_events(limit=100) if e.request_id]
    assert [e.event for e in reversed(events)] == [
        "membership.added", "membership.role_changed", "membership.overrides_set", "membership.permission_denied",
        "membership.denial_withdrawn", "membership.permission_granted", "membership.grant_withdrawn",
        "membership.removed", "user.created", "user.updated", "user.disabled", "user.sessions_ended", "hub.created",
    ]
    assert all(e.detail["admin_credential"] == admin.id for e in events), [(e.event, e.detail) for e in events]
    assert all(e.ip == "127.0.0.1" for e in events)


# (method, path, body, status, error, words); {user} is a member of hub 10000001 with role
# viewer, {outsider} a user in no hub.
REFUSED = [
    ("POST", "/hubs", {}, 400, "invalid_request", ["Missing", "name"]),
    ("POST", "/hubs", {"name": ""}, 422, "invalid_request", ["name"]),
    ("POST", "/hubs", {"name": "x" * 201}, 422, "invalid_request", ["200"]),
    ("POST", "/hubs", {"name": "Dup", "id": 10000001}, 409, "conflict", ["10000001 already exists"]),
    ("POST", "/hubs", {"name": "Short", "id": 42}, 422, "invalid_request", ["8 digits"]),
    ("POST", "/hubs", {"name": "Huge", "id": 2**70}, 422, "invalid_request", ["8 digits"]),
    ("POST", "/hubs", {"name": "Str", "id": "10000005"}, 400, "invalid_request", ["'id' must be an integer"]),
    ("POST", "/hubs", {"name": "Bool", "id": True}, 400, "invalid_request", ["integer"]),
    ("GET", "/hubs/10000099", None, 404, "not_found", ["No hub", "10000099"]),
    ("GET", "/hubs/99999999999999999999999", None, 404, "not_found", ["No hub"]),
    ("POST", "/hubs/10000001/members", {"user_id": "{outsider}", "role": "boss"}, 422, "invalid_role",
     ["'boss'", "admin, sales, viewer"]),
    ("POST", "/hubs/10000001/members", {"user_id": "{user}", "role": "admin"}, 409, "conflict", ["already a member"]),
    ("POST", "/hubs/10000001/members", {"user_id": 999999, "role": "admin"}, 422, "invalid_request", ["No user"]),
    ("POST", "/hubs/10000001/members", {"user_id": 2**40, "role": "admin"}, 422, "invalid_request", ["No user"]),
    ("POST", "/hubs/10000001/members", {"role": "admin"}, 400, "invalid_request", ["Missing", "user_id"]),
    ("POST", "/hubs/10000099/members", {"user_id": "{outsider}", "role": "admin"}, 404, "not_found", ["No hub"]),
    ("GET", "/hubs/10000001/members/{outsider}", None, 404, "not_found", ["not a member"]),
    ("PATCH", "/hubs/10000001/members/{outsider}", {"role": "admin"}, 404, "not_found", ["not a member"]),
    ("DELETE", "/hubs/10000001/members/{outsider}", None, 404, "not_found", ["not a member"]),
    ("PATCH", "/hubs/10000001/members/{user}", {"role": "owner"}, 422, "invalid_role", ["Known roles"]),
    ("PATCH", "/hubs/10000001/members/{user}", {"granted": ["crm.everything"]}, 422, "invalid_scope",
     ["crm.everything", "Known scopes", "crm.objects.contacts.read"]),
    ("PATCH", "/hubs/10000001/members/{user}", {"granted": "crm.objects.tickets.read"}, 400, "invalid_request",
     ["list of scope names"]),
    ("PATCH", "/hubs/10000001/members/{user}", {"granted": [1]}, 400, "invalid_request", ["list of scope names"]),
    ("PATCH", "/hubs/10000001/members/{user}", {"granted": ["crm.objects.tickets.read"],
                                                "denied": ["crm.objects.tickets.read"]},
     422, "invalid_request", ["both granted and denied", "crm.objects.tickets.read"]),
    # A valid role change beside an invalid list: neither is made.
    ("PATCH", "/hubs/10000001/members/{user}", {"role": "admin", "denied": ["nope"]}, 422, "invalid_scope", []),
    ("PATCH", "/hubs/10000001/members/{user}", {"scopes": []}, 400, "invalid_request", ["Unknown", "scopes"]),
    ("PUT", "/hubs/10000001/members/{user}/granted/crm.nope", None, 422, "invalid_scope", ["crm.nope", "Known"]),
    ("DELETE", "/hubs/10000001/members/{user}/denied/crm.nope", None, 422, "invalid_scope", ["crm.nope"]),
    ("PUT", "/hubs/10000001/members/{outsider}/denied/crm.objects.contacts.read", None, 404, "not_found",
     ["not a member"]),
    ("PUT", "/hubs/10000001/members/{user}/allowed/crm.objects.contacts.read", None, 404, "invalid_request",
     ["Unknown endpoint"]),
]


@pytest.mark.parametrize("method, path, body, status, error, words", REFUSED,
                         ids=[f"{m} {p} {status} {i}" for i, (m, p, _, status, *_) in enumerate(REFUSED)])
def test_refused_requests_say_why_and_change_nothing(api, make_user, make_hub, unchanged, method, path, body, status,
                                                     error, words):
    hub = make_hub("Acme", 10000001)
    user, outsider = make_user("member@example.com", hubs=[hub]), make_user("outsider@example.com")
    ids = {"{user}": user.id, "{outsider}": outsider.id}
    if isinstance(body, dict):
        body = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    path = path.format(user=user.id, outsider=outsider.id)
    with unchanged():
        response = api.call(method, path, body)
        assert_api_error(response, status, error, *words)
