"""The Authlib AuthorizationServer, wired with our grants, extensions and endpoints."""

from __future__ import annotations

from flask import Flask


def init_oauth(app: Flask) -> None:
    """Register grants, endpoints and the OAuth blueprints on the app."""
