"""Token lifecycle: idempotent retries, replay and reuse detection, introspection, revocation,
live permissions, and hashed storage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from security.support import age_rotation, end_grace_window
from sqlalchemy import inspect, select, text, update

from authserver import accounts
from authserver.extensions import db
from authserver.models import AuthorizationCode, Token
from authserver.timeutil import utcnow

from .support import RESOURCE, assert_oauth_error


def test_identical_code_redemption_returns_same_tokens(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    first = flow.exchange(client_id, code, pkce)
    second = flow.exchange(client_id, code, pkce)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()


def test_code_replay_with_other_parameters_revokes_tokens_from_the_code(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    tokens = flow.exchange(client_id, code, pkce).get_json()
    replay = flow.exchange(client_id, code, pkce, resource=None)  # not identical
    assert_oauth_error(replay, "invalid_grant")
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")


def test_code_replay_after_grace_window_revokes(app, flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    tokens = flow.exchange(client_id, code, pkce).get_json()
    end_grace_window(app)
    assert_oauth_error(flow.exchange(client_id, code, pkce), "invalid_grant")
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}


def test_refresh_rotates_and_identical_retry_in_grace_window_gets_same_pair(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    first = flow.refresh(client_id, tokens["refresh_token"])
    retry = flow.refresh(client_id, tokens["refresh_token"])
    assert first.status_code == retry.status_code == 200
    assert first.get_json() == retry.get_json()
    new = first.get_json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert first.headers["Cache-Control"] == "no-store"
    assert flow.introspect(new["access_token"]).get_json()["active"] is True
    # The new refresh token keeps working: the family continues.
    assert flow.refresh(client_id, new["refresh_token"]).status_code == 200


def test_refresh_reuse_after_grace_window_revokes_the_grant(app, flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    new = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    age_rotation(app, tokens["refresh_token"], 60)
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")
    assert flow.introspect(new["access_token"]).get_json() == {"active": False}
    assert_oauth_error(flow.refresh(client_id, new["refresh_token"]), "invalid_grant")


def test_refresh_scope_can_narrow_but_not_widen(flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scopes=["crm.objects.contacts.read", "crm.objects.contacts.write"])
    narrowed = flow.refresh(client_id, tokens["refresh_token"], scope="crm.objects.contacts.read").get_json()
    assert narrowed["scope"] == "crm.objects.contacts.read"
    widened = flow.refresh(client_id, narrowed["refresh_token"], scope="crm.objects.contacts.read crm.objects.deals.write")
    assert widened.status_code == 200 and widened.get_json()["scope"] == "crm.objects.contacts.read"
    # Without scope the consented scope is restored (RFC 6749 §6: omitted = originally granted).
    restored = flow.refresh(client_id, widened.get_json()["refresh_token"]).get_json()
    assert restored["scope"] == "crm.objects.contacts.read crm.objects.contacts.write"


def test_removing_user_from_hub_deactivates_tokens_and_refresh(app, flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, hub="10000001")
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True
    with app.app_context():
        alice, acme = accounts.get_user(world.alice_id), accounts.get_hub(10000001)
        accounts.remove_member(alice, acme)
        db.session.commit()
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}
    assert_oauth_error(flow.refresh(client_id, tokens["refresh_token"]), "invalid_grant")


def test_losing_a_permission_narrows_scope_immediately(app, flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, hub="10000001")
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == "crm.objects.contacts.read crm.objects.contacts.write"
    with app.app_context():
        accounts.deny_permission(accounts.get_user(world.alice_id), accounts.get_hub(10000001), "crm.objects.contacts.write")
        db.session.commit()
    assert flow.introspect(tokens["access_token"]).get_json()["scope"] == "crm.objects.contacts.read"
    assert flow.refresh(client_id, tokens["refresh_token"]).get_json()["scope"] == "crm.objects.contacts.read"


def test_disabled_user_tokens_are_inactive(app, flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    with app.app_context():
        accounts.get_user(world.alice_id).disabled = True
        db.session.commit()
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}


def test_introspection_by_another_resource_server_is_inactive(flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    assert flow.introspect(tokens["access_token"], auth=world.other_auth).get_json() == {"active": False}


def test_introspection_inactive_cases(app, flow, register, world):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    assert flow.introspect("ast_unknown").get_json() == {"active": False}
    assert flow.introspect(tokens["refresh_token"]).get_json() == {"active": False}
    with app.app_context():
        db.session.execute(update(Token).values(access_expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}


def test_introspection_requires_resource_server_credentials(flow, register, world, preregistered):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    response = flow.client.post("/oauth/introspect", data={"token": tokens["access_token"]})
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    # An OAuth client's credentials are not resource-server credentials.
    pre_id, pre_secret = preregistered()
    response = flow.client.post("/oauth/introspect", data={"token": tokens["access_token"]}, auth=(pre_id, pre_secret))
    assert_oauth_error(response, "invalid_client", 401)
    assert_oauth_error(flow.client.post("/oauth/introspect", data={}, headers=world.mcp_auth), "invalid_request")


def test_introspection_with_post_credentials(flow, register, app, world):
    from authserver import resources

    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    with app.app_context():
        resource = resources.get_by_uri(RESOURCE)
        secret = resources.rotate_secret(resource)
        credential_id = resource.credential_id
        db.session.commit()
    response = flow.client.post(
        "/oauth/introspect", data={"token": tokens["access_token"], "client_id": credential_id, "client_secret": secret}
    )
    assert response.get_json()["active"] is True
    assert flow.introspect(tokens["access_token"]).status_code == 401  # the old secret stopped working


def test_revocation(flow, register):
    client_id = register()["client_id"]
    other = register(client_name="Other")["client_id"]
    tokens = flow.tokens(client_id)
    # Unknown tokens and other clients' tokens: 200, nothing happens.
    assert flow.client.post("/oauth/revoke", data={"token": "nope", "client_id": client_id}).status_code == 200
    assert flow.client.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": other}).status_code == 200
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True
    # Revoking the access token ends only it.
    assert flow.client.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": client_id,
                                                   "token_type_hint": "whatever"}).status_code == 200
    assert flow.introspect(tokens["access_token"]).get_json() == {"active": False}
    refreshed = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    # Revoking a refresh token ends the grant's access tokens too.
    assert flow.client.post("/oauth/revoke", data={"token": refreshed["refresh_token"], "client_id": client_id}).status_code == 200
    assert flow.introspect(refreshed["access_token"]).get_json() == {"active": False}
    assert_oauth_error(flow.client.post("/oauth/revoke", data={"client_id": client_id}), "invalid_request")


def test_no_plaintext_code_token_or_secret_in_any_table(app, flow, register):
    confidential = register(token_endpoint_auth_method="client_secret_post")
    public = register()
    code, pkce, _ = flow.get_code(public["client_id"])
    tokens = flow.exchange(public["client_id"], code, pkce).get_json()
    refreshed = flow.refresh(public["client_id"], tokens["refresh_token"]).get_json()
    secrets = [
        code, tokens["access_token"], tokens["refresh_token"], refreshed["access_token"], refreshed["refresh_token"],
        confidential["client_secret"], confidential["registration_access_token"], public["registration_access_token"],
    ]
    with app.app_context():
        dump = []
        for table in inspect(db.engine).get_table_names():
            for row in db.session.execute(text(f'SELECT * FROM "{table}"')):
                dump.extend(repr(value) for value in row)
        blob = "\n".join(dump)
        assert len(blob) > 1000
        for secret in secrets:
            assert secret not in blob
            assert secret[4:20] not in blob
        # The answers kept for retries are there, sealed: on the redeemed code and the rotated token.
        assert db.session.scalar(select(AuthorizationCode.replay).where(AuthorizationCode.replay.is_not(None)))
        assert db.session.scalar(select(Token.replay).where(Token.replay.is_not(None)))


@pytest.mark.parametrize("credential, context", [
    ("rt_" + "a" * 43, ["refresh_token", "client", "", ""]),
    ("", []),
    ("ac_x", ["authorization_code", "c", "https://app.example/cb", "v" * 128, "https://mcp.example/"]),
    ("\ud800 é", ["\x00", "ü" * 300]),
])
def test_the_replay_key_is_rfc_5869_hkdf_sha256(credential, context):
    """The replay envelope's key (oauth/tokens.py _derive_key, made with the standard library's
    HMAC) is byte for byte cryptography's HKDF-SHA256: answers sealed before it are still opened."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from authserver.oauth import tokens

    material = "\x00".join([credential, *context]).encode("utf-8", "surrogatepass")
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authserver replay-cache v1").derive(material)
    assert tokens._derive_key(credential, context) == expected
    sealed = tokens.seal(credential, context, {"access_token": "at_1"})
    assert tokens.unseal(credential, context, sealed) == {"access_token": "at_1"}
    assert tokens.unseal(credential + "x", context, sealed) is None
