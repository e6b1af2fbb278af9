"""Issue 11 item 10 (d), registrations: the operator's redirect-host deny list also catches a host
written with its root dot (`evil.example.`), and an entry written that way catches the plain
name. (oauth.registration._denied_host already compared without trailing dots: a guard.)"""

from __future__ import annotations

import pytest
from oauth.support import assert_oauth_error

HOSTS = ["evil.example", "evil.example.", "EVIL.EXAMPLE.", "login.evil.example."]


@pytest.mark.parametrize("entry", ["evil.example", "evil.example."])
@pytest.mark.parametrize("host", HOSTS)
def test_redirect_host_deny_list_ignores_trailing_dots(make_app, entry, host):
    client = make_app(REDIRECT_HOST_DENYLIST=[entry]).test_client()
    response = client.post("/oauth/register", json={"client_name": "X", "redirect_uris": [f"https://{host}/cb"],
                                                     "token_endpoint_auth_method": "none"})
    assert_oauth_error(response, "invalid_redirect_uri")
