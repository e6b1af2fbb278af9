"""Configuration: load order, and refusing to start with unsafe or malformed settings."""

from __future__ import annotations

import re

import pytest

from authserver import create_app
from authserver.config import ConfigError

LONG_KEY = "k" * 48
PRODUCTION = {"SECRET_KEY": LONG_KEY, "ISSUER": "https://auth.example.com", "DATABASE_URL": "sqlite://"}


def test_production_settings_start():
    app = create_app(PRODUCTION)
    assert not (app.debug or app.testing)
    assert app.config["ISSUER"] == "https://auth.example.com"
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    "secret_key",
    [pytest.param(None, id="unset"), pytest.param("too-short", id="short")],
)
def test_production_refuses_missing_or_weak_secret_key(secret_key):
    settings = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    if secret_key:
        settings["SECRET_KEY"] = secret_key
    with pytest.raises(ConfigError) as excinfo:
        create_app(settings)
    message = str(excinfo.value)
    assert message.startswith("Refusing to start: set AUTHSERVER_SECRET_KEY")
    assert "secrets.token_urlsafe" in message


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("http://auth.example.com", id="public name"),
        pytest.param("http://10.0.0.5:5200", id="private address"),
        pytest.param("http://0.0.0.0:5200", id="any address"),
        pytest.param("http://127.0.0.1.example.com", id="loopback-looking name"),
        pytest.param("http://localhost.example.com", id="localhost subdomain"),
        pytest.param("http://127.0.0.1@auth.example.com", id="loopback userinfo"),
    ],
)
def test_production_refuses_http_issuer_off_loopback(issuer):
    with pytest.raises(ConfigError, match="must be an https URL in production"):
        create_app({**PRODUCTION, "ISSUER": issuer})


@pytest.mark.parametrize(
    "issuer", ["http://127.0.0.1:5200", "http://localhost:5200", "http://[::1]:5200", "http://127.0.0.1"]
)
def test_production_allows_http_issuer_on_loopback(issuer):
    # Traffic to a loopback host never leaves the machine: a local benchmark of the production
    # setup (make bench-serve) runs without --debug.
    app = create_app({**PRODUCTION, "ISSUER": issuer})
    assert not (app.debug or app.testing)
    assert app.config["ISSUER"] == issuer
    assert app.config["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize("mode", ["DEBUG", "TESTING"])
def test_http_issuer_allowed_for_local_development(mode):
    app = create_app({mode: True, "ISSUER": "http://127.0.0.1:5000", "DATABASE_URL": "sqlite://"})
    assert app.config["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("https://auth.example.com/tenant", id="path"),
        pytest.param("https://auth.example.com/", id="trailing slash"),
        pytest.param("https://auth.example.com?x=1", id="query"),
        pytest.param("https://auth.example.com#top", id="fragment"),
        pytest.param("auth.example.com", id="not absolute"),
        pytest.param("ftp://auth.example.com", id="scheme"),
    ],
)
def test_malformed_issuer_refused_even_in_testing(issuer):
    with pytest.raises(ConfigError, match="AUTHSERVER_ISSUER"):
        create_app({"TESTING": True, "ISSUER": issuer})


def test_environment_overrides_instance_file_and_test_config_overrides_environment(monkeypatch, instance_path):
    (instance_path / "config.py").write_text(
        "ISSUER = 'https://file.example'\nACCESS_TOKEN_LIFETIME = 600\nREFRESH_TOKEN_LIFETIME = 7200\n"
    )
    monkeypatch.setenv("AUTHSERVER_ISSUER", "https://env.example")
    monkeypatch.setenv("AUTHSERVER_ACCESS_TOKEN_LIFETIME", "900")  # parsed as JSON: an int

    app = create_app({"TESTING": True, "REFRESH_TOKEN_LIFETIME": 60})
    assert app.config["ISSUER"] == "https://env.example"
    assert app.config["ACCESS_TOKEN_LIFETIME"] == 900
    assert app.config["REFRESH_TOKEN_LIFETIME"] == 60

    assert create_app({"TESTING": True, "ISSUER": "https://test.example"}).config["ISSUER"] == "https://test.example"


def test_environment_issuer_is_checked_too(monkeypatch):
    monkeypatch.setenv("AUTHSERVER_ISSUER", "https://env.example/oauth")
    with pytest.raises(ConfigError, match="no path"):
        create_app({"TESTING": True})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@db:5432/auth", "postgresql+psycopg://u@db:5432/auth"),
        ("postgres://u@db/auth", "postgresql+psycopg://u@db/auth"),
        ("sqlite:////var/lib/authserver.sqlite3", "sqlite:////var/lib/authserver.sqlite3"),
    ],
)
def test_database_url_uses_psycopg3(url, expected):
    assert create_app({"TESTING": True, "DATABASE_URL": url}).config["SQLALCHEMY_DATABASE_URI"] == expected


def test_default_database_is_sqlite_in_instance_folder(instance_path):
    uri = create_app({"TESTING": True}).config["SQLALCHEMY_DATABASE_URI"]
    assert uri == f"sqlite:///{instance_path}/authserver.sqlite3"


def test_unknown_registration_mode_refused():
    with pytest.raises(ConfigError, match="AUTHSERVER_REGISTRATION_MODE"):
        create_app({"TESTING": True, "REGISTRATION_MODE": "sometimes"})


CUSTOM_CATALOG = {
    "tickets.read": {"description": "View your tickets", "group": "Tickets"},
    "tickets.write": {"description": "Create and edit your tickets"},
}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"SCOPE_CATALOG": {"bad scope": {"description": "x"}}}, "Invalid scope name",
                     id="scope name with a space"),
        pytest.param({"SCOPE_CATALOG": {"tickets.read": {"group": "Tickets"}}}, "needs a 'description'",
                     id="scope without description"),
        pytest.param({"SCOPE_CATALOG": {}}, "non-empty", id="empty catalog"),
        pytest.param({"SCOPE_CATALOG": CUSTOM_CATALOG}, "names unknown scopes",
                     id="default roles name scopes missing from a custom catalog"),
        pytest.param({"ROLES": {"viewer": ["crm.objects.contacts.read", "crm.objects.nope.read"]}},
                     "crm.objects.nope.read", id="role with unknown scope"),
    ],
)
def test_scope_catalog_and_roles_validated_at_start(settings, message):
    with pytest.raises(ValueError, match=message):
        create_app({"TESTING": True, **settings})


def test_roles_from_environment_are_validated(monkeypatch):
    monkeypatch.setenv("AUTHSERVER_ROLES", '{"auditor": ["crm.objects.invoices.read"]}')
    with pytest.raises(ValueError, match="auditor"):
        create_app({"TESTING": True})


def test_custom_catalog_with_matching_roles():
    app = create_app(
        {"TESTING": True, "SCOPE_CATALOG": CUSTOM_CATALOG, "ROLES": {"agent": ["tickets.read"], "lead": ["*"]}}
    )
    assert set(app.extensions["authserver.scopes"]) == {"tickets.read", "tickets.write"}
    assert app.extensions["authserver.scopes"]["tickets.write"].group == "Other"
    assert app.extensions["authserver.roles"]["lead"] == {"tickets.read", "tickets.write"}


def test_authserver_needs_none_of_the_dev_extras(tmp_path):
    """httpx2, hypothesis and the other dev extras are for tests and tools: every module of
    authserver imports, and the app starts, in a process where importing any of them fails."""
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    blocked = sorted({re.split(r"[\[<>=~!; ]", spec, maxsplit=1)[0].lower().replace("-", "_") for spec in extras})
    assert {"httpx2", "hypothesis"} <= set(blocked)
    script = f"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].lower() in BLOCKED:
            raise ImportError("dev extra imported: " + name)
sys.meta_path.insert(0, Block())
import authserver
for module in pkgutil.walk_packages(authserver.__path__, "authserver."):
    importlib.import_module(module.name)
authserver.create_app({{"TESTING": True, "DATABASE_URL": "sqlite://"}})
import wsgi  # noqa
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": str(tmp_path),
           "AUTHSERVER_SECRET_KEY": "k" * 48, "AUTHSERVER_ISSUER": "https://auth.example.com",
           "AUTHSERVER_DATABASE_URL": f"sqlite:///{tmp_path}/authserver.sqlite3"}
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr


_PROVIDER = {"name": "corp", "display_name": "Corp", "issuer": "https://id.corp.example", "client_id": "a",
             "client_secret": "b"}


@pytest.mark.parametrize("providers, message", [
    ({"name": "corp"}, "must be a JSON list"),
    (["corp"], "provider 1 must be an object"),
    ([{**_PROVIDER, "name": "Corp IdP"}], r"`name` must match \[a-z0-9-\]"),
    ([{**_PROVIDER, "name": "c" * 33}], r"`name` must match"),
    ([_PROVIDER, {**_PROVIDER, "display_name": "Again"}], "named twice"),
    ([{k: v for k, v in _PROVIDER.items() if k != "client_secret"}], "needs `client_secret`"),
    ([{**_PROVIDER, "client_id": ""}], "needs `client_id`"),
    ([{**_PROVIDER, "client_secrt": "typo"}], "unknown keys: client_secrt"),
    ([{**_PROVIDER, "scopes": "email profile"}], "must include openid"),
    ([{**_PROVIDER, "issuer": "id.corp.example"}], "`issuer` must be an absolute URL"),
    ([{**_PROVIDER, "issuer": "https://id.corp.example/?tenant=1"}], "`issuer` must be an absolute URL"),
    ([{**_PROVIDER, "issuer": "http://id.corp.example"}], "must be an https URL in production"),
])
def test_upstream_providers_are_validated_at_start(providers, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**PRODUCTION, "UPSTREAM_PROVIDERS": providers})


def test_upstream_providers_get_their_defaults_and_loopback_http():
    loopback = {**_PROVIDER, "issuer": "http://127.0.0.1:3300"}
    app = create_app({**PRODUCTION, "UPSTREAM_PROVIDERS": [_PROVIDER, {**loopback, "name": "local"}]})
    corp, local = app.config["UPSTREAM_PROVIDERS"]
    assert corp["scopes"] == "openid email profile" and corp["name_claim"] == "name"
    assert local["issuer"] == "http://127.0.0.1:3300"


def test_upstream_providers_from_the_environment(monkeypatch):
    import json

    monkeypatch.setenv("AUTHSERVER_UPSTREAM_PROVIDERS", json.dumps([{**_PROVIDER, "scopes": "openid email"}]))
    app = create_app({**PRODUCTION})
    assert app.config["UPSTREAM_PROVIDERS"][0]["scopes"] == "openid email"


def test_password_login_off_needs_a_provider():
    with pytest.raises(ConfigError, match="nobody could sign in"):
        create_app({**PRODUCTION, "PASSWORD_LOGIN_ENABLED": False})
    create_app({**PRODUCTION, "PASSWORD_LOGIN_ENABLED": False, "UPSTREAM_PROVIDERS": [_PROVIDER]})
