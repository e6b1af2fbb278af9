"""Token leakage through logs: a whole flow, with its failures, at DEBUG level, writes no token,
code, secret, assertion or password to any log. (The whole suite's log output is scanned the
same way at the end of every run: see tests/conftest.py.)"""

from __future__ import annotations

import logging

import pytest
from logscan import CREDENTIAL, Recorder
from oauth.support import ALL_READ, PASSWORD, PKCE, authorize_params

from authserver.secrets import (
    ACCESS_TOKEN_PREFIX,
    ADMIN_SECRET_PREFIX,
    REFRESH_TOKEN_PREFIX,
    RESOURCE_SECRET_PREFIX,
    new_credential,
)


@pytest.fixture
def debug_logs():
    recorder = Recorder().attach()
    levels = {name: logging.getLogger(name).level for name in ("authserver", "authlib", "werkzeug")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield recorder
    recorder.detach()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_the_scanner_recognises_what_it_looks_for():
    assert CREDENTIAL.search(f"token={new_credential(ACCESS_TOKEN_PREFIX)}")
    assert CREDENTIAL.search("password correct horse battery")
    assert CREDENTIAL.search("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwcyJ9.sig")
    assert not CREDENTIAL.search("client=abc hub=10000001 scope=crm.objects.contacts.read")
    # Every issued credential is found whole, whatever is around it; a prefix inside another
    # random identifier (a client_id seen in CI: "HZ0hwYOzasa_0xSl...") is not a credential.
    for prefix in (ADMIN_SECRET_PREFIX, RESOURCE_SECRET_PREFIX, REFRESH_TOKEN_PREFIX):
        credential = new_credential(prefix)
        for around in ("{}", "x={}", "'{}'", "[{}]", "Basic:{}", "{}."):
            assert CREDENTIAL.search(around.format(credential)), (prefix, around)
        assert not CREDENTIAL.search(f"client=HZ0hwYOz{prefix}0xSlYLSjX4dNtoRMfS79"), prefix


def test_no_credential_reaches_the_logs(flow, register, preregistered, debug_logs):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    flow.introspect(tokens["access_token"])
    refreshed = flow.refresh(client_id, tokens["refresh_token"]).get_json()
    flow.refresh(client_id, tokens["refresh_token"], scope="crm.objects.deals.read")  # a replay, refused
    flow.client.post("/oauth/revoke", data={"token": refreshed["access_token"], "client_id": client_id})
    confidential, secret = preregistered()
    flow.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                     auth=(confidential, secret + "x"))
    second = register(client_name="Second app")["client_id"]
    code, pkce, _ = flow.get_code(second, scope=ALL_READ)
    flow.exchange(second, code, PKCE())  # wrong verifier
    flow.exchange(second, code, pkce)
    flow.exchange(second, code, pkce)  # replay of the code
    flow.client.post("/login", data={"email": "alice@example.com", "password": PASSWORD})  # no CSRF token
    flow.consent_page(authorize_params(client_id, PKCE(), state=tokens["access_token"][:30]))

    issued = [tokens["access_token"], tokens["refresh_token"], refreshed["access_token"], code, secret, PASSWORD]
    text = "\n".join(debug_logs.lines)
    assert debug_logs.lines, "the flow writes log lines (audit events at least)"
    assert [value for value in issued if value in text] == []
    assert debug_logs.leaks() == []
