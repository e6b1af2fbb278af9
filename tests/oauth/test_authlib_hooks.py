"""Authlib's grant hooks run on our grants as in stock Authlib (issue 15): an extension registered
on a grant (OpenID Connect's id_token is one) sees every code exchange and refresh, through the
Flask view and through the WSGI lane; what it adds reaches the client, and an identical retry
inside the grace window gets that same answer without the hooks running again."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial

import pytest
from authlib.integrations.flask_oauth2 import client_authenticated
from authlib.oauth2.rfc6749 import InvalidRequestError
from sqlalchemy import func, select

from authserver.extensions import db
from authserver.models import Token
from authserver.oauth.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authserver.oauth.server import server
from authserver.secrets import sha256_hex

from .support import REDIRECT_URI, RESOURCE, assert_oauth_error
from .test_concurrency import _race

#: The token-endpoint hooks, in the order stock Authlib runs them (authlib 1.9 hooks the code
#: grant's validate_token_request and both grants' create_token_response; ours hook both).
TOKEN_HOOKS = ("before_validate_token_request", "after_validate_token_request",
               "before_create_token_response", "after_create_token_response")


@dataclass
class Call:
    """One hook call, as the hook saw the request when it ran."""

    hook: str
    grant_type: str
    args: tuple
    client_id: str | None
    credential: object  # request.authorization_code or request.refresh_token
    user_id: int | None
    response: tuple | None = None  # (status, token as created, headers) for after_create_token_response


class Extension:
    """A grant extension in Authlib's shape (called with each new grant, registers hooks) that
    records every token-endpoint hook and, like OpenID Connect's OpenIDToken.process_token, adds
    an id_token to the answer in after_create_token_response (or refuses, when told to). It also
    listens to the server's after_authenticate_client signal (Flask's client_authenticated)."""

    def __init__(self):
        self.calls: list[Call] = []
        self.authenticated: list[tuple[str, str]] = []  # (client_id, grant_type) per signal
        self.minted = 0
        self.refusal: Exception | None = None
        self.lock = threading.Lock()  # racing requests run the hooks in several threads

    def __call__(self, grant):
        for hook in TOKEN_HOOKS:
            grant.register_hook(hook, partial(self.record, hook))

    def record(self, hook, grant, *args):
        request = grant.request
        call = Call(hook, grant.GRANT_TYPE, args, request.client.client_id if request.client else None,
                    request.authorization_code or request.refresh_token,
                    request.user.id if request.user is not None else None)
        self.calls.append(call)
        if hook == "after_create_token_response":
            status, token, headers = args[0]
            call.response = (status, dict(token), headers)
            if self.refusal is not None:
                raise self.refusal
            with self.lock:
                self.minted += 1
                token["id_token"] = f"id-token-{self.minted}"

    def client_authenticated(self, server, client, grant):
        self.authenticated.append((client.client_id, grant.GRANT_TYPE))

    def hooks(self) -> list[tuple[str, str]]:
        return [(call.hook, call.grant_type) for call in self.calls]

    def created(self) -> int:
        """How many times after_create_token_response ran."""
        return sum(call.hook == "after_create_token_response" for call in self.calls)


@pytest.fixture
def extension(monkeypatch):
    """An Extension registered on both token grants (as register_grant(..., extensions) would)."""
    extension = Extension()
    monkeypatch.setattr(server, "_token_grants",
                        [(grant, [*(extensions or []), extension]) for grant, extensions in server._token_grants])
    with client_authenticated.connected_to(extension.client_authenticated, sender=server):
        yield extension


def _exchange_form(client_id, code, pkce) -> dict:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id,
            "code_verifier": pkce.verifier, "resource": RESOURCE}


def _refresh_form(client_id, refresh_token) -> dict:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}


@dataclass
class Started:
    """A registered client holding a fresh code, and the token endpoint by one path."""

    path: str
    client: object  # a WSGI client: the lane in front of Flask, or Flask alone
    calls: list  # requests the lane has passed on to Flask since the code was issued
    client_id: str
    code: str
    pkce: object

    def post(self, form: dict):
        return self.client.post("/oauth/token", data=form)

    def exchange(self):
        return self.post(_exchange_form(self.client_id, self.code, self.pkce))

    def refresh(self, refresh_token: str):
        return self.post(_refresh_form(self.client_id, refresh_token))


@pytest.fixture(params=["view", "lane"], ids=["through the view", "through the lane"])
def started(request, flow, register, paths) -> Started:
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    lane, flask, calls = paths
    calls.clear()
    return Started(request.param, lane if request.param == "lane" else flask, calls, client_id, code, pkce)


def _check_calls(extension, grant_type, client_id, credential_hash, user_id, received: dict):
    """Each hook ran once, in stock Authlib's order, with the arguments stock Authlib passes, and
    after_create_token_response saw the token the client received (less what the hook added)."""
    assert extension.hooks() == [(hook, grant_type) for hook in TOKEN_HOOKS]
    assert extension.authenticated == [(client_id, grant_type)]
    before_validate, after_validate, before_create, after_create = extension.calls
    assert before_validate.args == () and before_create.args == ()
    assert after_validate.args == (None,)  # the result of validate_token_request
    assert after_validate.client_id == before_create.client_id == after_create.client_id == client_id
    held = after_validate.credential
    assert (held.code_hash if grant_type == "authorization_code" else held.refresh_token_hash) == credential_hash
    # As in stock Authlib, the user is known to after_create_token_response (OpenID Connect's
    # id_token is made for request.user).
    assert after_create.user_id == user_id
    status, token, headers = after_create.response
    assert status == 200
    assert headers == AuthorizationCodeGrant.TOKEN_RESPONSE_HEADER == RefreshTokenGrant.TOKEN_RESPONSE_HEADER
    assert token == {key: value for key, value in received.items() if key != "id_token"}


def test_every_token_hook_runs_once_with_stock_arguments_for_exchange_and_refresh(started, world, extension):
    tokens = started.exchange().get_json()
    assert started.calls == []  # the lane answered (through the view, Flask alone did)
    _check_calls(extension, "authorization_code", started.client_id, sha256_hex(started.code), world.alice_id,
                 tokens)

    extension.calls.clear()
    extension.authenticated.clear()
    refreshed = started.refresh(tokens["refresh_token"]).get_json()
    assert started.calls == []
    _check_calls(extension, "refresh_token", started.client_id, sha256_hex(tokens["refresh_token"]), world.alice_id,
                 refreshed)


def test_what_a_hook_adds_to_the_token_response_reaches_the_client(started, flow, extension):
    exchanged = started.exchange()
    assert exchanged.status_code == 200 and exchanged.get_json()["id_token"] == "id-token-1"
    refreshed = started.refresh(exchanged.get_json()["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.get_json()["id_token"] == "id-token-2"
    assert started.calls == []
    # What was stored is the token itself: it works, and the one it replaced does not.
    assert flow.introspect(refreshed.get_json()["access_token"]).get_json()["active"] is True
    assert flow.introspect(exchanged.get_json()["access_token"]).get_json() == {"active": False}


def test_a_retry_inside_the_grace_window_gets_the_hooked_answer_again_and_mints_nothing(started, extension):
    def answered_twice(form) -> dict:
        first = started.post(form)
        assert first.status_code == 200 and "id_token" in first.get_json()
        created, minted = extension.created(), extension.minted
        started.calls.clear()
        again = started.post(form)
        assert again.status_code == 200
        assert again.get_json() == first.get_json()  # id_token included: the answer kept on the row
        assert (extension.created(), extension.minted) == (created, minted)  # no hook made a new one
        assert started.calls == (["/oauth/token"] if started.path == "lane" else [])  # Flask answers retries
        return first.get_json()

    tokens = answered_twice(_exchange_form(started.client_id, started.code, started.pkce))
    answered_twice(_refresh_form(started.client_id, tokens["refresh_token"]))
    assert extension.minted == 2


def test_a_hook_that_refuses_is_answered_with_its_error_and_nothing_is_issued(app, started, extension):
    """The hooks run on the answer before the code is consumed: a refusal consumes nothing."""
    extension.refusal = InvalidRequestError("Refused by an extension.")
    body = assert_oauth_error(started.exchange(), "invalid_request")
    assert body["error_description"] == "Refused by an extension."
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Token)) == 0

    extension.refusal = None
    again = started.exchange()
    assert again.status_code == 200 and again.get_json()["id_token"] == "id-token-1"


def test_racing_identical_requests_all_get_the_one_hooked_answer_that_was_kept(app, flow, register, extension):
    """A request that loses the race to consume the code or refresh token answers with the
    winner's answer (kept on the row with what the winner's hooks added), never its own."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("row-lock concurrency is asserted on PostgreSQL (SQLite serialises writers)")
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)

    def one_answer(form) -> dict:
        results = _race(app, form)
        assert all(status == 200 for status, _ in results), results
        bodies = [body for _, body in results]
        assert all(body == bodies[0] for body in bodies) and "id_token" in bodies[0]
        return bodies[0]

    tokens = one_answer(_exchange_form(client_id, code, pkce))
    one_answer(_refresh_form(client_id, tokens["refresh_token"]))
