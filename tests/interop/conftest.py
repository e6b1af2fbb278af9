"""Fixtures for interop tests: the protocol fixtures of tests/oauth, and a live stack (authserver
over real HTTP in a thread, the example CRM MCP server as a subprocess), on free 127.0.0.1 ports."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from live import crm_mcp_server, free_port, live_flask
from oauth.conftest import flow, preregistered, register, world  # noqa: F401  (pytest fixtures)
from oauth.support import PASSWORD

from authserver import accounts, resources
from authserver.extensions import db

MCP_SCOPES = ["crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
              "crm.objects.notes.read", "crm.objects.notes.write"]


def pytest_configure(config):
    config.addinivalue_line("markers", "live_config(**settings): authserver settings for the `live` stack")


@pytest.fixture
def live(request, shared_stack, build_app, tmp_path_factory):
    """alice: admin in Acme Sales (10000001), viewer in Globex Support (10000002); the example
    CRM MCP server registered as a resource server and running. `@pytest.mark.live_config(...)`
    changes authserver's settings (e.g. ACCESS_TOKEN_LIFETIME). Started once per module and
    settings; each test begins from this seed (see shared_stack)."""
    marker = request.node.get_closest_marker("live_config")
    settings = dict(marker.kwargs) if marker else {}
    if "live_settings" in request.fixturenames:  # settings only known at run time (ports, paths)
        settings.update(request.getfixturevalue("live_settings"))
    return shared_stack(repr(sorted(settings.items())),
                        lambda: _live_stack(build_app, settings, tmp_path_factory.mktemp("live")))


@contextmanager
def _live_stack(build_app, settings: dict, workdir: Path):
    settings = dict(settings)
    cache_seconds = settings.pop("MCP_CACHE_SECONDS", None)
    mcp_port = free_port()
    resource_uri = f"http://127.0.0.1:{mcp_port}/mcp"
    ns = SimpleNamespace(resource=resource_uri, password=PASSWORD, email="alice@example.com")

    def build(url):
        app = build_app(ISSUER=url, **settings)
        with app.app_context():
            alice = accounts.create_user(ns.email, PASSWORD, "Alice")
            accounts.add_member(alice, accounts.create_hub("Acme Sales", 10000001), "admin")
            accounts.add_member(alice, accounts.create_hub("Globex Support", 10000002), "viewer")
            resource, secret = resources.create(resource_uri, "Example CRM MCP server", None, MCP_SCOPES)
            db.session.commit()
            ns.credential_id, ns.secret = resource.credential_id, secret
        ns.app = app
        return app

    with live_flask(build) as server:
        ns.issuer = server.url
        with crm_mcp_server(issuer=server.url, port=mcp_port, client_id=ns.credential_id, client_secret=ns.secret,
                            workdir=workdir, cache_seconds=cache_seconds) as mcp:
            ns.mcp = mcp
            yield ns, ns.app
