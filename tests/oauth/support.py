"""Protocol-transcript helpers: PKCE pairs, an authorization-request builder, error assertions."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

RESOURCE = "http://127.0.0.1:8001/mcp"
REDIRECT_URI = "http://127.0.0.1:7777/callback"
PASSWORD = "correct horse battery"
ALL_READ = "crm.objects.contacts.read crm.objects.companies.read crm.objects.deals.read"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def shown_hub(html: str) -> str:
    """The hub whose permissions a consent page lists (the only hub its Allow can grant)."""
    match = re.search(r'name="shown_hub" value="([^"]+)"', html)
    assert match, "page has no shown_hub"
    return match.group(1)


@dataclass
class PKCE:
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(*args, **overrides) -> dict:
    """A valid authorization request for (client_id, pkce); override or drop (None) any parameter."""
    client_id, pkce = args
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": secrets.token_urlsafe(8),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "resource": RESOURCE,
        "scope": "crm.objects.contacts.read crm.objects.contacts.write",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def assert_oauth_error(response, error: str, status: int = 400):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description", ""), str)
    assert response.headers.get("Cache-Control") == "no-store"
    return body


def assert_redirect_error(response, error: str, state: str, issuer: str, redirect_uri: str = REDIRECT_URI):
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    params = query(location)
    assert params["error"] == error, params
    assert params["state"] == state
    assert params["iss"] == issuer
    return params


def assert_error_page(response, status: int = 400):
    """An error shown to the person, never redirected to an unverified URI."""
    assert response.status_code == status, response.status_code
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
