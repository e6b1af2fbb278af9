"""Operational endpoints: liveness, readiness and (when enabled) Prometheus metrics."""

from __future__ import annotations

import logging
from importlib import resources

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..extensions import csrf, db
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
    """The database answers: the instance can take traffic."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # any driver or connection error means "not ready"
        log.exception("readiness check failed")
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok")


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
