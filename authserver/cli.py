"""Flask CLI commands (kebab-case): users, hubs, members, resource servers, clients, scopes, demo."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the command groups."""
