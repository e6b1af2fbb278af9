from oauth.conftest import flow, preregistered, register, world  # noqa: F401  (pytest fixtures)
