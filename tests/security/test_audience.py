"""Threat 10 (and 15, token passthrough): audience confusion between resource servers
(RFC 9700 §2.3, §4.10; RFC 8707; MCP authorization "token passthrough").

Defence: the `resource` is bound to the code, the grant and the token (its `aud`); a resource
server only learns about tokens whose audience is itself; any other token is exactly
{"active": false}."""

from __future__ import annotations

import base64

import pytest
from oauth.support import PKCE, RESOURCE, assert_oauth_error, assert_redirect_error, authorize_params

from authserver import resources
from authserver.extensions import db

from .support import INACTIVE

TICKETS = "https://tickets.example/mcp"


@pytest.fixture
def tickets(app, world):
    """A second MCP server ("B"), beside the world's CRM MCP server ("A") at RESOURCE."""
    with app.app_context():
        resource, secret = resources.create(TICKETS, "Tickets MCP", None, None)
        db.session.commit()
        raw = base64.b64encode(f"{resource.credential_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_audience_token_for_a_is_inactive_for_b(flow, register, tickets):
    client_id = register()["client_id"]
    token = flow.tokens(client_id)["access_token"]
    assert flow.introspect(token, auth=tickets).get_json() == INACTIVE
    answer = flow.introspect(token).get_json()
    assert answer["active"] is True and answer["aud"] == RESOURCE


def test_audience_token_for_b_is_inactive_for_a(flow, register, tickets):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id, resource=TICKETS)
    token = flow.exchange(client_id, code, pkce, resource=TICKETS).get_json()["access_token"]
    assert flow.introspect(token).get_json() == INACTIVE
    answer = flow.introspect(token, auth=tickets).get_json()
    assert answer["active"] is True and answer["aud"] == TICKETS


def test_audience_code_for_a_cannot_be_redeemed_for_b(flow, register, tickets):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, pkce, resource=TICKETS), "invalid_target")


def test_audience_refresh_token_for_a_cannot_mint_a_token_for_b(flow, register, tickets):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"], resource=TICKETS), "invalid_target")
    refreshed = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    assert flow.introspect(refreshed["access_token"]).get_json()["aud"] == RESOURCE
    assert flow.introspect(refreshed["access_token"], auth=tickets).get_json() == INACTIVE


def test_audience_unknown_resource_is_invalid_target(flow, register, world):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), resource="https://evil.example/mcp")
    assert_redirect_error(flow.client.get("/oauth/authorize", query_string=params), "invalid_target",
                          params["state"], world.issuer)
