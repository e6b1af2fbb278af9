"""Fixtures for metadata-document clients: a real HTTPS origin (test CA), an app configured to
trust it, signing keys for private_key_jwt, and helpers to run a whole flow."""

from __future__ import annotations

import secrets
import time
import uuid
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oauth.conftest import FlowDriver, world  # noqa: F401  (pytest fixture)
from oauth.support import RESOURCE

from . import origin as origin_module

HOSTS = {"client.test": "127.0.0.1", "chatgpt.com": "127.0.0.1"}


@pytest.fixture(scope="session")
def _origin(tmp_path_factory):
    origin, httpd, thread = origin_module.start(tmp_path_factory.mktemp("origin-pki"))
    yield origin
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def origin(_origin):
    _origin.reset()
    return _origin


def cimd_settings(origin, **extra) -> dict:
    return {
        "CIMD_CA_BUNDLE": origin.ca_bundle,
        "CIMD_HOST_OVERRIDES": dict(HOSTS),
        "CIMD_ALLOWED_PRIVATE_HOSTS": list(HOSTS),
        "CIMD_ALLOWED_PORTS": [origin.port],
        "CIMD_FETCH_TIMEOUT": 1.0,
        **extra,
    }


@pytest.fixture
def app(request, make_app, origin):
    marker = request.node.get_closest_marker("app_config")
    return make_app(**cimd_settings(origin, **(marker.kwargs if marker else {})))


class Driver(FlowDriver):
    """The flow driver, also when consent is remembered (a repeat authorization redirects at once)."""

    def get_code(self, client_id, pkce=None, hub="10000001", scopes=None, **overrides):
        from oauth.support import PKCE, authorize_params, query

        pkce = pkce or PKCE()
        params = authorize_params(client_id, pkce, **overrides)
        first = self.consent_page(params, hub)
        if first.status_code == 302:
            result = query(first.headers["Location"])
            assert result["iss"] == self.world.issuer and result["state"] == params["state"]
            return result["code"], pkce, params
        return super().get_code(client_id, pkce, hub, scopes, **overrides | {"state": params["state"]})


@pytest.fixture
def flow(client, world):  # noqa: F811
    driver = Driver(client, world)
    driver.login()
    return driver


class Key:
    """A client signing key (RS256 or ES256) with its public JWK."""

    def __init__(self, alg: str = "ES256", kid: str | None = None):
        self.alg = alg
        self.kid = kid or uuid.uuid4().hex[:12]
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algorithm = jwt.algorithms.RSAAlgorithm
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            algorithm = jwt.algorithms.ECAlgorithm
        self.jwk = {**algorithm.to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "use": "sig", "alg": alg}

    def assertion(self, client_id: str, audience: str, **overrides) -> str:
        now = int(time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
                  "jti": secrets.token_urlsafe(16), **overrides}
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_document(client_id: str, redirect_uris: list[str], **extra) -> dict:
    return {"client_id": client_id, "client_name": "Example Assistant", "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none", **extra}


@pytest.fixture
def key():
    return Key("ES256")


@pytest.fixture
def ns(world, origin):  # noqa: F811
    return SimpleNamespace(world=world, origin=origin, resource=RESOURCE)
