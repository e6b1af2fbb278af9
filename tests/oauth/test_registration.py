"""Dynamic client registration (RFC 7591), management (RFC 7592) and the redirect-URI policy."""

from __future__ import annotations

from itertools import combinations

import pytest
from sqlalchemy import select

from authserver.extensions import db
from authserver.models import Client
from authserver.models.clients import is_loopback_redirect
from authserver.oauth.registration import redirect_uri_problem
from authserver.secrets import sha256_hex

from .support import (
    PKCE,
    REDIRECT_URI,
    assert_error_page,
    assert_oauth_error,
    authorize_params,
)

GOOD_REDIRECTS = [
    "https://chatgpt.com/connector_platform_oauth_redirect",
    "https://app.example.com/cb?x=1",
    "http://127.0.0.1/callback",
    "http://127.0.0.1:33418/callback",
    "http://[::1]:8080/cb",
    "http://localhost:6274/oauth/callback",
    "com.example.app:/oauth2redirect",
    "cursor://anysphere.cursor-retrieval/oauth/callback",
]
BAD_REDIRECTS = [
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "https://app.example.com/cb#frag",
    "https://user:pw@app.example.com/cb",
    "https://*.example.com/cb",
    "http://app.example.com/cb",
    "http://192.168.1.10/cb",
    "/relative/callback",
    "https:///nohost",
    "https://app.example.com/c b",
    "",
]


def test_public_client_gets_no_secret_and_no_null_members(client):
    body = client.post(
        "/oauth/register",
        json={
            "client_name": "MCP Inspector",
            "redirect_uris": ["http://localhost:6274/oauth/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "application_type": "native",
            "software_id": "inspector",
            "unknown_member": {"nested": True},
        },
    )
    assert body.status_code == 201
    assert body.headers["Cache-Control"] == "no-store"
    data = body.get_json()
    assert "client_secret" not in data and "client_secret_expires_at" not in data
    assert None not in data.values()
    assert data["client_name"] == "MCP Inspector" and data["token_endpoint_auth_method"] == "none"
    assert data["redirect_uris"] == ["http://localhost:6274/oauth/callback"]
    assert data["registration_client_uri"].endswith("/oauth/register/" + data["client_id"])
    assert data["registration_access_token"].startswith("asg_")


def test_confidential_client_secret_is_shown_once_and_stored_hashed(app, client):
    data = client.post("/oauth/register", json={"redirect_uris": ["https://app.example.com/cb"]}).get_json()
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    assert data["client_secret"].startswith("ass_") and data["client_secret_expires_at"] == 0
    with app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == data["client_id"]))
        assert row.client_secret_hash == sha256_hex(data["client_secret"])
        assert data["client_secret"] not in str(row.client_metadata)
        assert data["registration_access_token"] not in (row.registration_access_token_hash or "")


@pytest.mark.parametrize("uri", GOOD_REDIRECTS)
def test_allowed_redirect_uris(client, uri):
    response = client.post("/oauth/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("uri", BAD_REDIRECTS)
def test_refused_redirect_uris(client, uri):
    response = client.post("/oauth/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert_oauth_error(response, "invalid_redirect_uri")


BAD_METADATA = {
    "not an object": ([1, 2], "invalid_client_metadata"),
    "no redirect uris": ({"client_name": "x"}, "invalid_redirect_uri"),
    "redirect uris not a list": ({"redirect_uris": "https://a.example/cb"}, "invalid_client_metadata"),
    "name not a string": ({"redirect_uris": ["https://a.example/cb"], "client_name": 5}, "invalid_client_metadata"),
    "unknown auth method": ({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"),
    "implicit grant": ({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}, "invalid_client_metadata"),
    "token response type": ({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}, "invalid_client_metadata"),
    "too many redirect uris": ({"redirect_uris": [f"https://a.example/cb{i}" for i in range(21)]}, "invalid_redirect_uri"),
}


@pytest.mark.parametrize(("body", "error"), BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_bad_client_metadata(client, body, error):
    assert_oauth_error(client.post("/oauth/register", json=body), error)


def test_non_json_body_is_a_4xx_json_error(client):
    response = client.post("/oauth/register", data="redirect_uris=x", content_type="application/x-www-form-urlencoded")
    assert 400 <= response.status_code < 500 and response.get_json()["error"] == "invalid_request"
    response = client.post("/oauth/register", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_registration_scope_does_not_limit_later_requests(flow, register):
    client_id = register(scope="crm.objects.contacts.read")["client_id"]
    tokens = flow.tokens(client_id, scope="crm.objects.deals.read", scopes=["crm.objects.deals.read"])
    assert tokens["scope"] == "crm.objects.deals.read"


def test_closed_registration(app, client):
    app.config["REGISTRATION_MODE"] = "closed"
    response = client.post("/oauth/register", json={"redirect_uris": ["https://a.example/cb"]})
    assert_oauth_error(response, "access_denied", 403)
    assert "registration_endpoint" not in client.get("/.well-known/oauth-authorization-server").get_json()


def test_rfc7592_read_update_delete(client):
    data = client.post(
        "/oauth/register", json={"client_name": "One", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    ).get_json()
    uri = data["registration_client_uri"].replace("https://auth.test", "")
    auth = {"Authorization": f"Bearer {data['registration_access_token']}"}

    read = client.get(uri, headers=auth)
    assert read.status_code == 200 and read.get_json()["client_name"] == "One"
    assert client.get(uri).status_code == 401
    assert client.get(uri, headers={"Authorization": "Bearer asg_wrong"}).status_code == 401

    updated = client.put(
        uri, headers=auth,
        json={"client_id": data["client_id"], "client_name": "Two", "redirect_uris": [REDIRECT_URI],
              "token_endpoint_auth_method": "none"},
    )
    assert updated.status_code == 200 and updated.get_json()["client_name"] == "Two"
    bad = client.put(uri, headers=auth, json={"client_id": data["client_id"], "redirect_uris": ["javascript:x"],
                                              "token_endpoint_auth_method": "none"})
    assert_oauth_error(bad, "invalid_redirect_uri")

    other = client.post("/oauth/register", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}).get_json()
    other_uri = other["registration_client_uri"].replace("https://auth.test", "")
    assert client.get(other_uri, headers=auth).status_code in (400, 403)

    assert client.delete(uri, headers=auth).status_code == 204
    assert client.get(uri, headers=auth).status_code == 401
    params = {"response_type": "code", "client_id": data["client_id"], "redirect_uri": REDIRECT_URI,
              "code_challenge": PKCE().challenge, "code_challenge_method": "S256"}
    assert client.get("/oauth/authorize", query_string=params).status_code == 400


def test_cors_on_registration_and_token_but_not_pages(client):
    preflight = client.options("/oauth/register", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert client.options("/oauth/token").headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in client.get("/login").headers
    assert "Access-Control-Allow-Origin" not in client.post("/oauth/introspect").headers


# --- what a client may register is what the metadata document publishes (issue 15 item 5) -------
WELL_KNOWN = "/.well-known/oauth-authorization-server"
#: A public EC key (RFC 7517 Appendix A.1), and its private part.
PUBLIC_JWK = {"kty": "EC", "crv": "P-256", "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
              "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM", "kid": "1"}
PRIVATE_D = "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE"
#: The tables below register more clients a minute than the per-address limit allows.
UNLIMITED = {"REGISTRATION_RATE_LIMIT_PER_IP": "1000 per minute", "REGISTRATION_RATE_LIMIT_GLOBAL": "1000 per minute"}


def _register(client, **metadata):
    return client.post("/oauth/register", json={"redirect_uris": [REDIRECT_URI], **metadata})


def _subsets(values, most=3):
    return [list(c) for n in range(1, most + 1) for c in combinations(values, n)]


@pytest.mark.app_config(**UNLIMITED)
def test_registrable_grant_types_are_the_published_ones_with_authorization_code(client):
    published = set(client.get(WELL_KNOWN).get_json()["grant_types_supported"])
    candidates = ["authorization_code", "refresh_token", "implicit", "client_credentials", "password",
                  "urn:ietf:params:oauth:grant-type:device_code"]
    for grant_types in _subsets(candidates):
        response = _register(client, token_endpoint_auth_method="none", grant_types=grant_types)
        if "authorization_code" in grant_types and set(grant_types) <= published:
            assert response.status_code == 201, (grant_types, response.get_json())
            assert response.get_json()["grant_types"] == grant_types
        else:
            body = assert_oauth_error(response, "invalid_client_metadata")
            assert body["error_description"] == (
                "grant_types must include authorization_code and may add refresh_token only."), grant_types


@pytest.mark.app_config(**UNLIMITED)
def test_registrable_response_types_are_the_published_ones(client):
    published = set(client.get(WELL_KNOWN).get_json()["response_types_supported"])
    for response_types in _subsets(["code", "token", "id_token", "code id_token", "none"]):
        response = _register(client, token_endpoint_auth_method="none", response_types=response_types)
        if set(response_types) <= published:
            assert response.status_code == 201, (response_types, response.get_json())
        else:
            body = assert_oauth_error(response, "invalid_client_metadata")
            assert body["error_description"] == "response_types may only contain code.", response_types


@pytest.mark.parametrize("key_jwt", [True, False], ids=["private_key_jwt on", "private_key_jwt off"])
def test_registrable_auth_methods_are_the_published_ones(make_app, key_jwt):
    client = make_app(PRIVATE_KEY_JWT_ENABLED=key_jwt, **UNLIMITED).test_client()
    published = client.get(WELL_KNOWN).get_json()["token_endpoint_auth_methods_supported"]
    assert ("private_key_jwt" in published) is key_jwt
    for method in ["client_secret_basic", "client_secret_post", "private_key_jwt", "none", "client_secret_jwt",
                   "tls_client_auth", ""]:
        response = _register(client, token_endpoint_auth_method=method, jwks={"keys": [PUBLIC_JWK]})
        if method in published:
            assert response.status_code == 201, (method, response.get_json())
            assert response.get_json()["token_endpoint_auth_method"] == method
        else:
            body = assert_oauth_error(response, "invalid_client_metadata")
            assert body["error_description"] == f"token_endpoint_auth_method must be one of: {', '.join(published)}."


def test_a_registered_scope_is_never_a_reason_to_refuse(client):
    """The registered scope limits nothing later, so scopes this server does not know are no reason
    to refuse a client (generic libraries register openid or offline_access)."""
    assert _register(client, token_endpoint_auth_method="none", scope="openid offline_access made.up").status_code == 201


BAD_JWKS = {
    "private key material": {"keys": [{**PUBLIC_JWK, "d": PRIVATE_D}]},
    "not a key": {"keys": [{"kty": "EC"}]},
    "unknown key type": {"keys": [{"kty": "nonsense"}]},
    "no keys array": {},
    "keys not an array": {"keys": None},
    "not an object": [PUBLIC_JWK],
}


@pytest.mark.parametrize("method", ["private_key_jwt", "client_secret_basic"])
@pytest.mark.parametrize("jwks", BAD_JWKS.values(), ids=BAD_JWKS.keys())
def test_a_jwks_must_be_a_set_of_public_keys(client, method, jwks):
    body = assert_oauth_error(_register(client, token_endpoint_auth_method=method, jwks=jwks),
                              "invalid_client_metadata")
    assert "'jwks' must" in body["error_description"]


def test_a_jwks_of_public_keys_is_registered(client):
    response = _register(client, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [PUBLIC_JWK]})
    assert response.status_code == 201 and response.get_json()["jwks"] == {"keys": [PUBLIC_JWK]}


@pytest.mark.parametrize("member", ["client_uri", "logo_uri", "tos_uri", "policy_uri"])
def test_web_page_members_must_be_urls(client, member):
    for bad in ["javascript:alert(1)", "not a url", "https://app.example/about#team", "https://user@app.example/"]:
        body = assert_oauth_error(_register(client, **{member: bad}), "invalid_client_metadata")
        assert body["error_description"] == f"'{member}' must be an absolute URL without a fragment or user name."
    response = _register(client, **{member: "https://app.example/about"})
    assert response.status_code == 201 and response.get_json()[member] == "https://app.example/about"


# --- the loopback rule, one for registration, matching and installations (issue 15 item 2) -------
LOOPBACK = ["http://127.0.0.1{port}/cb", "http://localhost{port}/cb", "http://LocalHost{port}/cb",
            "http://[::1]{port}/cb", "HTTP://127.0.0.1{port}/cb?x=1"]
NOT_LOOPBACK = ["http://127.0.0.2{port}/cb", "http://localhost.{port}/cb", "http://127.0.0.1.evil.example{port}/cb",
                "http://[::2]{port}/cb", "http://0.0.0.0{port}/cb", "https://127.0.0.1{port}/cb",
                "https://localhost{port}/cb", "myapp://127.0.0.1{port}/cb"]
PORTS = ["", ":1", ":8080", ":65535"]


@pytest.mark.parametrize("port", PORTS)
def test_loopback_is_one_rule_for_registration_and_matching(port):
    for template in LOOPBACK + NOT_LOOPBACK:
        uri = template.format(port=port)
        loopback = template in LOOPBACK
        assert is_loopback_redirect(uri) is loopback, uri
        if uri.lower().startswith("http:"):
            assert (redirect_uri_problem(uri) is None) is loopback, uri  # http only on loopback
        registered = Client(client_metadata={"redirect_uris": [template.format(port="")]})
        # A loopback redirect URI matches on any port (RFC 8252 §7.3); any other only exactly.
        for other in PORTS:
            assert registered.check_redirect_uri(template.format(port=other)) is (loopback or other == ""), (uri, other)


@pytest.mark.parametrize("redirect_uri", ["http://[::1/cb", "http://127.0.0.1:99999/cb", "http://127.0.0.1:80:80/cb",
                                          "http://127.0.0.1:x/cb"])
def test_a_malformed_loopback_redirect_uri_is_refused_with_a_page(flow, register, redirect_uri):
    client_id = register(redirect_uris=["http://127.0.0.1/cb", "http://[::1]/cb"])["client_id"]
    assert_error_page(flow.client.get("/oauth/authorize", query_string=authorize_params(
        client_id, PKCE(), redirect_uri=redirect_uri)))
