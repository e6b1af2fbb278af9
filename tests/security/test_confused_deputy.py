"""Threat 15: MCP confused deputy (MCP authorization spec, "Confused Deputy Problem"; RFC 9700
§4.7 / §2.5). Token passthrough is covered in test_audience.py.

Defence: remembered consent is looked up per (user, client_id, resource) and only for the same or
fewer scopes (consent.remembered_decision): a new client_id with the same name and redirect URI,
or the same client for another MCP server, sees the consent page again. An identical public
registration is deduplicated to the same client_id, which from then on nobody can manage
(test_shared_client_takeover.py), and remembered consent only covers the redirect URI the person
approved (test_consent_installation.py): a deduplicated client can only ever send codes to the
redirect URIs its users approved."""

from __future__ import annotations

from oauth.support import PKCE, REDIRECT_URI, authorize_params

from authserver import resources
from authserver.extensions import db

from .support import browser


def _remembered(flow, client_id, **overrides) -> bool:
    response = flow.consent_page(authorize_params(client_id, PKCE(), **overrides))
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 302


def test_confused_deputy_consent_not_reused_for_lookalike_dynamic_client(flow, register):
    # An https redirect URI: only there is consent remembered for a public client (RFC 8252 §8.6).
    app_uri = "https://claude.example/callback"
    trusted = register(client_name="Claude", software_id="claude-desktop", redirect_uris=[app_uri])["client_id"]
    flow.get_code(trusted, redirect_uri=app_uri)
    assert _remembered(flow, trusted, redirect_uri=app_uri)
    lookalike = register(client_name="Claude", software_id="claude-desktop-2", redirect_uris=[app_uri])["client_id"]
    assert lookalike != trusted
    assert not _remembered(flow, lookalike, redirect_uri=app_uri)


def test_confused_deputy_consent_not_reused_for_lookalike_confidential_client(flow, register, preregistered):
    trusted = register(client_name="Pre-registered App")["client_id"]
    flow.tokens(trusted)
    lookalike, _secret = preregistered(redirect_uri=REDIRECT_URI)  # same name and redirect URI
    assert not _remembered(flow, lookalike, scope="crm.objects.contacts.read")


def test_confused_deputy_consent_not_reused_for_another_mcp_server(app, flow, register):
    with app.app_context():
        resources.create("https://tickets.example/mcp", "Tickets MCP", None, None)
        db.session.commit()
    client_id = register()["client_id"]
    flow.tokens(client_id)
    assert not _remembered(flow, client_id, resource="https://tickets.example/mcp")


def test_confused_deputy_consent_not_reused_for_another_user(app, flow, register, world):
    client_id = register()["client_id"]
    flow.tokens(client_id)
    bob = browser(app, world, "bob@example.com")
    assert not _remembered(bob, client_id)


def test_confused_deputy_identical_reregistration_is_the_same_client(register):
    first, second = register(), register()
    assert first["client_id"] == second["client_id"]
    assert second["redirect_uris"] == first["redirect_uris"]
    assert "registration_access_token" not in second  # and the first registrant's token stops working
