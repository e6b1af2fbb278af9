"""Concurrent redemption of one code and one refresh token, on PostgreSQL (separate connections)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from authserver.extensions import db
from authserver.models import Token

N = 20


def _race(app, data):
    barrier = threading.Barrier(N)
    results = [None] * N

    def worker(i):
        with app.test_client() as client:
            barrier.wait()
            response = client.post("/oauth/token", data=data)
            results[i] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.fixture
def postgres_only(app):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("row-lock concurrency is asserted on PostgreSQL (SQLite serialises writers)")


def test_concurrent_code_redemption_gives_one_set_of_tokens(app, postgres_only, flow, register):
    client_id = register()["client_id"]
    code, pkce, params = flow.get_code(client_id)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"],
            "client_id": client_id, "code_verifier": pkce.verifier, "resource": params["resource"]}
    results = _race(app, data)
    assert all(status == 200 for status, _ in results), results
    assert len({body["access_token"] for _, body in results}) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Token)) == 1


def test_concurrent_refresh_leaves_one_live_family(app, postgres_only, flow, register):
    client_id = register()["client_id"]
    tokens = flow.tokens(client_id)
    results = _race(app, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id})
    assert all(status == 200 for status, _ in results), results
    new = {body["refresh_token"] for _, body in results}
    assert len(new) == 1
    with app.app_context():
        rows = list(db.session.scalars(select(Token).order_by(Token.id)))
        assert len(rows) == 2  # the original and exactly one rotation: no orphans
        original, rotated = rows
        assert original.rotated_at is not None and original.access_revoked_at is not None
        assert rotated.parent_id == original.id and rotated.revoked_at is None
    assert flow.refresh(client_id, new.pop()).status_code == 200
