"""The example CRM MCP server as a resource server: RFC 9728 metadata, RFC 6750 challenges, the
audience check, per-hub data, and the short positive introspection cache."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

import httpx2
import pytest
from oauth.support import PKCE

from authserver import resources
from authserver.extensions import db

from .people import Person

REDIRECT_URI = "http://127.0.0.1:41999/callback"


def get_token(live, resource: str, scope: str, hub: str = "10000001") -> dict:
    """Register a public client, let Alice consent over HTTP, and exchange the code."""
    client_id = httpx2.post(f"{live.issuer}/oauth/register", json={
        "client_name": "Resource test client", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
    }).json()["client_id"]
    pkce = PKCE()
    url = f"{live.issuer}/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
        "state": secrets.token_urlsafe(8), "code_challenge": pkce.challenge, "code_challenge_method": "S256",
        "resource": resource, "scope": scope,
    })
    person = Person(live.issuer, live.email, live.password)
    try:
        code = person.authorize(url, hub=hub)["code"]
    finally:
        person.close()
    response = httpx2.post(f"{live.issuer}/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id,
        "code_verifier": pkce.verifier, "resource": resource,
    })
    assert response.status_code == 200, response.text
    return response.json()


def call_tool(live, token: str, name: str, arguments: dict) -> httpx2.Response:
    return httpx2.post(live.resource, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                            "params": {"name": name, "arguments": arguments}},
                       headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                                "MCP-Protocol-Version": "2025-06-18"})


def test_protected_resource_metadata_at_both_well_known_paths(live):
    origin = live.resource.removesuffix("/mcp")
    documents = [httpx2.get(origin + path) for path in
                 ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource")]
    for response in documents:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
    assert documents[0].content == documents[1].content
    metadata = documents[0].json()
    assert metadata["resource"] == live.resource
    assert metadata["authorization_servers"] == [live.issuer]  # byte for byte, no trailing slash
    assert f'"authorization_servers": ["{live.issuer}"]' in documents[0].text
    assert "offline_access" not in metadata["scopes_supported"]
    assert "crm.objects.notes.write" in metadata["scopes_supported"]


@pytest.mark.parametrize("authorization, error", [
    (None, None),
    ("Bearer not-a-real-token", "invalid_token"),
    ("Basic YWxpY2U6c2VjcmV0", None),
])
def test_401_challenges_point_to_the_metadata_and_the_scopes(live, authorization, error):
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx2.post(live.resource, json={}, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    metadata_url = live.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    assert f'resource_metadata="{metadata_url}"' in challenge
    assert 'scope="crm.objects.contacts.read crm.objects.companies.read crm.objects.deals.read ' \
           'crm.objects.tickets.read crm.objects.notes.read crm.objects.notes.write"' in challenge
    assert ('error="invalid_token"' in challenge) == (error == "invalid_token")


def test_a_token_for_another_resource_is_refused(live):
    with live.app.app_context():
        resources.create("https://other.example/mcp", "Other MCP", None, None)
        db.session.commit()
    token = get_token(live, "https://other.example/mcp", "crm.objects.contacts.read")
    response = call_tool(live, token["access_token"], "search_crm_objects", {"object_type": "contacts"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.live_config(MCP_CACHE_SECONDS=2)
def test_tools_read_only_the_tokens_hub_and_scopes(live):
    token = get_token(live, live.resource, "crm.objects.companies.read crm.objects.notes.write",
                      hub="10000001")["access_token"]
    companies = call_tool(live, token, "search_crm_objects", {"object_type": "companies", "query": "corp"})
    assert companies.status_code == 200, companies.text
    result = companies.json()["result"]["structuredContent"]
    assert [r["properties"]["name"] for r in result["results"]] == ["Acme Corporation"]  # not Globex Corporation

    note = call_tool(live, token, "create_note", {"object_type": "companies", "object_id": 1, "body": "Call back"})
    assert note.status_code == 200 and note.json()["result"]["structuredContent"]["body"] == "Call back"
    contacts = call_tool(live, token, "search_crm_objects", {"object_type": "contacts"})
    assert contacts.status_code == 403
    assert 'scope="crm.objects.contacts.read"' in contacts.headers["www-authenticate"]
    bad_filter = call_tool(live, token, "search_crm_objects", {"object_type": "companies", "filters": {"password": "x"}})
    assert bad_filter.json()["result"]["isError"] is True
    assert "Unknown companies properties: password" in bad_filter.text

    # A positive introspection answer is reused for a moment (2 s here, 5 s at most), then asked again.
    with live.app.app_context():
        from authserver import store
        from authserver.models import Grant

        store.revoke_grant(db.session.scalars(db.select(Grant)).one(), reason="test")
        db.session.commit()
    revoked_at = time.monotonic()
    assert call_tool(live, token, "search_crm_objects", {"object_type": "companies"}).status_code == 200
    assert time.monotonic() - revoked_at < 2
    time.sleep(2.1)
    assert call_tool(live, token, "search_crm_objects", {"object_type": "companies"}).status_code == 401
