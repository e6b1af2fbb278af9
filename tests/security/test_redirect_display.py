"""Issue 11 item 10 (b): the consent page names where the person will be sent honestly.

A native app's private-use scheme can look like a web address (claude://claude.ai/callback), yet
nothing ties it to the claude.ai website: any installed program may claim the scheme (RFC 8252
§8.6). Defence (models.clients.redirect_host): web redirects show their host; every other scheme
shows its whole scheme and authority, so the page never implies a web host it cannot vouch for."""

from __future__ import annotations

import html
import re

import pytest
from oauth.support import PKCE, authorize_params

from authserver.models.clients import redirect_host

SHOWN = {
    "claude://claude.ai/callback": "claude://claude.ai",
    "cursor://anysphere.cursor-retrieval/oauth/callback": "cursor://anysphere.cursor-retrieval",
    "com.example.app:/oauth2redirect": "com.example.app:",
    "com.example.app://callback": "com.example.app://callback",
    "https://app.example/callback": "app.example",
    "https://app.example:8443/cb": "app.example:8443",
    "http://127.0.0.1:7777/callback": "127.0.0.1:7777",
}


def _shown_on_consent_page(flow, register, redirect_uri: str) -> str:
    client_id = register(redirect_uris=[redirect_uri])["client_id"]
    page = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=redirect_uri))
    assert page.status_code == 200, page.get_data(as_text=True)
    match = re.search(r'<strong class="redirect-host">([^<]*)</strong>', page.get_data(as_text=True))
    assert match, "the consent page does not say where it sends the person"
    return html.unescape(match.group(1))


@pytest.mark.parametrize(("redirect_uri", "shown"), SHOWN.items(), ids=SHOWN.keys())
def test_consent_page_shows_where_the_person_is_sent(flow, register, redirect_uri, shown):
    assert _shown_on_consent_page(flow, register, redirect_uri) == shown


@pytest.mark.parametrize("redirect_uri", [u for u in SHOWN if not u.startswith(("http://", "https://"))])
def test_a_private_use_scheme_is_never_shown_as_a_bare_host(redirect_uri):
    """Whatever follows the scheme, the text shown starts with the scheme itself."""
    scheme = redirect_uri.split(":", 1)[0]
    assert redirect_host(redirect_uri).startswith(scheme + ":")
