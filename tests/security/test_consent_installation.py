"""Threat: remembered consent reused for a redirect URI the person never approved (issue 11 item 2;
RFC 9700 §4.1, §2.1). A grant belongs to one installation: the redirect URI the person approved
(an http loopback URI without its port, RFC 8252 §7.3). Remembered consent is looked up per
installation for every kind of client, so a redirect URI added to a client later, or one it listed
but the person never approved, shows the consent page again; approving it records a second grant
and the first keeps working."""

from __future__ import annotations

import pytest
from cimd.conftest import _origin, cimd_settings, client_document, origin  # noqa: F401  (pytest fixtures)
from oauth.support import PKCE, authorize_params, query, shown_hub

from authserver import clients
from authserver.extensions import db
from authserver.models import Client, Grant

URI_A = "https://client.test/callback/a"
URI_B = "https://client.test/callback/b"
SCOPE = "crm.objects.contacts.read"
KINDS = ["dynamic", "preregistered", "cimd"]


@pytest.fixture
def app(make_app, origin):  # noqa: F811
    """The test app, also able to fetch metadata documents from the test origin."""
    return make_app(**cimd_settings(origin))


@pytest.fixture
def installation_client(app, client, origin):  # noqa: F811
    """installation_client(kind) -> (client_id, add_b): a client whose redirect URIs are A (and B,
    where the kind lists it from the start); add_b() makes B one of its redirect URIs."""

    def make(kind):
        if kind == "dynamic":
            registered = client.post("/oauth/register", json={
                "client_name": "Installation App", "redirect_uris": [URI_A], "token_endpoint_auth_method": "none",
            }).get_json()

            def add_b():  # its only registrant adds a redirect URI (RFC 7592)
                body = {k: v for k, v in registered.items()
                        if k not in ("registration_access_token", "registration_client_uri", "client_id_issued_at")}
                response = client.put(registered["registration_client_uri"].replace("https://auth.test", ""),
                                      json={**body, "redirect_uris": [URI_A, URI_B]},
                                      headers={"Authorization": f"Bearer {registered['registration_access_token']}"})
                assert response.status_code == 200, response.get_json()

            return registered["client_id"], add_b
        if kind == "preregistered":
            with app.app_context():
                created, _secret = clients.create_preregistered("Installation App", [URI_A, URI_B])
                db.session.commit()
                return created.client_id, lambda: None
        client_id = origin.url("/installation/client.json")
        origin.serve("/installation/client.json", client_document(client_id, [URI_A, URI_B]))
        return client_id, lambda: None

    return make


def _grants(app, client_id) -> list[tuple[str, str]]:
    with app.app_context():
        return [(g.redirect_uri, g.scope) for g in db.session.scalars(
            db.select(Grant).join(Client).where(Client.client_id == client_id).order_by(Grant.id))]


def _request(client_id, uri):
    return authorize_params(client_id, PKCE(), redirect_uri=uri, scope=SCOPE)


def _code_at(response, uri) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert response.headers["Location"].startswith(uri + "?")
    return query(response.headers["Location"])["code"]


@pytest.mark.parametrize("kind", KINDS)
def test_consent_for_one_redirect_uri_is_not_consent_for_another(app, flow, installation_client, kind):
    client_id, add_b = installation_client(kind)
    _code_at(flow.decide(_request(client_id, URI_A)), URI_A)
    assert _code_at(flow.consent_page(_request(client_id, URI_A)), URI_A)  # remembered for A
    add_b()

    page = flow.consent_page(_request(client_id, URI_B))
    assert page.status_code == 200 and "Location" not in page.headers
    assert page.mimetype == "text/html" and shown_hub(page.get_data(as_text=True))

    # Approving B is a second grant; the grant for A keeps working, each for its own URI.
    _code_at(flow.decide(_request(client_id, URI_B)), URI_B)
    assert _grants(app, client_id) == [(URI_A, SCOPE), (URI_B, SCOPE)]
    _code_at(flow.consent_page(_request(client_id, URI_A)), URI_A)
    _code_at(flow.consent_page(_request(client_id, URI_B)), URI_B)
