"""A real browser (Debian's Chromium driven by Playwright) on the sign-in, consent and connected-apps
pages: labels a person can use, hub switching (the hub granted is the hub whose permissions were
shown), unticking a scope, approving, and revoking; and the sign-in page of an operator's product,
with its logo (loaded under the pages' CSP) and the app that is waiting.

Screenshots go to test-artifacts/screenshots/ (git-ignored); see chromium.py."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from live import live_flask
from oauth.support import PKCE

from authserver import resources
from authserver.extensions import db

from .chromium import ARGS, SCREENSHOTS, require_chromium

REDIRECT_URI = "http://127.0.0.1:47213/callback"


@pytest.fixture
def chromium():
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_consent_and_connected_apps_in_a_real_browser(live, chromium):
    from playwright.sync_api import expect

    registration = httpx2.post(f"{live.issuer}/oauth/register", json={
        "client_name": "Browser Test Assistant", "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
    })
    assert registration.status_code == 201
    pkce, state = PKCE(), secrets.token_urlsafe(12)
    url = f"{live.issuer}/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": registration.json()["client_id"], "redirect_uri": REDIRECT_URI,
        "state": state, "code_challenge": pkce.challenge, "code_challenge_method": "S256",
        "resource": live.resource,
        "scope": "crm.objects.contacts.read crm.objects.deals.read crm.objects.notes.write",
    })

    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    # The app's redirect URI: answer it in the browser, so landing there is observable.
    landed = []
    page.route(REDIRECT_URI + "**", lambda route: (landed.append(route.request.url), route.fulfill(
        status=200, content_type="text/html", body="<h1>Connected</h1>")))

    page.goto(url)
    expect(page).to_have_url(f"{live.issuer}/login?" + urlencode({"next": urlsplit(url).path + "?" + urlsplit(url).query}))
    page.get_by_label("Email").fill(live.email)
    page.get_by_label("Password").fill(live.password)
    page.get_by_role("button", name="Sign in").click()

    # The consent page: who asks, where it goes back to, which hub, which scopes.
    expect(page.locator("h1")).to_contain_text("Browser Test Assistant")
    expect(page.locator(".redirect-host")).to_have_text("127.0.0.1:47213")
    expect(page.get_by_role("radio", name="Acme Sales")).to_be_checked()  # the first hub is shown
    expect(page.get_by_role("radio", name="Globex Support")).to_be_visible()
    expect(page.get_by_role("heading", name="Permissions in Acme Sales")).to_be_visible()
    notes = page.get_by_label("Create and edit your notes")
    expect(notes).to_be_enabled()  # Alice is an admin in Acme
    page.screenshot(path=str(SCREENSHOTS / "consent-acme.png"), full_page=True)

    # Tick Globex and press Allow without showing its permissions: nothing is granted; the page
    # shows Globex's permissions (where Alice is a viewer) and asks to confirm them.
    page.get_by_role("radio", name="Globex Support").check()
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Permissions in Globex Support")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Check the permissions for Globex Support and press Allow again")
    expect(page.get_by_role("radio", name="Globex Support")).to_be_checked()
    expect(notes).to_be_disabled()
    assert landed == [] and page.url.startswith(live.issuer)
    page.screenshot(path=str(SCREENSHOTS / "consent-confirm-hub.png"), full_page=True)

    # "Show permissions for this hub" switches without granting: to Acme and back to Globex.
    page.get_by_role("radio", name="Acme Sales").check()
    page.get_by_role("button", name="Show permissions for this hub").click()
    expect(page.get_by_role("heading", name="Permissions in Acme Sales")).to_be_visible()
    expect(notes).to_be_enabled()
    page.get_by_role("radio", name="Globex Support").check()
    page.get_by_role("button", name="Show permissions for this hub").click()
    expect(page.get_by_role("heading", name="Permissions in Globex Support")).to_be_visible()
    expect(notes).to_be_disabled()
    expect(page.get_by_text("Unavailable: you don't have this permission in Globex Support.")).to_be_visible()
    contacts, deals = page.get_by_label("View your contacts"), page.get_by_label("View your deals")
    expect(contacts).to_be_checked()
    deals.uncheck()
    expect(deals).not_to_be_checked()
    assert landed == []
    page.screenshot(path=str(SCREENSHOTS / "consent-globex.png"), full_page=True)

    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(REDIRECT_URI + "**")
    params = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == state and params["iss"] == live.issuer

    # The connected-apps page shows the grant in Globex with only contacts; revoke it.
    page.goto(f"{live.issuer}/account/apps")
    grant = page.locator(".grant", has_text="Browser Test Assistant")
    expect(page.get_by_role("heading", name="Globex Support")).to_be_visible()
    expect(grant).to_contain_text("View your contacts")
    expect(grant).not_to_contain_text("View your deals")
    expect(grant.locator(".redirect-host")).to_have_text("127.0.0.1:47213")
    page.screenshot(path=str(SCREENSHOTS / "apps.png"), full_page=True)
    grant.get_by_role("button", name="Revoke Browser Test Assistant in Globex Support").click()
    expect(page.get_by_role("status")).to_contain_text("Browser Test Assistant can no longer access Globex Support")
    expect(page.locator(".grant")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "apps-after-revoke.png"), full_page=True)

    # On a phone, the sign-in and consent pages fit the screen without sideways scrolling.
    phone = chromium.new_context(viewport={"width": 375, "height": 740})
    mobile = phone.new_page()
    mobile.goto(url)
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 375
    mobile.get_by_label("Email").fill(live.email)
    mobile.get_by_label("Password").fill(live.password)
    mobile.get_by_role("button", name="Sign in").click()
    expect(mobile.get_by_role("button", name="Allow")).to_be_visible()
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 375
    mobile.screenshot(path=str(SCREENSHOTS / "consent-phone.png"), full_page=True)
    phone.close()
    context.close()


LOGO = "https://cdn.acme.test/brand/logo.svg"
LOGO_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
            b'<rect width="96" height="96" rx="18" fill="#e8590c"/><path d="M22 72 48 20 74 72z" fill="#fff"/></svg>')


def test_branded_sign_in_names_the_waiting_app(make_app, chromium):
    from playwright.sync_api import expect

    resource = "http://127.0.0.1:8001/mcp"

    def build(url):
        app = make_app(ISSUER=url, PRODUCT_NAME="Acme CRM", PRODUCT_LOGO_URL=LOGO, PRODUCT_HOME_URL="https://www.acme.test/")
        with app.app_context():
            resources.create(resource, "Acme CRM MCP", None, None)
            db.session.commit()
        return app

    with live_flask(build) as server:
        registration = httpx2.post(f"{server.url}/oauth/register", json={
            "client_name": "Research Assistant", "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"],
        })
        assert registration.status_code == 201
        url = f"{server.url}/oauth/authorize?" + urlencode({
            "response_type": "code", "client_id": registration.json()["client_id"], "redirect_uri": REDIRECT_URI,
            "state": "s", "code_challenge": PKCE().challenge, "code_challenge_method": "S256", "resource": resource,
        })
        context = chromium.new_context(viewport={"width": 1000, "height": 700})
        page = context.new_page()
        # The operator's CDN, answered in the browser; whether the image renders is up to the CSP.
        page.route(LOGO, lambda route: route.fulfill(status=200, content_type="image/svg+xml", body=LOGO_SVG))
        page.goto(url)
        expect(page).to_have_title("Sign in · Acme CRM")
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Acme CRM to connect Research Assistant")
        expect(page.locator(".redirect-host")).to_have_text("127.0.0.1:47213")
        expect(page.get_by_role("link", name="Acme CRM")).to_have_attribute("href", "https://www.acme.test/")
        logo = page.locator("header img.logo")
        expect(logo).to_be_visible()
        page.wait_for_function("document.querySelector('header img.logo').complete")
        assert logo.evaluate("img => img.naturalWidth") == 96  # loaded: img-src allows its origin
        page.screenshot(path=str(SCREENSHOTS / "sign-in-branded.png"), full_page=True)
        context.close()
