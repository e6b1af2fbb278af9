"""Threat: spending someone else's rate-limit budget (issue 11 item 6).

A limit keyed on a name the request merely claims (the Basic user, a form client_id) lets anyone
get a victim client or resource server refused by sending junk in its name. Limits therefore key
on the caller's address until client authentication succeeds, then on the identity it proved (a
public client proves nothing, so its requests count per (client_id, address)); failed
authentications count against the address that sent them, and past a limit that address is
refused before anything else is looked at."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth.support import ALL_READ, REDIRECT_URI, RESOURCE, assert_oauth_error

from authserver import resources
from authserver.extensions import db

ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}
FAILURES = 3
PUBLIC_BUDGET = 4
LIMITS = pytest.mark.app_config(
    CLIENT_AUTH_FAILURES_PER_IP=f"{FAILURES} per minute",
    TOKEN_RATE_LIMIT=f"{PUBLIC_BUDGET} per minute",
    INTROSPECTION_RATE_LIMIT=f"{PUBLIC_BUDGET} per minute",
)


def junk(kind: str, victim: str, resource_id: str, public: str) -> tuple[str, dict]:
    """One request of the attacker's, naming a victim with a wrong secret (or no proof at all)."""
    refresh = {"grant_type": "refresh_token", "refresh_token": "asr_junk"}
    if kind == "token-basic":
        return "/oauth/token", {"data": refresh, "auth": (victim, "ass_wrong")}
    if kind == "token-post":
        return "/oauth/token", {"data": {**refresh, "client_id": victim, "client_secret": "ass_wrong"}}
    if kind == "token-public":  # a public client's id proves nothing: junk grants in its name
        return "/oauth/token", {"data": {**refresh, "client_id": public}}
    if kind == "revoke-basic":
        return "/oauth/revoke", {"data": {"token": "ast_junk"}, "auth": (victim, "ass_wrong")}
    if kind == "introspect-basic":
        return "/oauth/introspect", {"data": {"token": "ast_junk"}, "auth": (resource_id, "asrs_wrong")}
    return "/oauth/introspect", {"data": {"token": "ast_junk", "client_id": resource_id, "client_secret": "asrs_wrong"}}


KINDS = ["token-basic", "token-post", "token-public", "revoke-basic", "introspect-basic", "introspect-post"]


def expected_statuses(attack: list[str]) -> list[int]:
    """What the attacker's address must get: 401 per failed authentication until FAILURES of them,
    then 429 for everything; a public client's junk grant is 400 until its per-(client_id,
    address) budget is spent."""
    failures = publics = 0
    expected = []
    for kind in attack:
        if failures >= FAILURES:
            expected.append(429)
        elif kind == "token-public":
            publics += 1
            expected.append(400 if publics <= PUBLIC_BUDGET else 429)
        else:
            failures += 1
            expected.append(401)
    return expected


_examples = itertools.count(1)


@LIMITS
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attack=st.lists(st.sampled_from(KINDS), min_size=8, max_size=30))
def test_junk_in_a_victims_name_never_limits_the_victim(app, flow, preregistered, register, world, attack):
    # Fresh victims and a fresh attacker address per generated attack, so no counter carries over.
    n = next(_examples)
    attacker = {"REMOTE_ADDR": f"203.0.{n // 250}.{n % 250 + 1}"}
    victim, secret = preregistered()
    public = register(client_name=f"Public victim {n}")["client_id"]
    resource_uri = f"https://mcp{n}.example/mcp"
    with app.app_context():
        resource, resource_secret = resources.create(resource_uri, f"MCP {n}")
        resource_id = resource.credential_id
        db.session.commit()

    statuses = []
    for kind in attack:
        path, request = junk(kind, victim, resource_id, public)
        statuses.append(flow.client.post(path, environ_base=attacker, **request).status_code)
    assert statuses == expected_statuses(attack)

    # The victims, from their own address, are served as if nothing had happened.
    code, pkce, _ = flow.get_code(victim, scope="crm.objects.contacts.read", resource=resource_uri)
    exchange = flow.client.post("/oauth/token", auth=(victim, secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier, "resource": resource_uri})
    assert exchange.status_code == 200, exchange.get_json()
    for _ in range(PUBLIC_BUDGET):
        introspected = flow.client.post("/oauth/introspect", auth=(resource_id, resource_secret),
                                        data={"token": exchange.get_json()["access_token"]})
        assert introspected.status_code == 200 and introspected.get_json()["active"] is True
    public_tokens = flow.tokens(public, scope=ALL_READ)
    assert flow.refresh(public, public_tokens["refresh_token"]).status_code == 200


@LIMITS
def test_the_guessing_address_is_refused_after_the_failure_limit(client, preregistered, world):
    victim, secret = preregistered()
    with client.application.app_context():
        resource_id = resources.get_by_uri(RESOURCE).credential_id
    for kind in ["token-basic", "introspect-basic", "revoke-basic"][:FAILURES]:
        path, request = junk(kind, victim, resource_id, "unused")
        assert client.post(path, environ_base=ATTACKER, **request).status_code == 401
    # Refused before authentication, so even the right credentials don't help from there.
    for path, request in [("/oauth/token", {"data": {"grant_type": "refresh_token", "refresh_token": "asr_x"},
                                            "auth": (victim, secret)}),
                          ("/oauth/introspect", {"data": {"token": "x"}, "headers": world.mcp_auth})]:
        response = client.post(path, environ_base=ATTACKER, **request)
        assert_oauth_error(response, "temporarily_unavailable", 429)
        assert int(response.headers["Retry-After"]) > 0
    # Elsewhere, the same credentials work.
    assert client.post("/oauth/introspect", data={"token": "x"}, headers=world.mcp_auth).status_code == 200
