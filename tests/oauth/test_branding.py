"""The operator's product on every page (PRODUCT_NAME, PRODUCT_LOGO_URL, PRODUCT_HOME_URL), the
logo's origin and nothing wider in the pages' CSP, settings refused at start-up, and the sign-in
page naming the app an authorization request is waiting for."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest

from authserver import create_app
from authserver.config import ConfigError
from authserver.models.clients import CLIENT_NAME_SHOWN

from .support import REDIRECT_URI, PKCE, authorize_params

NAME, LOGO, HOME = "Acme CRM", "https://cdn.acme.test/brand/logo.svg", "https://www.acme.test/"
BRANDED = pytest.mark.app_config(PRODUCT_NAME=NAME, PRODUCT_LOGO_URL=LOGO, PRODUCT_HOME_URL=HOME)
PRODUCTION = {"SECRET_KEY": "k" * 48, "ISSUER": "https://auth.example.com", "DATABASE_URL": "sqlite://"}


def title(page) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", page.get_data(as_text=True), re.S).group(1))


def heading(page) -> str:
    """The page's h1 as text (tags dropped, entities decoded)."""
    h1 = re.search(r"<h1>(.*?)</h1>", page.get_data(as_text=True), re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", "", h1))


def img_src(response) -> str:
    directives = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    return directives["img-src"]


def login_page(client, params: dict):
    """The sign-in page the authorization endpoint sends a signed-out person to for `params`."""
    response = client.get("/oauth/authorize", query_string=params)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?")
    return client.get(response.headers["Location"])


def login_page_for(client, next_path: str):
    return client.get("/login?" + urlencode({"next": next_path}))


# --- the product on every page -------------------------------------------------------------------
@BRANDED
def test_every_page_carries_the_product_name_logo_and_link(client, flow, register):
    client_id = register(client_name="Helpful Bot")["client_id"]
    signed_out = flow.client.application.test_client()
    pages = {
        "sign-in": signed_out.get("/login"),
        "error": signed_out.get("/no-such-page"),
        "consent": flow.consent_page(authorize_params(client_id, PKCE())),
        "apps": flow.client.get("/account/apps"),
        "logout": flow.client.get("/logout"),
        "home": flow.client.get("/"),
    }
    assert pages["error"].status_code == 404
    for name, page in pages.items():
        body = page.get_data(as_text=True)
        assert title(page).endswith(NAME), name
        assert f'<a class="brand" href="{HOME}"><img class="logo" src="{LOGO}" alt=""' in body, name
        assert f'<span class="brand-name">{NAME}</span>' in body, name
        assert "authserver" not in body, name  # the literal name is gone everywhere
        assert img_src(page) == "'self' data: https://cdn.acme.test", name
    assert title(pages["consent"]) == f"Connect Helpful Bot · {NAME}"
    assert heading(pages["sign-in"]) == f"Sign in to {NAME}"


def test_the_default_product_is_authserver(client):
    page = client.get("/login")
    body = page.get_data(as_text=True)
    assert title(page) == "Sign in · authserver"
    assert '<span class="brand"><span class="brand-name">authserver</span></span>' in body
    assert "<img" not in body
    assert img_src(page) == "'self' data:"


@pytest.mark.app_config(PRODUCT_NAME='<b onmouseover="x">Shop & Co</b>')
def test_the_product_name_is_escaped(client):
    body = client.get("/login").get_data(as_text=True)
    assert "<b onmouseover" not in body
    assert "&lt;b onmouseover=&#34;x&#34;&gt;Shop &amp; Co&lt;/b&gt;" in body


@pytest.mark.parametrize(("logo", "img"), [
    (LOGO, "'self' data: https://cdn.acme.test"),
    ("https://CDN.Acme.test:8443/logo.png?v=2", "'self' data: https://cdn.acme.test:8443"),
    ("http://127.0.0.1:9000/logo.png", "'self' data: http://127.0.0.1:9000"),
    ("/static/logo.svg", "'self' data:"),  # our own origin: nothing added
])
def test_csp_img_src_adds_exactly_the_logo_origin(make_app, logo, img):
    response = make_app(PRODUCT_LOGO_URL=logo).test_client().get("/login")
    assert img_src(response) == img
    assert f'src="{html.escape(logo)}"' in response.get_data(as_text=True)
    # Nothing else in the policy moved.
    assert response.headers["Content-Security-Policy"] == (
        f"default-src 'none'; style-src 'self'; img-src {img}; frame-ancestors 'none'; base-uri 'none'")


# --- settings refused at start-up ---------------------------------------------------------------
@pytest.mark.parametrize("logo", [
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("data:image/svg+xml,<svg/onload=alert(1)>", id="data"),
    pytest.param("http://cdn.example.com/logo.png", id="http off loopback"),
    pytest.param("ftp://cdn.example.com/logo.png", id="ftp"),
    pytest.param("//cdn.example.com/logo.png", id="scheme-relative"),
    pytest.param("/etc/logo.png", id="path outside static"),
    pytest.param("/static/../instance/config.py", id="leaves static"),
    pytest.param("logo.png", id="relative"),
    pytest.param("https://user:pw@cdn.example.com/logo.png", id="credentials"),
    pytest.param("https://cdn.example.com;script-src */logo.png", id="csp injection in host"),
    pytest.param("https://cdn.example.com'/logo.png", id="quote in host"),
    pytest.param("https://[::1]/logo.png", id="ipv6 literal"),
    pytest.param("https://cdn.example.com/my logo.png", id="space"),
    pytest.param("https://cdn.example.com/logo.png\nX: y", id="newline"),
    pytest.param("https://cdn.example.com:99999/logo.png", id="bad port"),
    pytest.param("https://", id="no host"),
    pytest.param(42, id="not text"),
])
def test_a_bad_logo_url_is_refused_at_start_up(logo):
    with pytest.raises(ConfigError, match="AUTHSERVER_PRODUCT_LOGO_URL"):
        create_app({**PRODUCTION, "PRODUCT_LOGO_URL": logo})


@pytest.mark.parametrize("home", ["javascript:alert(1)", "http://www.example.com/", "data:text/html,x",
                                  "/static/home", "https://u@www.example.com/"])
def test_a_bad_home_url_is_refused_at_start_up(home):
    with pytest.raises(ConfigError, match="AUTHSERVER_PRODUCT_HOME_URL"):
        create_app({**PRODUCTION, "PRODUCT_HOME_URL": home})


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "Acme\u202eMRC", "Acme\x00", 1984, None])
def test_a_bad_product_name_is_refused_at_start_up(name):
    with pytest.raises(ConfigError, match="AUTHSERVER_PRODUCT_NAME"):
        create_app({**PRODUCTION, "PRODUCT_NAME": name})


def test_good_product_settings_start_in_production():
    app = create_app({**PRODUCTION, "PRODUCT_NAME": "  Acme CRM ", "PRODUCT_LOGO_URL": "/static/logo.svg",
                      "PRODUCT_HOME_URL": "http://localhost:8080/"})
    assert app.config["PRODUCT_NAME"] == "Acme CRM"
    assert app.config["PRODUCT_LOGO_URL"] == "/static/logo.svg"
    assert create_app({**PRODUCTION, "PRODUCT_LOGO_URL": ""}).config["PRODUCT_LOGO_URL"] is None


# --- the app waiting behind the sign-in page ---------------------------------------------------
@BRANDED
def test_sign_in_names_the_waiting_app_as_consent_will(client, world, register):
    client_id = register(client_name="Helpful Bot")["client_id"]
    page = login_page(client, authorize_params(client_id, PKCE()))
    body = page.get_data(as_text=True)
    assert heading(page) == f"Sign in to {NAME} to connect Helpful Bot"
    assert '<span class="client-name">Helpful Bot</span>' in body
    # The consent page's anti-phishing facts, from the same macro: where it goes, unverified name,
    # the loopback warning.
    assert '<strong class="redirect-host">127.0.0.1:7777</strong>' in body
    assert "This name was chosen by the app itself and has not been verified." in body
    assert "a program on <strong>this computer</strong>" in body
    # The form still resumes the request, and a failed sign-in keeps the notice.
    assert 'name="next" value="/oauth/authorize?' in body


def test_an_operators_client_is_named_without_the_unverified_warning(client, world, preregistered):
    client_id, _ = preregistered(redirect_uri="https://app.example/callback")
    page = login_page(client, authorize_params(client_id, PKCE(), redirect_uri="https://app.example/callback"))
    body = page.get_data(as_text=True)
    assert heading(page) == "Sign in to authserver to connect Pre-registered App"
    assert '<strong class="redirect-host">app.example</strong>' in body
    assert "not been verified" not in body and "this computer" not in body


def test_a_failed_sign_in_keeps_the_waiting_app(client, world, register, login):
    client_id = register(client_name="Helpful Bot")["client_id"]
    params = authorize_params(client_id, PKCE())
    next_path = "/oauth/authorize?" + urlencode(params)
    response = login(client, "alice@example.com", "wrong password", next=next_path)
    assert response.status_code == 200
    assert heading(response) == "Sign in to authserver to connect Helpful Bot"


def _next(client_id=None, **params) -> str:
    query = {"response_type": "code", "redirect_uri": REDIRECT_URI, **params}
    if client_id is not None:
        query["client_id"] = client_id
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)


@pytest.mark.parametrize("make_next", [
    pytest.param(lambda cid: _next("no-such-client"), id="unknown client_id"),
    pytest.param(lambda cid: _next(None), id="no client_id"),
    pytest.param(lambda cid: _next(""), id="empty client_id"),
    pytest.param(lambda cid: _next([cid, cid]), id="repeated client_id"),
    pytest.param(lambda cid: _next(cid + "\x00"), id="NUL in client_id"),
    pytest.param(lambda cid: _next("clïent"), id="non-ASCII client_id"),
    pytest.param(lambda cid: _next("x" * 3000), id="overlong client_id"),
    pytest.param(lambda cid: _next(cid, redirect_uri="https://evil.example/cb"), id="foreign redirect_uri"),
    pytest.param(lambda cid: _next(cid, redirect_uri=[REDIRECT_URI, REDIRECT_URI]), id="repeated redirect_uri"),
    pytest.param(lambda cid: "/account/apps?" + urlencode({"client_id": cid}), id="another page"),
    pytest.param(lambda cid: "/oauth/authorize/x?" + urlencode({"client_id": cid}), id="another path"),
    pytest.param(lambda cid: "/oauth/authorize?client_id=%zz&redirect_uri=%", id="bad percent-encoding"),
    pytest.param(lambda cid: "https://evil.example/oauth/authorize?" + urlencode({"client_id": cid}), id="absolute"),
])
def test_no_known_app_means_the_plain_page_never_an_error(client, register, make_next):
    client_id = register(client_name="Helpful Bot")["client_id"]
    page = login_page_for(client, make_next(client_id))
    assert page.status_code == 200
    assert heading(page) == "Sign in to authserver"
    assert "Helpful Bot" not in page.get_data(as_text=True)


def test_a_missing_redirect_uri_names_the_app_when_it_has_only_one(client, register):
    client_id = register(client_name="Helpful Bot")["client_id"]
    page = login_page_for(client, _next(client_id, redirect_uri=None))
    assert heading(page) == "Sign in to authserver to connect Helpful Bot"
    two = register(client_name="Two Homes", redirect_uris=[REDIRECT_URI, "https://app.example/cb"])["client_id"]
    assert heading(login_page_for(client, _next(two, redirect_uri=None))) == "Sign in to authserver"


HOSTILE = "<script>alert(1)</script>\u202eevil\u200b " + "A" * 200


def test_a_hostile_client_name_is_escaped_stripped_and_capped(client, flow, register):
    client_id = register(client_name=HOSTILE)["client_id"]
    params = authorize_params(client_id, PKCE())
    signed_out = flow.client.application.test_client()
    for page in (login_page(signed_out, params), flow.consent_page(params)):
        body = page.get_data(as_text=True)
        assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "\u202e" not in body and "\u200b" not in body
        shown = re.search(r'<span class="client-name">(.*?)</span>', body).group(1)
        assert len(html.unescape(shown)) == CLIENT_NAME_SHOWN and shown.endswith("…")
        assert "A" * 200 not in body
