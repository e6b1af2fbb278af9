"""A person's browser played over real HTTP: follow the authorization URL, sign in, pick a hub,
untick scopes, decide; and the connected-apps page. No JavaScript is needed, so none is run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
from oauth.support import csrf_token

_CHECKBOX = re.compile(r'<input type="checkbox"[^>]*>', re.S)


@dataclass
class ScopeBox:
    name: str
    checked: bool
    disabled: bool


def scope_boxes(html: str) -> list[ScopeBox]:
    boxes = []
    for tag in _CHECKBOX.findall(html):
        if 'name="scope"' not in tag:
            continue
        name = re.search(r'value="([^"]+)"', tag).group(1)
        boxes.append(ScopeBox(name, bool(re.search(r"\schecked\b", tag)), bool(re.search(r"\sdisabled\b", tag))))
    return boxes


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Person:
    """One person with their own cookie jar, talking to authserver at `issuer`."""

    issuer: str
    email: str
    password: str
    http: httpx2.Client = field(init=False)
    consent_pages: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.http = httpx2.Client(follow_redirects=False, timeout=15.0)

    def close(self):
        self.http.close()

    def _abs(self, location: str) -> str:
        return urljoin(self.issuer + "/", location)

    def sign_in(self, next_path: str = "/") -> httpx2.Response:
        page = self.http.get(self._abs("/login"), params={"next": next_path})
        response = self.http.post(self._abs("/login"), data={
            "csrf_token": csrf_token(page.text), "email": self.email, "password": self.password, "next": next_path,
        })
        assert response.status_code == 302, f"sign-in failed: {response.status_code}"
        return response

    def authorize(self, url: str, *, hub: str | None = None, untick=(), decision: str = "allow") -> dict[str, str]:
        """Open the authorization URL as the app sent it, sign in when asked, choose `hub`, untick
        `untick`, press Allow or Deny; returns the parameters of the redirect back to the app."""
        response = self.http.get(url)
        if response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login":
            next_path = callback_params(response.headers["Location"])["next"]
            response = self.http.get(self._abs(self.sign_in(next_path).headers["Location"]))
        if response.status_code == 302:  # remembered consent: straight back to the app
            return callback_params(response.headers["Location"])
        assert response.status_code == 200, (response.status_code, response.text[:500])
        if hub is not None:
            url = url + "&" + urlencode({"hub": hub})
            response = self.http.get(url)
            assert response.status_code == 200, response.status_code
        html = response.text
        self.consent_pages.append(html)
        ticked = [b.name for b in scope_boxes(html) if b.checked and not b.disabled and b.name not in untick]
        # Allow grants the hub whose permissions the page shows (the selected radio).
        chosen_hub = re.search(r'<input type="hidden" name="shown_hub" value="(\d+)">', html).group(1)
        response = self.http.post(url, data={
            "csrf_token": csrf_token(html), "hub": chosen_hub, "shown_hub": chosen_hub, "scope": ticked,
            "decision": decision,
        })
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return callback_params(response.headers["Location"])

    def revoke_app(self, client_name: str) -> httpx2.Response:
        """Press Revoke next to `client_name` on the connected-apps page."""
        page = self.http.get(self._abs("/account/apps"))
        assert page.status_code == 200, page.status_code
        match = re.search(
            re.escape(client_name) + r'</strong>(?:\s*<span[^>]*>[^<]*</span>)?\s*<form method="post" '
            r'action="(/account/apps/\d+/revoke)"', page.text
        )
        assert match, f"{client_name} is not on the connected-apps page"
        response = self.http.post(self._abs(match.group(1)), data={"csrf_token": csrf_token(page.text)})
        assert response.status_code == 303, response.status_code
        return response
