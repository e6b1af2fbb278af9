"""Observability: request ids on every log line, health and readiness, Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging

import pytest
from oauth.support import ALL_READ

from authserver.logs import JsonFormatter, RequestIdFilter


@pytest.fixture
def log_lines():
    """Every line the authserver loggers write during the test, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("authserver")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_every_log_line_of_a_request_carries_its_request_id(flow, register, log_lines):
    client_id = register()["client_id"]
    flow.tokens(client_id, scope=ALL_READ)
    response = flow.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "asr_x",
                                                       "client_id": client_id}, headers={"X-Request-Id": "trace-12345678"})
    assert response.headers["X-Request-Id"] == "trace-12345678"
    lines = log_lines()
    assert lines, "the flow logs its audit events"
    in_requests = [line for line in lines if line["request_id"] != "-"]
    assert in_requests and all(len(line["request_id"]) >= 8 for line in in_requests)
    assert {"time", "level", "logger", "request_id", "message"} <= set(lines[0])


def test_a_bad_request_id_header_is_replaced(client):
    response = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert response.headers["X-Request-Id"] != "bad id <script>"
    assert len(response.headers["X-Request-Id"]) == 16


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok", "database": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(make_app, tmp_path):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", SQLALCHEMY_ENGINE_OPTIONS={})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "unreachable"}
    assert app.test_client().get("/healthz").status_code == 200


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.app_config(METRICS_ENABLED=True)
def test_metrics_count_requests_tokens_and_introspections(flow, register):
    def sample(text: str, name: str, **labels) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = flow.client.get("/metrics").get_data(as_text=True)
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id, scope=ALL_READ)
    flow.introspect(tokens["access_token"])
    flow.introspect("ast_unknown")
    response = flow.client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = response.get_data(as_text=True)
    assert sample(after, "authserver_tokens_issued_total", grant_type="authorization_code") == \
        sample(before, "authserver_tokens_issued_total", grant_type="authorization_code") + 1
    assert sample(after, "authserver_introspections_total", outcome="active") == \
        sample(before, "authserver_introspections_total", outcome="active") + 1
    assert sample(after, "authserver_introspections_total", outcome="inactive") == \
        sample(before, "authserver_introspections_total", outcome="inactive") + 1
    assert sample(after, "authserver_requests_total", endpoint="oauth.token", method="POST", status="200") >= 1
    assert "authserver_request_duration_seconds_bucket" in after
