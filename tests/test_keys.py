"""Signing keys: sealed at rest under a key from configuration, rotated and retired on a schedule
by the CLI, and never in plain text in the database, the logs or the command output."""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import timedelta

import pytest
from clock import Clock
from conftest import TEST_SETTINGS
from sqlalchemy import text

from authserver import create_app, keys, resources
from authserver.config import ConfigError
from authserver.extensions import db
from authserver.models import SigningKey
from authserver.timeutil import utcnow

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
KEK = "kek-" + "x" * 40


def private_values(app) -> list[str]:
    """Every private JWK member of every key, decrypted the way the server decrypts them."""
    found = []
    with app.app_context():
        for key in keys.find_keys():
            private = keys._unseal(key.kid, key.private_jwk_sealed).as_dict(private=True)
            found += [private[m] for m in PRIVATE_MEMBERS if m in private]
    assert found
    return found


def raw_values(app) -> list:
    """Every column of every signing-key row as the database returns it (bytes or text)."""
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM signing_keys")).all()
    return [bytes(v) if isinstance(v, (bytes, memoryview)) else str(v) for row in rows for v in row]


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_private_keys_are_never_in_plain_text(app, runner, caplog):
    caplog.set_level(logging.DEBUG)
    outputs = [runner.invoke(args=["keys", "rotate", "--alg", alg]) for alg in ("ES256", "RS256")]
    outputs.append(runner.invoke(args=["keys", "list"]))
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    with app.app_context():
        for key in keys.find_keys():
            assert not set(PRIVATE_MEMBERS) & set(json.loads(key.public_jwk))
    stored = raw_values(app)
    logged = caplog.text + "".join(r.output for r in outputs)
    for value in private_values(app):
        assert value not in logged
        for column in stored:
            # Neither the base64url text nor the raw bytes it encodes.
            assert (b64decode(value) not in column) if isinstance(column, bytes) else (value not in column)


def test_a_sealed_key_opens_only_with_its_encryption_key(make_app):
    first = make_app(SIGNING_KEY_ENCRYPTION_KEY=KEK)
    assert first.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    other = make_app(SIGNING_KEY_ENCRYPTION_KEY="another-" + "y" * 40)
    with other.app_context(), pytest.raises(keys.SigningKeyError, match="cannot be decrypted"):
        keys.signing_key().private  # noqa: B018
    with first.app_context():
        assert keys.signing_key().private.is_private


def test_keys_need_the_encryption_key_outside_debug_and_testing(make_app, make_resource):
    make_resource()
    production = make_app(TESTING=False)
    cli = production.test_cli_runner()
    for args in (["keys", "rotate"], ["resources", "set-format", "http://127.0.0.1:8001/mcp", "jwt"],
                 ["resources", "create", "https://jwt.example/mcp", "--name", "J", "--token-format", "jwt"]):
        result = cli.invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert "AUTHSERVER_SIGNING_KEY_ENCRYPTION_KEY" in result.output
    with production.app_context():
        assert keys.find_keys() == []
        assert resources.get_by_uri("http://127.0.0.1:8001/mcp").token_format == "opaque"
    configured = make_app(TESTING=False, SIGNING_KEY_ENCRYPTION_KEY=KEK).test_cli_runner()
    assert configured.invoke(args=["keys", "rotate"]).exit_code == 0
    assert configured.invoke(args=["resources", "set-format", "http://127.0.0.1:8001/mcp", "jwt"]).exit_code == 0


@pytest.mark.parametrize("settings, message", [
    ({"SIGNING_KEY_ENCRYPTION_KEY": "short"}, "at least 32"),
    ({"JWKS_MAX_AGE": 601, "SIGNING_KEY_PREPUBLISH_SECONDS": 600}, "must not exceed"),
    ({"SIGNING_KEY_ALGORITHM": "HS256"}, "ES256"),
])
def test_unsafe_key_settings_are_refused_at_start(settings, message, database_url):
    with pytest.raises(ConfigError, match=message):
        create_app({**TEST_SETTINGS, "DATABASE_URL": database_url, **settings})


@pytest.mark.app_config(SIGNING_KEY_PREPUBLISH_SECONDS=600, JWKS_MAX_AGE=60)
def test_the_rotation_schedule(monkeypatch, app, runner):
    """The first key signs at once; each next one is published 600 s before it signs, when the one
    before is retired; a retired key stays published JWT lifetime + cache time (360 s) longer."""
    clock = Clock(monkeypatch)
    assert "No signing keys yet" in runner.invoke(args=["keys", "list"]).output
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    with app.app_context():
        first, second = keys.find_keys()
        # Hex thumbprints: a kid never starts with "-", which `keys retire KID` would read as an option.
        assert all(re.fullmatch("[0-9a-f]{64}", k.kid) for k in (first, second))
        now = utcnow()
        assert keys.state(first, now) == "signing" and keys.state(second, now) == "pending"
        assert second.active_at - second.created_at == timedelta(seconds=600)
        assert first.retired_at == second.active_at
        assert first.published_until == first.retired_at + timedelta(seconds=360)
        assert keys.signing_key().kid == first.kid
    listing = runner.invoke(args=["keys", "list"]).output
    assert "signing" in listing and "pending" in listing

    clock.advance(601)
    with app.app_context():
        assert keys.signing_key().kid == second.kid
        assert {k["kid"] for k in keys.jwks()["keys"]} == {first.kid, second.kid}
    clock.advance(360)
    with app.app_context():
        assert {k["kid"] for k in keys.jwks()["keys"]} == {second.kid}
        assert keys.state(db.session.get(SigningKey, first.id), utcnow()) == "unpublished"


def test_retire_refuses_unknown_and_retired_keys_cleanly(app, runner):
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    with app.app_context():
        (key,) = keys.find_keys()
    unknown = runner.invoke(args=["keys", "retire", "no-such-kid"])
    assert unknown.exit_code == 1 and "No signing key no-such-kid" in unknown.output
    retired = runner.invoke(args=["keys", "retire", key.kid])
    assert retired.exit_code == 0 and "next JWT issued makes a new one" in retired.output
    again = runner.invoke(args=["keys", "retire", key.kid])
    assert again.exit_code == 1 and "already retired" in again.output
    assert "Traceback" not in unknown.output + again.output


def test_the_token_format_is_set_with_the_cli(app, runner):
    created = runner.invoke(args=["resources", "create", "https://jwt.example/mcp", "--name", "J",
                                  "--token-format", "jwt"])
    assert created.exit_code == 0, created.output
    assert "token format: jwt" in runner.invoke(args=["resources", "list"]).output
    assert runner.invoke(args=["resources", "set-format", "https://jwt.example/mcp", "opaque"]).exit_code == 0
    with app.app_context():
        assert resources.get_by_uri("https://jwt.example/mcp").token_format == "opaque"
    bad = runner.invoke(args=["resources", "set-format", "https://jwt.example/mcp", "paseto"])
    assert bad.exit_code == 2 and "paseto" in bad.output
    with app.app_context(), pytest.raises(resources.ResourceError, match="token format"):
        resources.set_token_format(resources.get_by_uri("https://jwt.example/mcp"), "paseto")
