"""Thin blueprints: each view validates, calls into the core, commits once, and renders."""
