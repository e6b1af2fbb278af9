"""JWT access tokens (RFC 9068) for resource servers whose token format is `jwt`: verified by
verifiers we did not write through the jwks_uri, carrying the four facts introspection answers,
and still introspectable and revocable like opaque tokens."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from clock import Clock
from joserfc import jwt as josejwt
from joserfc.jwk import KeySet

from authserver import accounts, keys, resources
from authserver.extensions import db
from authserver.models import ResourceServer
from authserver.timeutil import to_epoch, utcnow

from .support import RESOURCE

READ = "crm.objects.contacts.read"
CLAIMS = {"iss", "sub", "aud", "client_id", "scope", "hub_id", "user_id", "iat", "exp", "jti", "auth_time"}


@pytest.fixture
def jwt_resource(app, world):
    """The world's MCP resource server issues JWT access tokens."""
    with app.app_context():
        resources.set_token_format(db.session.get(ResourceServer, world.mcp_id), resources.JWT)
        db.session.commit()


def fetch_jwks(client) -> dict:
    """The JWKS, found as any verifier finds it: through the metadata's jwks_uri."""
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    response = client.get(urlsplit(metadata["jwks_uri"]).path)
    assert response.status_code == 200
    return response.get_json()


class Validator(JWTBearerTokenValidator):
    """Authlib's RFC 9068 validator, given the JWKS the server published."""

    def __init__(self, jwks, **kwargs):
        super().__init__(**kwargs)
        self.jwks = jwks

    def get_jwks(self):
        return KeySet.import_key_set(self.jwks)


def authlib_verify(token: str, jwks: dict, issuer: str, audience: str = RESOURCE, scopes=(READ,)):
    validator = Validator(jwks, issuer=issuer, resource_server=audience)
    claims = validator.authenticate_token(token)
    validator.validate_token(claims, list(scopes), None)
    return claims


def pyjwt_verify(token: str, jwks: dict, issuer: str, audience: str = RESOURCE) -> dict:
    """PyJWT, with the key the header's kid names in the published JWKS."""
    key = pyjwt.PyJWKSet.from_dict(jwks)[pyjwt.get_unverified_header(token)["kid"]]
    return pyjwt.decode(token, key.key, algorithms=["ES256", "RS256"], audience=audience, issuer=issuer)


def header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.mark.parametrize("alg", [
    pytest.param("ES256", marks=pytest.mark.app_config(SIGNING_KEY_ALGORITHM="ES256")),
    pytest.param("RS256", marks=pytest.mark.app_config(SIGNING_KEY_ALGORITHM="RS256")),
])
def test_a_jwt_access_token_verifies_through_the_jwks_uri_with_independent_verifiers(
        alg, app, client, flow, register, world, jwt_resource):
    client_id = register()["client_id"]
    before = to_epoch(utcnow())
    tokens = flow.tokens(client_id, scope=f"{READ} crm.objects.contacts.write")
    token = tokens["access_token"]
    assert tokens["expires_in"] == app.config["JWT_ACCESS_TOKEN_LIFETIME"] == 300
    assert tokens["refresh_token"].startswith("asr_")  # refresh tokens stay opaque

    assert header(token)["typ"] == "at+jwt" and header(token)["alg"] == alg and header(token)["kid"]
    jwks = fetch_jwks(client)
    claims = authlib_verify(token, jwks, world.issuer)
    assert pyjwt_verify(token, jwks, world.issuer) == dict(claims)
    assert set(claims) == CLAIMS
    assert claims["iss"] == world.issuer and claims["aud"] == RESOURCE
    assert claims["client_id"] == client_id
    assert claims["sub"] == str(world.alice_id) and claims["user_id"] == world.alice_id
    assert claims["hub_id"] == 10000001
    assert claims["scope"] == f"{READ} crm.objects.contacts.write"
    assert claims["exp"] - claims["iat"] == 300 and before <= claims["iat"] <= to_epoch(utcnow())
    assert before - 60 <= claims["auth_time"] <= claims["iat"]

    # The same facts from introspection, while it is live.
    answer = flow.introspect(token).get_json()
    assert answer["active"] is True
    for name in ("client_id", "hub_id", "user_id", "sub", "scope", "aud", "iss", "exp", "iat"):
        assert answer[name] == claims[name], name


def test_verifiers_refuse_it_for_another_audience_issuer_or_scope(client, flow, register, world, jwt_resource):
    token = flow.tokens(register()["client_id"], scope=READ)["access_token"]
    jwks = fetch_jwks(client)
    for audience, issuer in (("https://other.example/mcp", world.issuer), (RESOURCE, "https://evil.example")):
        with pytest.raises(InvalidTokenError):
            authlib_verify(token, jwks, issuer, audience)
        with pytest.raises(pyjwt.InvalidTokenError):
            pyjwt_verify(token, jwks, issuer, audience)
    with pytest.raises(Exception, match="insufficient_scope"):
        authlib_verify(token, jwks, world.issuer, scopes=("crm.objects.deals.write",))


def test_a_token_without_the_at_jwt_type_is_refused(app, client, flow, register, world, jwt_resource):
    """RFC 9068 §4: a verifier refuses a JWT whose typ is not at+jwt, even signed with our key: the
    header is what tells an access token from another JWT we sign."""
    token = flow.tokens(register()["client_id"], scope=READ)["access_token"]
    with app.app_context():
        signer = keys.signing_key()
        claims = josejwt.decode(token, signer.private).claims
        retyped = josejwt.encode({"typ": "JWT", "alg": signer.alg, "kid": signer.kid}, claims, signer.private,
                                 algorithms=[signer.alg])
    jwks = fetch_jwks(client)
    authlib_verify(token, jwks, world.issuer)
    with pytest.raises(InvalidTokenError) as refused:
        authlib_verify(retyped, jwks, world.issuer)
    assert "typ" in str(refused.value.__cause__)


def test_opaque_stays_the_default(client, flow, register, world):
    tokens = flow.tokens(register()["client_id"])
    assert tokens["access_token"].startswith("ast_")
    assert tokens["expires_in"] == 3600


def test_a_revoked_jwt_or_one_whose_user_lost_the_permission_introspects_inactive(
        app, client, flow, register, world, jwt_resource):
    client_id = register()["client_id"]
    revoked = flow.tokens(client_id, scope=READ)["access_token"]
    assert flow.introspect(revoked).get_json()["active"] is True
    response = client.post("/oauth/revoke", data={"token": revoked, "client_id": client_id})
    assert response.status_code == 200
    assert flow.introspect(revoked).get_json() == {"active": False}

    alices = flow.tokens(client_id, scope=READ)["access_token"]  # alice, admin in Acme
    assert flow.introspect(alices).get_json()["active"] is True
    with app.app_context():
        accounts.remove_member(accounts.get_user_by_email("alice@example.com"), accounts.get_hub(10000001))
        db.session.commit()
    assert flow.introspect(alices).get_json() == {"active": False}


def test_another_resource_server_learns_nothing_about_it(flow, register, world, jwt_resource):
    token = flow.tokens(register()["client_id"], scope=READ)["access_token"]
    assert flow.introspect(token, auth=world.other_auth).get_json() == {"active": False}


def test_a_refresh_issues_a_new_jwt_with_the_same_auth_time_and_ends_the_old_one(
        client, flow, register, world, jwt_resource):
    client_id = register()["client_id"]
    first = flow.tokens(client_id, scope=READ)
    response = flow.refresh(client_id, first["refresh_token"])
    assert response.status_code == 200, response.get_json()
    second = response.get_json()
    jwks = fetch_jwks(client)
    old, new = (authlib_verify(t["access_token"], jwks, world.issuer) for t in (first, second))
    assert new["auth_time"] == old["auth_time"] and new["jti"] != old["jti"]
    assert flow.introspect(second["access_token"]).get_json()["active"] is True
    assert flow.introspect(first["access_token"]).get_json() == {"active": False}


def test_an_identical_retry_of_the_exchange_gets_the_same_jwt(flow, register, world, jwt_resource):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id, scope=READ)
    first = flow.exchange(client_id, code, pkce)
    again = flow.exchange(client_id, code, pkce)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert flow.introspect(first.get_json()["access_token"]).get_json()["active"] is True


def test_the_lane_answers_jwts_as_flask_does(app, flow, register, world, paths, jwt_resource):
    lane, flask, calls = paths
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id, scope=READ)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:7777/callback",
            "client_id": client_id, "code_verifier": pkce.verifier, "resource": RESOURCE}
    calls.clear()
    issued = lane.post("/oauth/token", data=form)
    assert issued.status_code == 200 and calls == []  # issued by the lane
    token = issued.get_json()["access_token"]
    assert header(token)["typ"] == "at+jwt"
    answers = [c.post("/oauth/introspect", data={"token": token}, headers=world.mcp_auth) for c in (lane, flask)]
    assert answers[0].get_json() == answers[1].get_json() and answers[0].get_json()["active"] is True
    assert calls == []


def test_the_jwks_is_published_with_caching_headers_and_only_public_halves(client, flow, register, jwt_resource):
    flow.tokens(register()["client_id"], scope=READ)
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["jwks_uri"] == f"{metadata['issuer']}/.well-known/jwks.json"
    response = client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    (key,) = response.get_json()["keys"]
    assert key["use"] == "sig" and key["alg"] == "ES256" and key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


# --- rotation, end to end ------------------------------------------------------------------------
def verify_now(token: str, jwks: dict, issuer: str) -> dict:
    """PyJWT's signature, typ-free claim and audience checks against the JWKS as published now,
    with expiry judged by the server's (moved) clock rather than the real one."""
    if pyjwt.get_unverified_header(token)["kid"] not in {k["kid"] for k in jwks["keys"]}:
        raise LookupError("the token's key is not published")
    claims = pyjwt.decode(token, pyjwt.PyJWKSet.from_dict(jwks)[header(token)["kid"]].key,
                          algorithms=["ES256"], audience=RESOURCE, issuer=issuer,
                          options={"verify_exp": False, "verify_iat": False})
    if claims["exp"] <= to_epoch(utcnow()):
        raise pyjwt.ExpiredSignatureError("expired")
    return claims


@pytest.mark.app_config(SIGNING_KEY_PREPUBLISH_SECONDS=600, JWKS_MAX_AGE=60)
def test_rotation_end_to_end(monkeypatch, app, client, runner, flow, register, world, jwt_resource):
    """A rotated-in key is published before it signs; tokens of the old key verify until they
    expire; a retired key leaves the JWKS once every token it signed has expired (lifetime 300 s,
    plus the 60 s an instance may still sign from its cache)."""
    clock = Clock(monkeypatch)
    client_id = register()["client_id"]

    def issue() -> str:
        return flow.tokens(client_id, scope=READ)["access_token"]

    def published() -> set[str]:
        return {k["kid"] for k in fetch_jwks(client)["keys"]}

    first = issue()
    old = header(first)["kid"]  # the first JWT made the first key, signing at once
    assert published() == {old}

    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    (new,) = published() - {old}
    assert new in result.output
    assert header(issue())["kid"] == old  # published, not signing yet

    clock.advance(599)
    last_of_old = issue()
    assert header(last_of_old)["kid"] == old
    clock.advance(2)  # past the pre-publication time
    first_of_new = issue()
    assert header(first_of_new)["kid"] == new
    assert published() == {old, new}
    verify_now(last_of_old, fetch_jwks(client), world.issuer)  # still valid, still verifiable

    clock.advance(297)  # 898 s: last_of_old (issued at 599 s) has a second left
    verify_now(last_of_old, fetch_jwks(client), world.issuer)
    assert flow.introspect(last_of_old).get_json()["active"] is True
    clock.advance(2)
    with pytest.raises(pyjwt.ExpiredSignatureError):
        verify_now(last_of_old, fetch_jwks(client), world.issuer)
    assert flow.introspect(last_of_old).get_json() == {"active": False}
    assert old in published()
    clock.advance(61)  # 961 s: past 600 + 300 + 60, when the old key left the JWKS
    assert published() == {new}

    # Retiring the signing key: within the instances' key cache (60 s) it signs nothing more, and
    # it stays published while the tokens it signed live.
    signed_before = issue()
    result = runner.invoke(args=["keys", "retire", new])
    assert result.exit_code == 0, result.output
    clock.advance(61)
    replacement = issue()
    assert header(replacement)["kid"] not in (old, new)
    assert published() == {new, header(replacement)["kid"]}
    clock.advance(238)  # 299 s after retirement: signed_before has a second left
    verify_now(signed_before, fetch_jwks(client), world.issuer)
    clock.advance(62)  # 361 s after retirement
    assert new not in published()
    with pytest.raises(LookupError):
        verify_now(signed_before, fetch_jwks(client), world.issuer)
