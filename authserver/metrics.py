"""Prometheus metrics: request counts and latencies per endpoint, tokens issued, introspection
outcomes. Recorded always (cheap), exposed at /metrics only when METRICS_ENABLED is on.
Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode) so /metrics aggregates every worker."""

from __future__ import annotations

import os
import time

from flask import Flask, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("authserver_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "authserver_request_duration_seconds", "HTTP request latency", ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TOKENS_ISSUED = Counter("authserver_tokens_issued_total", "Token responses issued", ["grant_type"])
INTROSPECTIONS = Counter("authserver_introspections_total", "Introspection answers", ["outcome"])
# Faults of the parts (authserver/faults.py): Redis outages survived on in-memory limits, and
# requests answered 503 because the database was away, slow or out of connections.
RATE_LIMIT_FALLBACKS = Counter(
    "authserver_rate_limit_storage_fallbacks_total", "Times the rate-limit storage became unreachable")
RATE_LIMIT_DEGRADED = Gauge(
    "authserver_rate_limit_storage_degraded", "1 while rate limits are counted in process memory",
    multiprocess_mode="livemax")
DATABASE_UNAVAILABLE = Counter(
    "authserver_database_unavailable_total", "Requests answered 503 because the database was unavailable")


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def init_app(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started_at = time.perf_counter()

    # Each labelled child looked up once (prometheus_client's labels() takes a lock and builds its
    # key on every call); endpoints, methods and statuses are few.
    counters: dict = {}
    histograms: dict = {}

    @app.after_request
    def observe(response):
        endpoint = request.endpoint or "unknown"
        key = (endpoint, request.method, response.status_code)
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = REQUESTS.labels(endpoint, request.method, str(response.status_code))
        counter.inc()
        if "started_at" in g:
            histogram = histograms.get(endpoint)
            if histogram is None:
                histogram = histograms[endpoint] = LATENCY.labels(endpoint)
            histogram.observe(time.perf_counter() - g.started_at)
        return response
