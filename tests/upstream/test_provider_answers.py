"""What the provider (or someone in the middle) sends back is checked before anyone is signed in:
`state` (single use), `nonce`, the ID token's signature and expiry, the discovery document's
issuer; and a provider that is down ends on the readable 503 page. Every refusal is a page, never
a 500, and is audited with its reason."""

from __future__ import annotations

import secrets
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from authserver import accounts, audit
from authserver.extensions import db

from live import free_port

from .conftest import NAME, PEOPLE, oidc_provider, provider_settings


@pytest.fixture
def vera(upstream, make_user):
    """The live app, with the provider's vera linked to an account here."""
    app = upstream()
    user = make_user("vera.account@example.com")
    with app.app_context():
        accounts.link_upstream_identity(accounts.get_user(user.id), NAME, PEOPLE["vera"][0], None)
        db.session.commit()
    return app


def with_param(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def refused(response, status: int, *words: str):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("text/html")
    for word in words:
        assert word in response.text, word


def reasons(app) -> list[str]:
    with app.app_context():
        return [e.detail["reason"] for e in reversed(audit.find_events(event="login.failure"))]


def signed_in(browser) -> bool:
    return browser.http.get(browser.url("/")).status_code == 200


def test_the_control_signs_in(vera, browser):
    """The tests below change one thing each in this round trip."""
    assert browser.sign_in("vera").status_code == 302 and signed_in(browser)


def test_a_wrong_state_is_refused(vera, browser):
    started = browser.start_upstream()
    back = browser.at_provider(started.headers["Location"])
    forged = with_param(back.headers["Location"], state="not-the-state-we-sent")
    refused(browser.http.get(forged), 400, "This sign-in has expired")
    assert not signed_in(browser)
    # No state at all is as wrong.
    refused(browser.http.get(with_param(back.headers["Location"], state="")), 400)
    assert reasons(vera) == ["state_mismatch", "state_mismatch"]


def test_a_state_is_used_once(vera, browser):
    started = browser.start_upstream()
    back = browser.at_provider(started.headers["Location"])
    assert browser.http.get(back.headers["Location"]).status_code == 302
    # The same redirect again (a replayed callback URL, in the session that just signed in).
    refused(browser.http.get(back.headers["Location"]), 400, "This sign-in has expired")


def test_a_wrong_nonce_is_refused(vera, browser):
    """The authorization request is altered on its way to the provider: the ID token then carries
    a nonce this session never sent."""
    started = browser.start_upstream()
    sent = dict(parse_qsl(urlsplit(started.headers["Location"]).query))
    assert len(sent["nonce"]) >= 20 and sent["code_challenge_method"] == "S256" and "openid" in sent["scope"]
    back = browser.at_provider(with_param(started.headers["Location"], nonce="a-nonce-from-elsewhere"))
    refused(browser.http.get(back.headers["Location"]), 400, "could not be verified")
    assert not signed_in(browser)
    assert reasons(vera) == ["id_token_invalid:InvalidClaimError"]


def test_a_tampered_id_token_is_refused(vera, browser, stage):
    stage.proxy.tamper_id_token = True
    refused(browser.sign_in("vera"), 400, "could not be verified")
    assert not signed_in(browser)
    assert reasons(vera) == ["id_token_invalid:BadSignatureError"]


def test_an_expired_id_token_is_refused(upstream, make_user, browser, stage, tmp_path):
    """A provider whose clock is 15 minutes behind issues ID tokens that expired 14 minutes ago."""
    with oidc_provider(tmp_path, redirect_uris=stage.callbacks, CLOCK_OFFSET_SECONDS="-900", ID_TOKEN_TTL="60") as late:
        app = upstream(providers=[provider_settings(late.issuer, "late", "Late Clock")])
        user = make_user("vera.account@example.com")
        with app.app_context():
            accounts.link_upstream_identity(accounts.get_user(user.id), "late", PEOPLE["vera"][0], None)
            db.session.commit()
        refused(browser.sign_in("vera", name="late"), 400, "could not be verified")
    assert not signed_in(browser)
    assert reasons(app) == ["id_token_invalid:ExpiredTokenError"]


def test_a_provider_that_is_down_gives_the_503_page(upstream, browser):
    closed = f"http://127.0.0.1:{free_port()}"
    app = upstream(providers=[provider_settings(closed, "gone", "Gone Identity")])
    response = browser.start_upstream(name="gone")
    refused(response, 503, "Gone Identity could not be reached")
    assert reasons(app) == ["discovery_failed:ConnectionError"]


def test_a_provider_going_down_mid_sign_in_gives_the_503_page(vera, browser, stage):
    started = browser.start_upstream()
    back = browser.at_provider(started.headers["Location"])
    target, stage.proxy.target = stage.proxy.target, f"http://127.0.0.1:{free_port()}"
    try:
        refused(browser.http.get(back.headers["Location"]), 503, "could not be reached")
    finally:
        stage.proxy.target = target
    assert not signed_in(browser)
    assert reasons(vera)[0].startswith("provider_unreachable:")


def test_a_discovery_document_naming_another_issuer_is_refused(upstream, browser, stage):
    """Configured with the provider's own address, whose document names the proxy as issuer."""
    app = upstream(providers=[provider_settings(stage.provider.url)])
    refused(browser.start_upstream(), 503, "could not be reached")
    assert reasons(app) == ["discovery_issuer_mismatch"]


def test_a_provider_error_other_than_access_denied_is_a_400_page(vera, browser):
    refused(browser.http.get(browser.url(f"/login/upstream/{NAME}/callback?error=server_error&state=x")), 400,
            "could not sign you in")
    refused(browser.http.get(browser.url(f"/login/upstream/{NAME}/callback")), 400, "This sign-in has expired")
    assert reasons(vera) == ["provider_error:server_error", "state_mismatch"]


def test_sign_ins_under_way_are_bounded_and_the_latest_completes(vera, browser):
    """Pressing the button again and again keeps a few sign-ins under way, not one per press (the
    session cookie would outgrow what browsers keep); the newest completes, the oldest has expired."""
    # An authorization request as long as real ones get (a long state, PKCE, resource, scopes).
    long_next = "/oauth/authorize?" + urlencode({"state": secrets.token_urlsafe(600), "scope": "x" * 200})
    starts = [browser.start_upstream(next_path=long_next) for _ in range(6)]
    assert all(s.status_code == 302 for s in starts)
    assert len(browser.http.cookies.get("authserver_session", "")) < 4000
    oldest = browser.at_provider(starts[0].headers["Location"])
    refused(browser.http.get(oldest.headers["Location"]), 400, "This sign-in has expired")
    newest = browser.at_provider(starts[-1].headers["Location"])
    answer = browser.http.get(newest.headers["Location"])
    assert answer.status_code == 302 and answer.headers["Location"] == long_next


def test_a_provider_that_never_answers_gives_the_503_page_after_the_timeout(upstream, browser):
    """A provider that accepts the connection and says nothing holds the request for
    UPSTREAM_TIMEOUT, not for ever (the test's own timeout would end it first)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        app = upstream(providers=[provider_settings(f"http://127.0.0.1:{port}", "mute", "Mute Identity")],
                       UPSTREAM_TIMEOUT=0.3)
        refused(browser.start_upstream(name="mute"), 503, "Mute Identity could not be reached")
    assert reasons(app) == ["discovery_failed:ReadTimeout"]


@pytest.mark.parametrize("iss", ["http://127.0.0.1:9/another-provider", None])
def test_a_response_naming_another_issuer_or_none_is_refused(vera, browser, stage, iss):
    """Mix-up (RFC 9207): the provider announces `iss` on its authorization responses, so a
    response with another `iss`, or none, is not from it."""
    started = browser.start_upstream()
    back = browser.at_provider(started.headers["Location"])
    assert query_of(back.headers["Location"])["iss"] == stage.issuer
    parts = urlsplit(back.headers["Location"])
    params = {k: v for k, v in parse_qsl(parts.query) if k != "iss"}
    if iss is not None:
        params["iss"] = iss
    refused(browser.http.get(urlunsplit(parts._replace(query=urlencode(params)))), 400, "could not be verified")
    assert not signed_in(browser)
    assert reasons(vera) == ["response_issuer_mismatch"]
    # The state was spent: the genuine response cannot follow.
    refused(browser.http.get(back.headers["Location"]), 400, "This sign-in has expired")


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
