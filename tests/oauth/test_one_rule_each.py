"""One rule each, wherever it applies: whether a program or a person is on the other end (RFC 6749
JSON errors or an HTML page), decided once for every endpoint of the URL map."""

from __future__ import annotations

import pytest

from authserver import web

from .support import assert_oauth_error

#: The rule's answer for the endpoints everyone knows, so that the rule itself cannot drift.
KNOWN = {
    "oauth.token": True,
    "oauth.introspect": True,
    "oauth.revoke": True,
    "oauth.register": True,
    "oauth.client_configuration": True,
    "well_known.authorization_server_metadata": True,
    "authorize.authorize": False,
    "auth.login": False,
    "auth.index": False,
    "account.apps": False,
    "account.revoke": False,
}


def _concrete_paths(app):
    """(endpoint, path, methods) for every rule of the URL map, its variables filled in."""
    adapter = app.url_map.bind("auth.test")
    for rule in app.url_map.iter_rules():
        path = adapter.build(rule.endpoint, {name: 1 for name in rule.arguments})
        yield rule.endpoint, path, rule.methods


def _is_machine(app, path, method):
    """The one rule's verdict for this request (web.is_machine_request)."""
    with app.test_request_context(path, method=method, base_url="https://auth.test"):
        return web.is_machine_request()


def _assert_answered_to(response, machine: bool, what):
    assert 400 <= response.status_code < 500, (what, response.status_code)
    if machine:
        assert response.mimetype == "application/json", what
        body = response.get_json()
        assert isinstance(body["error"], str) and isinstance(body["error_description"], str), (what, body)
        assert response.headers["Cache-Control"] == "no-store", what
    else:
        assert response.mimetype == "text/html", what
        assert "Location" not in response.headers, what


# --- who is on the other end -----------------------------------------------------------------------
def test_the_rule_knows_the_endpoints_everyone_knows(app):
    verdicts = {endpoint: _is_machine(app, path, min(methods - {"OPTIONS", "HEAD"}))
                for endpoint, path, methods in _concrete_paths(app)}
    assert {endpoint: verdicts[endpoint] for endpoint in KNOWN} == KNOWN


def test_every_endpoint_answers_its_errors_as_the_rule_says(app, client):
    """For every rule of the URL map (a new endpoint is covered by being added): a request every
    endpoint refuses before it runs (a NUL in the query) and a method it does not take (405) are
    answered in RFC 6749 JSON to programs and with a page to people, as the one rule decides."""
    for endpoint, path, methods in _concrete_paths(app):
        method = "GET" if "GET" in methods else min(methods - {"OPTIONS", "HEAD"})
        machine = _is_machine(app, path, method)
        refused = client.open(path + "?x=a%00b", method=method)
        _assert_answered_to(refused, machine, (endpoint, method, "NUL"))
        assert refused.status_code == 400, endpoint
        not_allowed = client.open(path, method="PATCH")
        _assert_answered_to(not_allowed, machine, (endpoint, "PATCH"))
        assert not_allowed.status_code == 405, endpoint


@pytest.mark.parametrize(("path", "machine"), [
    ("/.well-known/openid-configuration", True),
    ("/oauth/no-such-endpoint", True),
    ("/oauth/token/extra", True),
    ("/no-such-page", False),
    ("/account/no-such-page", False),
])
def test_a_path_that_routes_nowhere_is_answered_by_the_prefix_it_is_under(app, client, path, machine):
    assert _is_machine(app, path, "GET") is machine
    response = client.get(path)
    assert response.status_code == 404
    _assert_answered_to(response, machine, path)


def test_an_oauth_error_raised_out_of_a_machine_view_is_rfc6749_json(client):
    """Authlib's errors are formatted by the one error handler (errors.py), not per blueprint."""
    body = assert_oauth_error(client.post("/oauth/revoke", data={"client_id": "nobody", "token": "x"}),
                              "invalid_client", 400)
    assert body["error_description"]
