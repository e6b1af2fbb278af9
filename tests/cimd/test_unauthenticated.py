"""Issue 11 item 4 for metadata-document clients: their redirect URIs are whatever the document's
author chose, so an error found before sign-in is never redirected to them (RFC 9700 §4.11.2)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from oauth.support import PKCE, authorize_params

from .conftest import client_document

PATH = "/oauth/app/client.json"
REDIRECT = "https://client.test/callback"
BAD_REQUESTS = {
    "response_type token": {"response_type": "token"},
    "missing code_challenge": {"code_challenge": None, "code_challenge_method": None},
    "plain pkce": {"code_challenge_method": "plain"},
    "unknown scope": {"scope": "admin.everything"},
    "unknown resource": {"resource": "https://unknown.example/mcp"},
}


@pytest.mark.parametrize("overrides", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_unauthenticated_bad_request_goes_to_sign_in_not_to_the_document_client(client, world, origin, overrides):
    client_id = origin.url(PATH)
    origin.serve(PATH, client_document(client_id, [REDIRECT]))
    response = client.get("/oauth/authorize", query_string=authorize_params(client_id, PKCE(), redirect_uri=REDIRECT,
                                                                            **overrides))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.hostname in (None, "localhost") and location.path == "/login"
