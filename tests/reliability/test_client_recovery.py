"""A client whose registration is gone can recover. mcp-remote (and the MCP SDK under it) keeps its
registered client and registers again only when told, in an RFC 6749 JSON error, that the client
is `invalid_client`; the HTML error page a browser gets would leave it, and the person, at a dead
end on every start. So /oauth/authorize answers that JSON to whoever prefers JSON to HTML, and the
page to browsers."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from oauth.support import PKCE, REDIRECT_URI, RESOURCE, authorize_params

#: Accept headers of programs (JSON preferred) and of browsers and indifferent clients (the page).
ASKS_FOR_JSON = ["application/json", "application/json, text/plain, */*", "application/json;q=1, text/html;q=0.5"]
ASKS_FOR_A_PAGE = [None, "*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                   "text/html, application/json;q=0.5"]


@pytest.fixture
def deleted_client_id(client, resource_server) -> str:
    """A client registered (RFC 7591) and then deleted by itself (RFC 7592 DELETE)."""
    registered = client.post("/oauth/register", json={
        "client_name": "mcp-remote", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"})
    assert registered.status_code == 201, registered.get_data(as_text=True)
    body = registered.get_json()
    deleted = client.delete(urlsplit(body["registration_client_uri"]).path,
                            headers={"Authorization": f"Bearer {body['registration_access_token']}"})
    assert deleted.status_code == 204, deleted.get_data(as_text=True)
    return body["client_id"]


@pytest.fixture
def resource_server(make_resource):
    make_resource()


def authorize(client, client_id: str, accept: str | None):
    params = authorize_params(client_id, PKCE(), resource=RESOURCE)
    return client.get("/oauth/authorize", query_string=params, headers={"Accept": accept} if accept else {})


@pytest.mark.parametrize("accept", ASKS_FOR_JSON)
@pytest.mark.parametrize("which", ["deleted", "never registered"])
def test_an_unknown_client_asked_for_as_json_gets_invalid_client(client, deleted_client_id, accept, which):
    client_id = deleted_client_id if which == "deleted" else "mcp_never_registered"
    response = authorize(client, client_id, accept)
    assert response.status_code in (400, 401)
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_client"
    assert response.get_json()["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers  # never redirected: the redirect URI is unverified


@pytest.mark.parametrize("accept", ASKS_FOR_A_PAGE)
def test_a_browser_still_gets_the_page(client, deleted_client_id, accept):
    response = authorize(client, deleted_client_id, accept)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers


def test_the_client_registers_again_and_carries_on(client, deleted_client_id):
    """What mcp-remote does next: a new registration, whose authorization request is valid."""
    assert authorize(client, deleted_client_id, "application/json").get_json()["error"] == "invalid_client"
    registered = client.post("/oauth/register", json={
        "client_name": "mcp-remote", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"})
    assert registered.status_code == 201
    response = authorize(client, registered.get_json()["client_id"], "application/json")
    assert response.status_code == 302  # on to sign-in: the request itself is valid
