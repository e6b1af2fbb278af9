"""Threat: silent approval for a client whose identity cannot be assured (issue 11 item 3;
RFC 8252 §8.6, RFC 9700 §2.1.1). Any program on the device can claim a public client's client_id
and listen on a loopback port or a private-use scheme; remembered consent would hand it a code
without the person seeing anything. Defence: for public clients redirecting to loopback or a
private-use scheme the consent page is shown every time, pre-filled with the person's last choice
for that installation, and says why. Confidential clients and https redirects keep remembered
consent."""

from __future__ import annotations

import re

import pytest
from cimd.conftest import _origin, cimd_settings, client_document, origin  # noqa: F401  (pytest fixtures)
from oauth.support import PKCE, authorize_params, shown_hub

from authserver import clients
from authserver.extensions import db

CONTACTS, COMPANIES = "crm.objects.contacts.read", "crm.objects.companies.read"
GLOBEX = "10000002"  # not the first hub: the page pre-selects it only because it was the last choice
WHY = "Apps that run on your device can't prove who they are, so we ask every time."

#: (redirect URI consented, redirect URI of the later request)
REDIRECTS = {
    "loopback, another port": ("http://127.0.0.1:7777/callback", "http://127.0.0.1:31337/callback"),
    "loopback, same port": ("http://127.0.0.1:7777/callback", "http://127.0.0.1:7777/callback"),
    "private-use scheme": ("com.example.app:/oauth/callback", "com.example.app:/oauth/callback"),
}


@pytest.fixture
def app(make_app, origin):  # noqa: F811
    return make_app(**cimd_settings(origin))


@pytest.fixture
def public_client(app, client, origin):  # noqa: F811
    """public_client(kind, redirect_uri) -> client_id of a public client of that kind."""

    def make(kind, redirect_uri):
        if kind == "dynamic":
            response = client.post("/oauth/register", json={
                "client_name": "Desktop App", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"})
            assert response.status_code == 201, response.get_json()
            return response.get_json()["client_id"]
        if kind == "preregistered":
            with app.app_context():
                created, _ = clients.create_preregistered("Desktop App", [redirect_uri], public=True)
                db.session.commit()
                return created.client_id
        client_id = origin.url("/desktop/client.json")
        origin.serve("/desktop/client.json", client_document(client_id, [redirect_uri]))
        return client_id

    return make


def _ticked(html: str) -> set[str]:
    return set(re.findall(r'name="scope" value="([^"]+)"\s+checked', html))


@pytest.mark.parametrize("redirects", REDIRECTS.values(), ids=REDIRECTS.keys())
@pytest.mark.parametrize("kind", ["dynamic", "preregistered", "cimd"])
def test_public_native_client_sees_the_consent_page_every_time(flow, public_client, kind, redirects):
    consented, later = redirects
    client_id = public_client(kind, consented)
    first = flow.decide(authorize_params(client_id, PKCE(), redirect_uri=consented, scope=f"{CONTACTS} {COMPANIES}"),
                        hub=GLOBEX, scopes=[CONTACTS])
    assert first.status_code == 302 and "code=" in first.headers["Location"]

    for scope in (CONTACTS, CONTACTS, f"{CONTACTS} {COMPANIES}"):  # every time, also for what was granted
        page = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=later, scope=scope))
        assert page.status_code == 200 and "Location" not in page.headers
        html = page.get_data(as_text=True)
        assert WHY in html
        assert shown_hub(html) == GLOBEX and re.search(rf'value="{GLOBEX}" checked', html)  # last hub
        assert _ticked(html) == {CONTACTS}  # last choice: companies stays unticked


@pytest.mark.parametrize("kind, redirect_uri", [
    ("confidential", "http://127.0.0.1:7777/callback"),
    ("public", "https://client.test/callback"),
])
def test_confidential_clients_and_https_redirects_keep_remembered_consent(app, flow, kind, redirect_uri):
    with app.app_context():
        created, _ = clients.create_preregistered("Web App", [redirect_uri], public=kind == "public")
        db.session.commit()
        client_id = created.client_id
    flow.decide(authorize_params(client_id, PKCE(), redirect_uri=redirect_uri, scope=CONTACTS))
    again = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=redirect_uri, scope=CONTACTS))
    assert again.status_code == 302 and again.headers["Location"].startswith(redirect_uri + "?code=")
    page = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=redirect_uri,
                                              scope=f"{CONTACTS} {COMPANIES}"))
    assert WHY not in page.get_data(as_text=True)
