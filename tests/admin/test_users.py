"""Users through the admin API: create, list (paginated, by email), read, update, disable, sign out
everywhere; and every refusal leaves everything as it was."""

from __future__ import annotations

import pytest

from authserver import accounts, audit
from authserver.extensions import db

from .conftest import assert_api_error

PASSWORD = "correct horse battery"


def test_create_read_and_list(api):
    created = api.post("/users", json={"email": " Ann@Example.com ", "display_name": "Ann", "password": PASSWORD})
    assert created.status_code == 201, created.get_json()
    ann = created.get_json()
    assert ann["email"] == "ann@example.com" and ann["display_name"] == "Ann" and ann["has_password"] is True
    assert ann["disabled"] is False and ann["sessions_ended_at"] is None and ann["created_at"].endswith("Z")
    assert created.headers["Location"].endswith(f"/admin/api/v1/users/{ann['id']}")
    assert created.headers["Cache-Control"] == "no-store"
    assert api.get(f"/users/{ann['id']}").get_json() == ann

    listed = api.get("/users").get_json()
    assert listed == {"users": [ann], "next_after": None}
    assert api.get("/users", query_string={"email": "ANN@example.com"}).get_json()["users"] == [ann]
    assert api.get("/users", query_string={"email": "nobody@example.com"}).get_json()["users"] == []


def test_a_user_without_a_password_cannot_sign_in_with_one(app, api, login):
    bob = api.post("/users", json={"email": "bob@example.com"}).get_json()
    assert bob["has_password"] is False and bob["display_name"] == "bob"
    with app.app_context():
        stored = accounts.get_user(bob["id"]).password_hash
        assert accounts.authenticate("bob@example.com", stored) is None
        assert accounts.authenticate("bob@example.com", "") is None
    assert "match an account" in login(app.test_client(), "bob@example.com", stored).get_data(as_text=True)


def test_pages_follow_next_after(api):
    ids = [api.post("/users", json={"email": f"u{i}@example.com"}).get_json()["id"] for i in range(5)]
    seen, after = [], 0
    while True:
        page = api.get("/users", query_string={"limit": 2, "after": after}).get_json()
        seen += [u["id"] for u in page["users"]]
        assert len(page["users"]) <= 2
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ids
    # Past the last possible id (beyond a 32-bit integer, which PostgreSQL would refuse): nothing.
    assert api.get("/users", query_string={"after": 2**53}).get_json() == {"users": [], "next_after": None}


def test_update_email_name_and_disable(app, api, make_user):
    user = make_user("carl@example.com")
    updated = api.patch(f"/users/{user.id}", json={"email": "Carl.New@example.com", "display_name": "Carl N"})
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_json()["email"] == "carl.new@example.com"
    assert updated.get_json()["display_name"] == "Carl N"
    disabled = api.patch(f"/users/{user.id}", json={"disabled": True}).get_json()
    assert disabled["disabled"] is True and disabled["sessions_ended_at"] is not None
    assert api.patch(f"/users/{user.id}", json={"disabled": False}).get_json()["disabled"] is False
    assert api.patch(f"/users/{user.id}", json={}).status_code == 200
    with app.app_context():
        events = [e.event for e in audit.find_events(user_id=user.id, event="user.*")]
    assert events == ["user.enabled", "user.disabled", "user.updated", "user.created"]


def test_end_sessions_signs_the_person_out_everywhere(app, api, make_user, login):
    user = make_user("dora@example.com")
    browsers = [app.test_client(), app.test_client()]
    for browser in browsers:
        login(browser, "dora@example.com")
        assert browser.get("/").status_code == 200
    ended = api.post(f"/users/{user.id}/sessions/end")
    assert ended.status_code == 200 and ended.get_json()["sessions_ended_at"] is not None
    for browser in browsers:
        response = browser.get("/")
        assert response.status_code == 302 and response.headers["Location"].endswith("/login")


# Each refusal: (method, path, JSON body or raw, status, error, words the description must hold).
# {user} is an existing user's id; "taken@example.com" belongs to another user.
REFUSED = [
    ("POST", "/users", {}, 400, "invalid_request", ["Missing", "email"]),
    ("POST", "/users", {"email": "a@example.com", "admin": True}, 400, "invalid_request", ["Unknown", '"admin"']),
    ("POST", "/users", {"email": 42}, 400, "invalid_request", ["'email' must be a string"]),
    ("POST", "/users", {"email": "a\u0000@example.com"}, 400, "invalid_request", ["NUL"]),
    ("POST", "/users", {"email": "\ud800@example.com"}, 400, "invalid_request", ["Unicode"]),
    ("POST", "/users", {"email": "not-an-email"}, 422, "invalid_request", ["Not a valid email"]),
    ("POST", "/users", {"email": "a\u0007b@example.com"}, 422, "invalid_request", ["Not a valid email"]),
    ("POST", "/users", {"email": "TAKEN@example.com"}, 409, "conflict", ["already exists"]),
    ("POST", "/users", {"email": "a@example.com", "password": "short"}, 422, "invalid_request", ["at least 8"]),
    ("POST", "/users", {"email": "a@example.com", "display_name": ""}, 422, "invalid_request", ["display name"]),
    ("POST", "/users", {"email": "a@example.com", "display_name": "x" * 201}, 422, "invalid_request", ["200"]),
    ("POST", "/users", [1, 2], 400, "invalid_request", ["JSON object"]),
    ("POST", "/users", "raw:{not json", 400, "invalid_request", ["not valid JSON"]),
    ("POST", "/users", "raw:" + "[" * 5000, 400, "invalid_request", ["not valid JSON"]),
    ("POST", "/users", "form:email=a@example.com", 415, "invalid_request", ["application/json"]),
    ("GET", "/users/999999", None, 404, "not_found", ["No user", "999999"]),
    ("GET", "/users/99999999999999999999999", None, 404, "not_found", ["No user"]),
    ("GET", "/users/abc", None, 404, "not_found", ["No user"]),
    ("GET", "/users?limit=0", None, 400, "invalid_request", ["'limit'", "1 to 200"]),
    ("GET", "/users?limit=201", None, 400, "invalid_request", ["'limit'"]),
    ("GET", "/users?after=-1", None, 400, "invalid_request", ["'after'"]),
    ("GET", "/users?after=x", None, 400, "invalid_request", ["'after'"]),
    ("PATCH", "/users/{user}", {"email": "taken@example.com"}, 409, "conflict", ["already exists"]),
    ("PATCH", "/users/{user}", {"email": "bad"}, 422, "invalid_request", ["Not a valid email"]),
    ("PATCH", "/users/{user}", {"display_name": "  "}, 422, "invalid_request", ["display name"]),
    ("PATCH", "/users/{user}", {"disabled": "yes"}, 400, "invalid_request", ["'disabled' must be true or false"]),
    ("PATCH", "/users/{user}", {"disabled": 1}, 400, "invalid_request", ["true or false"]),
    ("PATCH", "/users/{user}", {"password": "new password!"}, 400, "invalid_request", ["Unknown", "password"]),
    # A valid change beside an invalid one: neither is made.
    ("PATCH", "/users/{user}", {"display_name": "Fine", "email": "bad"}, 422, "invalid_request", ["email"]),
    ("PATCH", "/users/{user}", {"disabled": True, "email": "taken@example.com"}, 409, "conflict", []),
    ("PATCH", "/users/999999", {"display_name": "X"}, 404, "not_found", ["No user"]),
    ("POST", "/users/999999/sessions/end", None, 404, "not_found", ["No user"]),
    ("DELETE", "/users/{user}", None, 405, "invalid_request", []),
]


@pytest.mark.parametrize("method, path, body, status, error, words", REFUSED,
                         ids=[f"{m} {p} {status} {i}" for i, (m, p, _, status, *_) in enumerate(REFUSED)])
def test_refused_requests_say_why_and_change_nothing(api, make_user, unchanged, method, path, body, status, error,
                                                     words):
    user = make_user("someone@example.com")
    make_user("taken@example.com")
    kwargs = {}
    if isinstance(body, str) and body.startswith("raw:"):
        kwargs = {"data": body[4:], "content_type": "application/json"}
    elif isinstance(body, str) and body.startswith("form:"):
        kwargs = {"data": body[5:], "content_type": "application/x-www-form-urlencoded"}
    elif body is not None:
        kwargs = {"json": body}
    path = path.format(user=user.id)
    with unchanged():
        response = api.client.open("/admin/api/v1" + path, method=method, headers=api.headers, **kwargs)
        assert_api_error(response, status, error, *words)


def test_disabling_twice_changes_nothing_more(app, api, make_user):
    user = make_user("eve@example.com")
    first = api.patch(f"/users/{user.id}", json={"disabled": True}).get_json()
    second = api.patch(f"/users/{user.id}", json={"disabled": True}).get_json()
    assert first == second
    with app.app_context():
        assert [e.event for e in audit.find_events(event="user.disabled")] == ["user.disabled"]
        db.session.rollback()
