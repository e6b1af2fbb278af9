"""RFC 8414 metadata: generated from the enforcing constants, valid, and consistent."""

from __future__ import annotations

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssMetadata

from authserver.oauth.grants import AuthorizationCodeGrant
from authserver.oauth.pkce import S256CodeChallenge


def test_metadata_document(client, app):
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    data = response.get_json()
    AuthorizationServerMetadata(data).validate(metadata_classes=[IssMetadata])
    issuer = app.config["ISSUER"]
    assert data["issuer"] == issuer and "/" not in issuer.split("://", 1)[1]
    for name in ("authorization", "token", "registration", "introspection", "revocation"):
        assert data[f"{name}_endpoint"].startswith(issuer + "/oauth/")
    assert data["response_types_supported"] == ["code"]
    assert data["code_challenge_methods_supported"] == ["S256"] == S256CodeChallenge.SUPPORTED_CODE_CHALLENGE_METHOD
    assert data["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert data["token_endpoint_auth_methods_supported"] == AuthorizationCodeGrant.TOKEN_ENDPOINT_AUTH_METHODS
    assert data["authorization_response_iss_parameter_supported"] is True
    assert "openid" not in data["scopes_supported"] and "offline_access" not in data["scopes_supported"]
    assert "crm.objects.contacts.read" in data["scopes_supported"]
    assert data["service_documentation"]


def test_no_openid_configuration(client):
    assert client.get("/.well-known/openid-configuration").status_code == 404


def test_every_advertised_endpoint_exists(client):
    data = client.get("/.well-known/oauth-authorization-server").get_json()
    for key in ("token_endpoint", "registration_endpoint", "introspection_endpoint", "revocation_endpoint"):
        path = data[key].split("://", 1)[1].split("/", 1)[1]
        assert client.post("/" + path).status_code != 404
