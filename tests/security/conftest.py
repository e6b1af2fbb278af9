"""Fixtures for the security threat matrix: the protocol fixtures of tests/oauth (the demo
world, dynamic registration, a pre-registered confidential client and the flow driver)."""

from oauth.conftest import flow, preregistered, register, world  # noqa: F401  (pytest fixtures)
