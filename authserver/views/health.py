"""Operational endpoints: liveness, readiness and (when enabled) Prometheus metrics."""

from __future__ import annotations

import logging
from importlib import resources

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..extensions import csrf, db, limiter
from ..metrics import render_metrics

bp = Blueprint("health", __name__)
csrf.exempt(bp)
log = logging.getLogger(__name__)


@bp.route("/healthz")
def healthz():
    """The process is up and serving requests."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """The database answers: the instance can take traffic (503 otherwise). Redis unreachable is
    named ("redis": "unreachable", status "degraded") but leaves the instance ready: its rate
    limits carry on in its own memory, and every instance shares the one Redis, so taking them
    out for it would turn a lost optimisation into an outage."""
    body, status = {"status": "ok", "database": "ok"}, 200
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any driver or connection error means "not ready"
        log.warning("readiness check failed: %s", type(getattr(error, "orig", None) or error).__name__)
        db.session.rollback()
        body, status = {"status": "unavailable", "database": "unreachable"}, 503
    if current_app.config["REDIS_URL"] and limiter.failover is not None and not limiter.failover.check():
        body["redis"] = "unreachable"
        if status == 200:
            body["status"] = "degraded"
    return jsonify(body), status


@bp.route("/openapi.yaml")
def openapi():
    """The OpenAPI 3.1 description of the machine endpoints (shipped in the package)."""
    body = resources.files("authserver").joinpath("openapi.yaml").read_bytes()
    return body, 200, {"Content-Type": "application/yaml; charset=utf-8", "Access-Control-Allow-Origin": "*"}


@bp.route("/metrics")
def metrics():
    if not current_app.config["METRICS_ENABLED"]:
        return jsonify(error="not_found", error_description="Metrics are disabled."), 404
    body, content_type = render_metrics()
    return body, 200, {"Content-Type": content_type}
