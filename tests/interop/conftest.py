"""Fixtures for interop tests: the protocol fixtures of tests/oauth, and a live stack (authserver
over real HTTP in a thread, the example CRM MCP server as a subprocess), on free 127.0.0.1 ports."""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import stacks
from crm_mcp.data import CRM
from live import CRM_DATABASE, crm_mcp_server, free_port, live_flask
from oauth.conftest import flow, preregistered, register, world  # noqa: F401  (pytest fixtures)
from oauth.support import PASSWORD

from authserver import accounts, resources
from authserver.extensions import db

HUBS = (10000001, 10000002)
MCP_SCOPES = ["crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
              "crm.objects.notes.read", "crm.objects.notes.write"]


def pytest_configure(config):
    config.addinivalue_line("markers", "live_config(**settings): authserver settings for the `live` stack")


@pytest.fixture(scope="package")
def _stacks():
    """Live stacks are shared by every interop test with the same settings, whatever its module."""
    yield from stacks()


@pytest.fixture
def live(request, shared_stack, build_app, tmp_path_factory):
    """alice: admin in Acme Sales (10000001), viewer in Globex Support (10000002); the example
    CRM MCP server registered as a resource server and running. `@pytest.mark.live_config(...)`
    changes authserver's settings (e.g. ACCESS_TOKEN_LIFETIME). Started once per settings for the
    interop tests; each test begins from this seed (see shared_stack), and from the example server's
    own data as it was loaded, in `live.crm_database`."""
    marker = request.node.get_closest_marker("live_config")
    settings = dict(marker.kwargs) if marker else {}
    if "live_settings" in request.fixturenames:  # settings only known at run time (ports, paths)
        settings.update(request.getfixturevalue("live_settings"))
    ns = shared_stack(repr(sorted(settings.items())),
                      lambda: _live_stack(build_app, settings, tmp_path_factory.mktemp("live")))
    _copy_database(ns.crm_seed, ns.crm_database)
    return ns


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
            accounts.add_member(alice, accounts.create_hub("Acme Sales", HUBS[0]), "admin")
            accounts.add_member(alice, accounts.create_hub("Globex Support", HUBS[1]), "viewer")
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
            ns.crm_database, ns.crm_seed = str(workdir / CRM_DATABASE), str(workdir / f"seed-{CRM_DATABASE}")
            # The server loads a hub's records on its first use and remembers it did; loaded now,
            # they are in the copy each test starts from, and the server never loads them again.
            crm = CRM(ns.crm_database)
            for hub in HUBS:
                crm.ensure_hub(hub)
            _copy_database(ns.crm_database, ns.crm_seed)
            yield ns, ns.app


def _copy_database(source: str, target: str) -> None:
    """Overwrite the SQLite database `target` with `source` (SQLite's backup, safe while the
    example server has the file open)."""
    with closing(sqlite3.connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
        origin.backup(copy)
