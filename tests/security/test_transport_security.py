"""Threat: TLS stripping on the first plain-http visit (issue 11 item 10; RFC 6797).

Defence: web.py sends `Strict-Transport-Security: max-age=31536000` on every response when the
issuer is https (pages, machine endpoints, redirects, errors), and nothing when it is http (a
local development server must stay reachable over http)."""

from __future__ import annotations

import pytest

HSTS = "max-age=31536000"


def every_kind_of_response(client):
    return {
        "page": client.get("/login"),
        "redirect": client.get("/"),
        "metadata": client.get("/.well-known/oauth-authorization-server"),
        "machine error": client.post("/oauth/token", data={"grant_type": "nope"}),
        "not found": client.get("/no/such/page"),
        "preflight": client.options("/oauth/token"),
    }


@pytest.mark.app_config(ISSUER="https://auth.example.com")
def test_https_issuer_sends_hsts_on_every_response(client):
    for kind, response in every_kind_of_response(client).items():
        assert response.headers.get("Strict-Transport-Security") == HSTS, kind


@pytest.mark.app_config(ISSUER="http://127.0.0.1:5000")
def test_http_issuer_sends_no_hsts(client):
    for kind, response in every_kind_of_response(client).items():
        assert "Strict-Transport-Security" not in response.headers, kind
