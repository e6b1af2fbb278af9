"""Discovery: the RFC 8414 authorization server metadata document."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..extensions import csrf
from ..oauth.metadata import build_metadata

bp = Blueprint("well_known", __name__, url_prefix="/.well-known")
csrf.exempt(bp)


@bp.route("/oauth-authorization-server", methods=["GET", "OPTIONS"])
def authorization_server_metadata():
    response = jsonify(build_metadata())
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
