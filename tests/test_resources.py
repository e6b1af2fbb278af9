"""Resource servers: canonical URIs (one server is never two audiences), creation rules and
introspection credentials stored only as slow hashes."""

from __future__ import annotations

import pytest

from authserver import resources, scopes
from authserver.extensions import db
from authserver.models import ResourceServer
from authserver.secrets import sha256_hex


@pytest.mark.parametrize(
    "uri, canonical",
    [
        ("https://MCP.Example.com/mcp", "https://mcp.example.com/mcp"),
        ("HTTPS://mcp.example.com/mcp/", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("http://127.0.0.1:8001/mcp", "http://127.0.0.1:8001/mcp"),
        ("http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp"),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("https://[::1]:8443/mcp", "https://[::1]:8443/mcp"),
        ("https://mcp.example.com/mcp?tenant=a", "https://mcp.example.com/mcp?tenant=a"),
    ],
)
def test_canonicalize(uri, canonical):
    assert resources.canonicalize(uri) == canonical


@pytest.mark.parametrize(
    "uri",
    ["", "mcp.example.com/mcp", "ftp://mcp.example.com", "https://mcp.example.com/mcp#frag",
     "https://user:pw@mcp.example.com/mcp", "https://mcp.example.com/m cp", "https://", "https://h:99999/x",
     "x" * 2001],
)
def test_canonicalize_refuses(uri):
    with pytest.raises(resources.ResourceError):
        resources.canonicalize(uri)


def test_a_second_spelling_of_the_same_uri_is_refused(app):
    with app.app_context():
        resources.create("https://mcp.example.com/mcp", "One")
        with pytest.raises(resources.ResourceError, match="already exists"):
            resources.create("HTTPS://MCP.example.com:443/mcp/", "Two")
        assert resources.get_by_uri("https://mcp.example.com/mcp/").name == "One"


def test_secret_is_stored_only_as_a_hash_and_rotation_replaces_it(app):
    with app.app_context():
        resource, secret = resources.create("https://mcp.example.com/mcp", "MCP")
        db.session.commit()
        row = db.session.get(ResourceServer, resource.id)
        assert secret not in row.credential_secret_hash
        assert row.credential_secret_hash == sha256_hex(secret)
        assert resources.authenticate(row.credential_id, secret).id == row.id
        assert resources.authenticate(row.credential_id, secret + "x") is None
        assert resources.authenticate("rs_unknown", secret) is None
        assert resources.authenticate(row.credential_id, "") is None

        new = resources.rotate_secret(row)
        db.session.commit()
        assert new != secret
        assert resources.authenticate(row.credential_id, secret) is None
        assert resources.authenticate(row.credential_id, new).id == row.id


def test_scopes_and_defaults_are_validated(app):
    with app.app_context():
        with pytest.raises(scopes.UnknownScopeError, match="crm.objects.nope.read"):
            resources.create("https://a.example/mcp", "A", ["crm.objects.nope.read"])
        with pytest.raises(resources.ResourceError, match="not accepted"):
            resources.create("https://a.example/mcp", "A", ["crm.objects.contacts.read"], ["crm.objects.deals.read"])
        resource, _ = resources.create("https://a.example/mcp", "A", ["crm.objects.contacts.read"])
        assert resource.default_scopes == "crm.objects.contacts.read"


@pytest.mark.parametrize("configured", [None, "https://B.example/mcp/"])
def test_default_resource(app, configured):
    app.config["DEFAULT_RESOURCE"] = configured
    with app.app_context():
        assert resources.get_default() is None
        resources.create("https://a.example/mcp", "A")
        if configured is None:
            assert resources.get_default().uri == "https://a.example/mcp"
        resources.create("https://b.example/mcp", "B")
        expected = None if configured is None else "https://b.example/mcp"
        assert getattr(resources.get_default(), "uri", None) == expected
