"""Issue 11 item 4: no redirect to the client before the person is signed in (RFC 9700 §4.11.2,
open redirectors).

Anyone may register a client (or publish a metadata document) with any redirect URI; if our
authorization endpoint answered an unauthenticated bad request with a redirect to that URI, our
domain would be a redirector to wherever they like. Defence (views.authorize): for clients whose
redirect URIs nobody vetted (registered dynamically or by metadata document), an error found
before sign-in sends the person to the sign-in page (the same request is validated again after
it, and only then redirected) or, when that makes no sense, shows an error page. Pre-registered
clients, whose redirect URIs the operator vetted, keep the RFC 6749 §4.1.2.1 redirect."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from oauth.support import PASSWORD, PKCE, assert_redirect_error, authorize_params, csrf_token
from oauth.test_bad_requests import REDIRECT_CASES

from .support import nothing_issued

#: Every kind of error Authlib would redirect (the table of tests/oauth/test_bad_requests.py, each a
#: request a stranger can craft), plus one relying on the client's only registered redirect URI.
BAD_REQUESTS = {
    **REDIRECT_CASES,
    "token, to the only registered redirect URI": ({"response_type": "token", "redirect_uri": None},
                                                   "unsupported_response_type"),
}
#: Redirect URIs a registrant may choose: loopback, a web host, a native app's scheme.
REDIRECT_URIS = ["http://127.0.0.1:7777/callback", "https://redirector.example/cb", "com.example.app:/cb"]


def _not_sent_to_the_client(response, redirect_uri: str) -> None:
    """A sign-in redirect on this server, or an error page: never a Location on the client's side."""
    assert response.status_code in (302, 400), response.status_code
    if response.status_code == 400:
        assert "Location" not in response.headers
        return
    location = urlsplit(response.headers["Location"])
    client = urlsplit(redirect_uri)
    assert location.scheme in ("", "http", "https") and location.hostname in (None, "localhost")
    assert (location.scheme, location.netloc) != (client.scheme, client.netloc)
    assert location.path == "/login"


@pytest.mark.parametrize("redirect_uri", REDIRECT_URIS)
@pytest.mark.parametrize(("overrides", "_error"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_unauthenticated_bad_request_is_never_redirected_to_a_registered_client(
    app, client, world, register, overrides, _error, redirect_uri
):
    client_id = register(redirect_uris=[redirect_uri])["client_id"]
    params = authorize_params(client_id, PKCE(), **{"redirect_uri": redirect_uri, **overrides})
    for method in (client.get, client.post):
        response = method("/oauth/authorize", query_string=params)
        _not_sent_to_the_client(response, redirect_uri)
    assert nothing_issued(app)


@pytest.mark.parametrize(("overrides", "error"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_after_sign_in_the_same_request_is_validated_again_and_redirected(client, world, register, overrides, error):
    client_id = register()["client_id"]
    params = authorize_params(client_id, PKCE(), **overrides)
    to_login = client.get("/oauth/authorize", query_string=params)
    assert to_login.status_code == 302
    next_path = parse_qs(urlsplit(to_login.headers["Location"]).query)["next"][0]

    page = client.get(to_login.headers["Location"])
    signed_in = client.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                            "email": "alice@example.com", "password": PASSWORD, "next": next_path})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == next_path
    assert_redirect_error(client.get(next_path), error, params["state"], world.issuer)


@pytest.mark.parametrize(("overrides", "error"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_pre_registered_client_errors_are_still_redirected(client, world, preregistered, overrides, error):
    """The operator vetted this client's redirect URIs: RFC 6749 §4.1.2.1 applies as before."""
    client_id, _secret = preregistered()
    params = authorize_params(client_id, PKCE(), **overrides)
    assert_redirect_error(client.get("/oauth/authorize", query_string=params), error, params["state"], world.issuer)
