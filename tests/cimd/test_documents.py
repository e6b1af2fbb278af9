"""URL client_ids: the metadata document is fetched safely, validated, cached, and shown honestly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from oauth.support import PKCE, assert_error_page, authorize_params

from authserver.extensions import db
from authserver.models import AuditEvent, Client, RemoteDocument
from authserver.timeutil import utcnow

from .conftest import client_document

PATH = "/oauth/app/client.json"
REDIRECT = "https://client.test/callback"


def authorize(flow, client_id, redirect_uri=REDIRECT, **overrides):
    return flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=redirect_uri, **overrides))


def page_text(response) -> str:
    return response.get_data(as_text=True)


def events(app, name):
    with app.app_context():
        return [e.detail for e in db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name))]


def test_good_document_shows_consent_with_the_verified_domain(app, flow, origin):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT], client_name="Helpful Bot"))
    response = authorize(flow, client_id)
    assert response.status_code == 200, page_text(response)
    html = page_text(response)
    assert "Helpful Bot" in html
    assert 'Verified domain: <strong class="verified-domain">client.test</strong>' in html
    assert "this computer" not in html  # no loopback warning for an https redirect
    with app.app_context():
        client = db.session.scalar(db.select(Client).where(Client.client_id == client_id))
        assert client.registration == "cimd" and client.token_endpoint_auth_method == "none"
    [fetched] = events(app, "cimd.fetched")
    assert fetched["url"] == client_id and fetched["kind"] == "client"


def test_loopback_redirect_gets_a_clear_warning(flow, origin):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, ["http://127.0.0.1/callback"]))
    response = authorize(flow, client_id, redirect_uri="http://127.0.0.1:49152/callback")
    assert response.status_code == 200, page_text(response)
    assert "a program on <strong>this computer</strong>" in page_text(response)


@pytest.mark.parametrize("change, message", [
    ({"client_id": "https://client.test/other.json"}, "is not the URL it was fetched from"),
    ({"client_name": None}, "client_name is missing"),
    ({"redirect_uris": None}, "redirect_uris is missing"),
    ({"redirect_uris": ["http://evil.example/cb"]}, "only allowed on loopback"),
    ({"client_secret": "s3cret"}, "must not contain a client secret"),
    ({"token_endpoint_auth_method": "client_secret_basic"}, "allows token endpoint authentication only by"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "private_key_jwt needs jwks or jwks_uri"),
])
def test_invalid_documents_are_refused_with_what_is_wrong(app, flow, origin, change, message):
    client_id = origin.url(PATH)
    document = {k: v for k, v in {**client_document(client_id, [REDIRECT]), **change}.items() if v is not None}
    origin.serve(PATH, document)
    response = authorize(flow, client_id)
    assert_error_page(response)
    assert message in page_text(response)
    assert events(app, "cimd.invalid")


@pytest.mark.parametrize("serve, message", [
    (dict(raw=b'{"padding": "' + b"x" * 6000 + b'"}'), "larger than 5120 bytes"),
    # A short deadline (and a delay well past it) to wait out: the default 1 s would be most of the module's time.
    pytest.param(dict(raw=b"{}", delay=1.5), "did not answer within",
                 marks=pytest.mark.app_config(CIMD_FETCH_TIMEOUT=0.25)),
    (dict(raw=b"", status=302, headers={"Location": "https://client.test/elsewhere.json"}), "redirects are not followed"),
    (dict(raw=b"<html></html>", content_type="text/html"), "expected application/json"),
    (dict(raw=b"nope", status=500, content_type="text/plain"), "500"),
])
def test_unfetchable_documents_are_refused(app, flow, origin, serve, message):
    client_id = origin.url(PATH)
    origin.serve(PATH, **serve)
    response = authorize(flow, client_id)
    assert_error_page(response)
    assert "could not be fetched" in page_text(response) and message in page_text(response)
    [failure] = events(app, "cimd.fetch_failed")
    assert failure["served_stale"] is False and message in failure["reason"]


def test_redirect_uri_must_be_one_the_document_lists(flow, origin):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT]))
    response = authorize(flow, client_id, redirect_uri="https://client.test/other-callback")
    assert_error_page(response)
    assert "Location" not in response.headers


@pytest.mark.parametrize("host, address", [("internal.test", "127.0.0.1"), ("intranet.test", "10.0.0.1")])
def test_hosts_resolving_to_private_addresses_are_refused(make_app, origin, world, host, address):
    from oauth.conftest import FlowDriver

    from .conftest import cimd_settings

    settings = cimd_settings(origin)
    settings["CIMD_HOST_OVERRIDES"] = {**settings["CIMD_HOST_OVERRIDES"], host: address}
    app = make_app(**settings)
    driver = FlowDriver(app.test_client(), world)
    driver.login()
    client_id = origin.url(PATH, host=host)
    response = authorize(driver, client_id)
    assert_error_page(response)
    assert f"resolves to {address}" in page_text(response)
    assert origin.hits[PATH] == 0


@pytest.mark.parametrize("client_id, message", [
    ("https://client.test:8443/app.json", "port"),
    ("https://user@client.test/app.json", "user"),
    ("https://client.test/" + "a" * 2100 + ".json", "longer than 2000 characters"),
])
def test_client_id_urls_with_ports_or_userinfo_are_refused(flow, client_id, message):
    response = authorize(flow, client_id)
    assert_error_page(response)
    assert message in page_text(response)


@pytest.mark.app_config(CIMD_DENIED_DOMAINS=["client.test"])
def test_operator_denied_domain(flow, origin):
    response = authorize(flow, origin.url(PATH))
    assert_error_page(response)
    assert "not accepted by this server" in page_text(response)
    assert origin.hits[PATH] == 0


@pytest.mark.app_config(CIMD_ALLOWED_DOMAINS=["chatgpt.com"])
def test_operator_allow_list(flow, origin):
    response = authorize(flow, origin.url(PATH))
    assert_error_page(response)
    assert "list of accepted client domains" in page_text(response)


@pytest.mark.app_config(CIMD_ENABLED=False)
def test_url_client_ids_can_be_turned_off(client, flow, origin):
    assert client.get("/.well-known/oauth-authorization-server").get_json()["client_id_metadata_document_supported"] is False
    response = authorize(flow, origin.url(PATH))
    assert_error_page(response)


def test_metadata_advertises_documents(client):
    assert client.get("/.well-known/oauth-authorization-server").get_json()["client_id_metadata_document_supported"] is True


def test_cache_hit_without_refetch_then_refetch_after_expiry(app, flow, origin):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT]), headers={"Cache-Control": "max-age=600"})
    for _ in range(3):
        assert authorize(flow, client_id).status_code == 200
    assert origin.hits[PATH] == 1

    with app.app_context():
        row = db.session.scalar(db.select(RemoteDocument).where(RemoteDocument.url == client_id))
        assert 590 <= (row.expires_at - row.fetched_at).total_seconds() <= 600
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    origin.serve(PATH, client_document(client_id, [REDIRECT], client_name="Renamed Bot"))
    response = authorize(flow, client_id)
    assert origin.hits[PATH] == 2
    assert "Renamed Bot" in page_text(response)


def test_stale_copy_is_used_while_the_origin_fails_then_refused(app, flow, origin):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT]))
    assert authorize(flow, client_id).status_code == 200
    with app.app_context():
        row = db.session.scalar(db.select(RemoteDocument).where(RemoteDocument.url == client_id))
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    origin.serve(PATH, raw=b"down", status=503, content_type="text/plain")
    assert authorize(flow, client_id).status_code == 200
    assert [e["served_stale"] for e in events(app, "cimd.fetch_failed")] == [True]

    with app.app_context():
        row = db.session.scalar(db.select(RemoteDocument).where(RemoteDocument.url == client_id))
        row.stale_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
    response = authorize(flow, client_id)
    assert_error_page(response)
    assert "503" in page_text(response)


def test_document_flow_completes_with_a_public_client(flow, origin):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT]))
    code, pkce, params = flow.get_code(client_id, redirect_uri=REDIRECT, scope="crm.objects.contacts.read")
    response = flow.exchange(client_id, code, pkce, redirect_uri=REDIRECT)
    assert response.status_code == 200, response.get_json()
    body = flow.introspect(response.get_json()["access_token"]).get_json()
    assert body["active"] is True and body["client_id"] == client_id


@pytest.mark.app_config(CIMD_FETCH_RATE_LIMIT="3 per minute")
def test_outbound_fetches_are_limited_per_address(flow, origin):
    """Ever-new URL client_ids can't make the server fetch without bound; cached ones cost nothing."""
    for n in range(3):
        client_id = origin.url(f"/many/{n}.json")
        origin.serve(f"/many/{n}.json", client_document(client_id, [REDIRECT]))
        assert authorize(flow, client_id).status_code == 200
    fourth = origin.url("/many/3.json")
    origin.serve("/many/3.json", client_document(fourth, [REDIRECT]))
    response = authorize(flow, fourth)
    assert_error_page(response)
    assert "too many metadata documents fetched" in page_text(response)
    assert origin.hits["/many/3.json"] == 0
    assert authorize(flow, origin.url("/many/0.json")).status_code == 200  # cached: no fetch needed
