"""authserver: an OAuth 2.1 authorization server for AI connectors (MCP), with hub and scope consent."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Defaults, finalize

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: the only place that wires configuration, extensions, blueprints and OAuth."""
    from .web import App

    app = App(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
    )
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("AUTHSERVER")
    if test_config:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    finalize(app.config, app.instance_path)

    from . import accounts, scopes

    catalog = scopes.build_catalog(app.config["SCOPE_CATALOG"])
    app.extensions["authserver.scopes"] = catalog
    app.extensions["authserver.roles"] = accounts.build_roles(app.config["ROLES"], catalog)

    from . import faults
    from .extensions import csrf, db, limiter, migrate

    db.init_app(app)
    from . import changes

    changes.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"] or faults.MEMORY_STORAGE_URI
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Explicit per app: Flask-Limiter would otherwise inherit the last app's value (it is one
    # object shared by every app in the process).
    app.config.setdefault("RATELIMIT_ENABLED", True)
    limiter.init_app(app)

    from .fastlane import FastLane

    app.wsgi_app = FastLane(app, app.wsgi_app)
    if app.config["PROXY_FIX_HOPS"]:
        hops = int(app.config["PROXY_FIX_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from . import audit, errors, logs, metrics, web

    logs.init_app(app)
    audit.init_app(app)
    errors.init_app(app)
    web.init_app(app)
    metrics.init_app(app)

    from .oauth.server import init_oauth

    init_oauth(app)

    from . import upstream

    upstream.init_app(app)

    from .views import account, admin_api, auth, authorize, health, oauth, well_known
    from .views import upstream as upstream_views

    for blueprint in (auth.bp, upstream_views.bp, health.bp, account.bp, authorize.bp, oauth.bp, well_known.bp,
                      admin_api.bp):
        app.register_blueprint(blueprint)

    from . import cli

    cli.init_app(app)
    return app
