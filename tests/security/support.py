"""Small helpers shared by the threat-matrix tests (database probes and clock tricks)."""

from __future__ import annotations

from datetime import timedelta

from oauth.conftest import FlowDriver
from sqlalchemy import func, select, update

from authserver.extensions import db
from authserver.models import AuthorizationCode, Grant, Token
from authserver.secrets import sha256_hex
from authserver.timeutil import utcnow

INACTIVE = {"active": False}


def count(app, model) -> int:
    """Rows of `model` (AuthorizationCode, Grant, ...) in the database."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def nothing_issued(app) -> bool:
    """No authorization code and no grant were recorded."""
    return count(app, AuthorizationCode) == 0 and count(app, Grant) == 0


def end_grace_window(app) -> None:
    """Move every code redemption and refresh-token rotation back to just past the grace window,
    as if it had passed: the answers kept on those rows are no longer served."""
    past = utcnow() - timedelta(seconds=int(app.config["REPLAY_GRACE_SECONDS"]) + 1)
    with app.app_context():
        db.session.execute(
            update(AuthorizationCode).where(AuthorizationCode.consumed_at > past).values(consumed_at=past)
        )
        db.session.execute(update(Token).where(Token.rotated_at > past).values(rotated_at=past))
        db.session.commit()


def age_rotation(app, refresh_token: str, seconds: int) -> None:
    """Pretend `refresh_token` was rotated `seconds` ago (past the grace window, the answer kept
    on its row is no longer served)."""
    assert seconds > int(app.config["REPLAY_GRACE_SECONDS"])
    with app.app_context():
        db.session.execute(
            update(Token).where(Token.refresh_token_hash == sha256_hex(refresh_token))
            .values(rotated_at=utcnow() - timedelta(seconds=seconds))
        )
        db.session.commit()


def browser(app, world, email: str) -> FlowDriver:
    """A second, independent browser signed in as `email`."""
    driver = FlowDriver(app.test_client(), world)
    driver.login(email)
    return driver


def signed_in(client) -> bool:
    with client.session_transaction() as session:
        return "user_id" in session
