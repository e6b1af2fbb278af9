"""Discovery: the RFC 8414 authorization server metadata document and the JWKS it names."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .. import keys
from ..extensions import csrf
from ..oauth.metadata import JWKS_PATH, build_metadata

bp = Blueprint("well_known", __name__, url_prefix="/.well-known")
csrf.exempt(bp)


@bp.route("/oauth-authorization-server", methods=["GET", "OPTIONS"])
def authorization_server_metadata():
    response = jsonify(build_metadata())
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.route(JWKS_PATH.removeprefix("/.well-known"), methods=["GET", "OPTIONS"])
def jwks():
    """RFC 7517 §5: the public keys of every published signing key, cacheable for JWKS_MAX_AGE
    (no longer than the pre-publication time, so verifiers see a new key before it signs)."""
    response = jsonify(keys.jwks())
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = f"public, max-age={int(current_app.config['JWKS_MAX_AGE'])}"
    return response
