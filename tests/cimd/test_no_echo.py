"""Issue 11 item 10 (c): errors about a fetched document never echo what the document's author
wrote.

Whoever publishes a metadata document chooses every byte of it (and of the HTTP response that
carries it). Quoting any of it in an error would let them put their words on our pages, under
our domain ("Call 555-HACKER to restore your account"), or into a client's JSON. Defence
(oauth.cimd, oauth.fetch): error descriptions name the member that is wrong and why, in our own
fixed words; what the origin sent goes only to the operator's audit log."""

from __future__ import annotations

import html

import pytest
from oauth.support import PKCE, assert_error_page, authorize_params

from .conftest import client_document

PATH = "/oauth/app/client.json"
REDIRECT = "https://client.test/callback"
MARK = "555-HACKER"
SCRIPT = f"<script>alert('Call {MARK}')</script>"

#: (what the author changes in the document, or in the response that carries it)
ECHOES = {
    "client_id markup": dict(document={"client_id": SCRIPT}),
    "client_id text": dict(document={"client_id": f"Call {MARK}"}),
    "auth method": dict(document={"token_endpoint_auth_method": f"Call {MARK}"}),
    "auth methods list": dict(document={"token_endpoint_auth_method": None,
                                        "token_endpoint_auth_methods_supported": [f"Call {MARK}"]}),
    "auth methods not a list": dict(document={"token_endpoint_auth_methods_supported": f"none Call {MARK}"}),
    "redirect uri": dict(document={"redirect_uris": [REDIRECT, f"http://call-{MARK.lower()}.example/cb"]}),
    "jwks_uri": dict(document={"token_endpoint_auth_method": "private_key_jwt",
                               "jwks_uri": f"call-{MARK.lower()}://keys"}),
    "reason phrase": dict(serve={"raw": b"{}", "status": 500, "reason": f"Call {MARK}"}),
    "content type": dict(serve={"raw": b"{}", "content_type": f"text/call-{MARK.lower()}"}),
    "error body": dict(serve={"raw": f"Call {MARK}".encode(), "status": 400, "content_type": "text/plain"}),
}


def _serve(origin, client_id, case):
    if "serve" in case:
        origin.serve(PATH, **case["serve"])
    else:
        origin.serve(PATH, {**client_document(client_id, [REDIRECT]), **case["document"]})


def _echoes(text: str) -> bool:
    return MARK.lower() in html.unescape(text).lower()


@pytest.mark.parametrize("case", ECHOES.values(), ids=ECHOES.keys())
def test_error_page_does_not_echo_the_document(flow, origin, case):
    client_id = origin.url(PATH)
    _serve(origin, client_id, case)
    response = flow.consent_page(authorize_params(client_id, PKCE(), redirect_uri=REDIRECT))
    assert_error_page(response)
    text = response.get_data(as_text=True)
    assert "client metadata document" in text  # still says what failed
    assert not _echoes(text), text


@pytest.mark.parametrize("case", ECHOES.values(), ids=ECHOES.keys())
def test_token_endpoint_json_does_not_echo_the_document(client, world, origin, case):
    client_id = origin.url(PATH)
    _serve(origin, client_id, case)
    response = client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "asc_x",
                                                 "client_id": client_id, "code_verifier": PKCE().verifier})
    assert 400 <= response.status_code < 500
    body = response.get_json()
    assert body["error"] == "invalid_client"
    assert not _echoes(response.get_data(as_text=True)), body
