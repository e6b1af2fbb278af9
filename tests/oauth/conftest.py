"""Fixtures for protocol tests: a demo world (user, hubs, resource server), a flow driver, and
the token and introspection endpoints with and without the WSGI lane."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from werkzeug.test import Client as WSGIClient

from authserver import accounts, resources
from authserver.extensions import db
from authserver.fastlane import FastLane
from authserver.models import Client
from authserver.secrets import CLIENT_SECRET_PREFIX, hash_secret, new_credential

from .support import PASSWORD, REDIRECT_URI, RESOURCE, PKCE, authorize_params, csrf_token, query, shown_hub


@pytest.fixture
def world(app):
    """alice: admin in Acme (10000001), viewer in Globex (10000002); bob: sales in Acme only.
    One resource server at RESOURCE; a second one at https://other.example/mcp."""
    with app.app_context():
        alice = accounts.create_user("alice@example.com", PASSWORD, "Alice")
        bob = accounts.create_user("bob@example.com", PASSWORD, "Bob")
        acme = accounts.create_hub("Acme", 10000001)
        globex = accounts.create_hub("Globex", 10000002)
        accounts.add_member(alice, acme, "admin")
        accounts.add_member(alice, globex, "viewer")
        accounts.add_member(bob, acme, "sales")
        mcp, mcp_secret = resources.create(
            RESOURCE, "CRM MCP", None,
            ["crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read"],
        )
        other, other_secret = resources.create("https://other.example/mcp", "Other MCP", None, None)
        db.session.commit()
        ns = SimpleNamespace(
            issuer=app.config["ISSUER"],
            alice_id=alice.id, bob_id=bob.id, acme_id=acme.id, globex_id=globex.id,
            mcp_auth=_basic(mcp.credential_id, mcp_secret),
            other_auth=_basic(other.credential_id, other_secret),
            mcp_id=mcp.id,
        )
    return ns


def _basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def register(client):
    """Register a client dynamically; returns the registration response body."""

    def register(**metadata):
        body = {
            "client_name": "Test MCP Client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        body.update(metadata)
        response = client.post("/oauth/register", json={k: v for k, v in body.items() if v is not None})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return register


@pytest.fixture
def preregistered(app):
    """A confidential, CLI-style client limited to some scopes; returns (client_id, secret)."""

    def make(allowed_scopes="crm.objects.contacts.read crm.objects.deals.read", redirect_uri=REDIRECT_URI):
        secret = new_credential(CLIENT_SECRET_PREFIX)
        with app.app_context():
            client = Client(
                client_id="pre-" + new_credential("", 8),
                client_secret_hash=hash_secret(secret),
                client_metadata={
                    "client_name": "Pre-registered App",
                    "redirect_uris": [redirect_uri],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                },
                registration="cli",
                allowed_scopes=allowed_scopes,
            )
            db.session.add(client)
            db.session.commit()
            return client.client_id, secret

    return make


class FlowDriver:
    """Plays the browser (login, consent) and the client (token requests) over the test client."""

    def __init__(self, client, world):
        self.client = client
        self.world = world

    def login(self, email="alice@example.com", password=PASSWORD):
        page = self.client.get("/login")
        response = self.client.post(
            "/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "email": email, "password": password}
        )
        assert response.status_code == 302, "login failed"

    def consent_page(self, params: dict, hub: str | None = None):
        return self.client.get("/oauth/authorize", query_string={**params, **({"hub": hub} if hub else {})})

    def decide(self, params: dict, hub="10000001", scopes=None, decision="allow"):
        page = self.consent_page(params, hub)
        assert page.status_code == 200, page.status_code
        html = page.get_data(as_text=True)
        data = {"csrf_token": csrf_token(html), "hub": hub, "shown_hub": shown_hub(html), "decision": decision}
        if scopes is None:
            scopes = params.get("scope", "").split()
        data["scope"] = scopes
        return self.client.post("/oauth/authorize", query_string=params, data=data)

    def get_code(self, client_id, pkce=None, hub="10000001", scopes=None, **overrides):
        pkce = pkce or PKCE()
        params = authorize_params(client_id, pkce, **overrides)
        response = self.decide(params, hub=hub, scopes=scopes)
        assert response.status_code == 302, response.get_data(as_text=True)
        result = query(response.headers["Location"])
        assert result["state"] == params["state"]
        assert result["iss"] == self.world.issuer
        return result["code"], pkce, params

    def exchange(self, *args, redirect_uri=REDIRECT_URI, **extra):
        client_id, code, pkce = args
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": pkce.verifier,
            "resource": RESOURCE,
        }
        data.update(extra)
        return self.client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})

    def tokens(self, client_id, **kwargs):
        code, pkce, _ = self.get_code(client_id, **kwargs)
        response = self.exchange(client_id, code, pkce)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def refresh(self, client_id, refresh_token, **extra):
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra}
        return self.client.post("/oauth/token", data=data)

    def introspect(self, token, auth=None):
        return self.client.post("/oauth/introspect", data={"token": token}, headers=auth or self.world.mcp_auth)


@pytest.fixture
def flow(client, world):
    driver = FlowDriver(client, world)
    driver.login()
    return driver


class Calls(list):
    """Paths that reached Flask through the lane; `snapshot`, if set, is taken as Flask starts."""

    snapshot = None
    seen_by_flask = None


@pytest.fixture
def paths(app):
    """(lane, flask, calls): WSGI clients for the app with and without the lane, and the requests
    that reached Flask through the lane."""
    lane = app.wsgi_app
    assert isinstance(lane, FastLane)
    calls = Calls()
    inner = lane.wsgi_app

    def counting(environ, start_response):
        calls.append(environ["PATH_INFO"])
        if calls.snapshot is not None:
            calls.seen_by_flask = calls.snapshot()
        return inner(environ, start_response)

    lane.wsgi_app = counting
    return WSGIClient(lane), WSGIClient(inner), calls
