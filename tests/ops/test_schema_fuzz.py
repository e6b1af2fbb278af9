"""Schemathesis against the live app over real HTTP: generated requests from the shipped OpenAPI
description (authserver/openapi.yaml, also served at /openapi.yaml) must never produce a 5xx, and
every response must match the description (status, content type, body schema).

The number of examples per operation is bounded (FUZZ_EXAMPLES) so the suite stays quick; the
totals are printed (run with -s to see them)."""

from __future__ import annotations

import base64
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from live import live_flask
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from authserver import accounts, admin_credentials, resources
from authserver.extensions import db

SCHEMA = Path(__file__).resolve().parents[2] / "authserver" / "openapi.yaml"
FUZZ_EXAMPLES = int(os.environ.get("AUTHSERVER_TEST_FUZZ_EXAMPLES", "40"))
#: The admin API's twenty operations are thin views over one model and one set of checks: a
#: quarter of the examples each keeps the run short (its refusals are tested one by one in tests/admin).
ADMIN_FUZZ_EXAMPLES = max(5, FUZZ_EXAMPLES // 4)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SEEN: Counter[str] = Counter()


@pytest.fixture
def live_api(shared_stack, build_app):
    """authserver over real HTTP with a user, hub and resource server; rate limits out of the way
    (they are tested elsewhere; here they would only turn generated requests into 429s). Started
    once for the module: each test begins from this seed (see shared_stack)."""
    return shared_stack("live_api", lambda: _live_api(build_app))


@contextmanager
def _live_api(build_app):
    state, apps = {}, []

    def build(url):
        app = build_app(ISSUER=url, TOKEN_RATE_LIMIT="100000 per minute", INTROSPECTION_RATE_LIMIT="100000 per minute",
                        CLIENT_AUTH_FAILURES_PER_IP="100000 per minute",
                        REGISTRATION_RATE_LIMIT_PER_IP="100000 per minute", REGISTRATION_RATE_LIMIT_GLOBAL="100000 per minute")
        with app.app_context():
            user = accounts.create_user("fuzz@example.com", "correct horse battery", "Fuzz")
            accounts.add_member(user, accounts.create_hub("Fuzz hub", 10000009), "admin")
            resource, secret = resources.create("https://mcp.fuzz.example/mcp", "Fuzz MCP", None, None)
            credential, admin_secret = admin_credentials.create("Fuzz back end")
            db.session.commit()
            state["basic"] = _basic(resource.credential_id, secret)
            state["admin"] = _basic(credential.credential_id, admin_secret)
        apps.append(app)
        return app

    with live_flask(build) as server:
        state["url"] = server.url
        yield state, apps[0]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_description_is_served(live_api):
    served = httpx2.get(live_api["url"] + "/openapi.yaml")
    assert served.status_code == 200 and served.content == SCHEMA.read_bytes()
    assert served.headers["content-type"].startswith("application/yaml")


schema = schemathesis.openapi.from_path(SCHEMA)
ADMIN = "^/admin/"


@schema.exclude(path_regex=ADMIN).parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_5xx_and_match_the_schema(case, live_api):
    headers = {}
    if case.operation.path == "/oauth/introspect" and SEEN[case.operation.label] % 2 == 0:
        headers["Authorization"] = live_api["basic"]  # half the introspections authenticate for real
    call(case, live_api, headers)


@schema.include(path_regex=ADMIN).parametrize()
@settings(max_examples=ADMIN_FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_admin_requests_get_no_5xx_and_match_the_schema(case, live_api):
    # As the admin but one request in eight (those are refused with 401).
    call(case, live_api, {"Authorization": live_api["admin"]} if SEEN[case.operation.label] % 8 != 7 else {})


def call(case, live_api, headers: dict) -> None:
    response = case.call(base_url=live_api["url"], headers=headers, timeout=10)
    SEEN[case.operation.label] += 1
    SEEN[f"status {response.status_code // 100}xx"] += 1
    case.validate_response(response, checks=CHECKS)


def teardown_module(module):
    total = sum(v for k, v in SEEN.items() if not k.startswith("status"))
    print(f"\nschemathesis: {total} generated requests; by status: "
          + ", ".join(f"{k[7:]}={v}" for k, v in sorted(SEEN.items()) if k.startswith("status")))
