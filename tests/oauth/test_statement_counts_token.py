"""SQL statements per token request (RFC 6749 §4.1.3 and §6): guards of the work /oauth/token does
(issue 12). A change that adds a query to a code exchange or a refresh fails here; statements are
named by verb and table, so swapping one for another fails too."""

from __future__ import annotations

import pytest

from authserver.extensions import db

from .support import REDIRECT_URI, RESOURCE


def _named(seen) -> list[str]:
    """'SELECT clients', 'UPDATE tokens', 'INSERT audit_events', ... for each statement."""
    names = []
    for statement in seen:
        words = statement.replace("\n", " ").split()
        verb = words[0].upper()
        if verb == "SELECT":
            table = words[words.index("FROM") + 1]
        elif verb == "INSERT":
            table = words[2]
        else:
            table = words[1]
        names.append(verb + " " + table.strip('"'))
    return names


# A code exchange and a refresh (the lane's LeanExchange and LeanRefresh): the client with the code
# or refresh token, its grant and the user's live membership in one read outside any transaction;
# then, on PostgreSQL, one statement in autocommit that consumes the code or rotates the token
# (keeping the sealed answer for a retry on its row), inserts the new pair and the audit event and
# rewrites last-used times (no BEGIN, no COMMIT); on SQLite the same writes as separate
# statements in one transaction. The consent just touched the grant; the client's first use is
# recorded (then once a minute).
EXCHANGE = {"postgresql": ["SELECT clients", "WITH redeemed"],
            "sqlite": ["SELECT clients", "UPDATE authorization_codes", "INSERT tokens", "INSERT audit_events",
                       "UPDATE clients"]}
REFRESH = {"postgresql": ["SELECT clients", "WITH rotated"],
           "sqlite": ["SELECT clients", "UPDATE tokens", "INSERT tokens", "INSERT audit_events"]}


@pytest.mark.parametrize("limits", [
    pytest.param(True, id="through Flask"),
    pytest.param(False, id="through the lane", marks=pytest.mark.app_config(RATELIMIT_ENABLED=False)),
])
def test_code_exchange_and_refresh_statements(limits, app, flow, register, statements):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id,
            "code_verifier": pkce.verifier, "resource": RESOURCE}
    with app.app_context():
        dialect = db.engine.dialect.name
    with statements() as seen:
        tokens = flow.client.post("/oauth/token", data=form).get_json()
    assert _named(seen) == EXCHANGE[dialect], _named(seen)
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    expected = REFRESH[dialect]
    for _ in range(2):
        with statements() as seen:
            response = flow.client.post("/oauth/token", data={**refresh, "refresh_token": tokens["refresh_token"]})
        assert response.status_code == 200
        tokens = response.get_json()
        assert _named(seen) == expected, _named(seen)
