"""PKCE (RFC 7636) restricted to S256 and required for every client (OAuth 2.1 §4.1.1)."""

from __future__ import annotations

import hmac
from types import SimpleNamespace

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge


def compare_s256(code_verifier: str, code_challenge: str) -> bool:
    """BASE64URL(SHA256(verifier)) == challenge, compared in constant time."""
    return hmac.compare_digest(create_s256_code_challenge(code_verifier), code_challenge)


class S256CodeChallenge(CodeChallenge):
    """Every authorization request must carry `code_challenge` with method S256; `plain`, a
    missing method (which RFC 7636 §4.3 defaults to plain) and a missing challenge are refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256}

    def __init__(self):
        super().__init__(required=True)

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256; plain is not supported.")
        super().validate_code_challenge(grant, redirect_uri)


_S256 = S256CodeChallenge()


def check_code_verifier(code, form, auth_method: str) -> None:
    """The token request's PKCE check (RFC 7636 §4.6), for a caller that has no Authlib grant (the
    WSGI lane's code exchange, grants.LeanExchange): the very check the grant's S256CodeChallenge
    extension makes (Authlib's validate_code_verifier), given the same three facts it reads.
    Raises the same OAuth2Error."""
    request = SimpleNamespace(form=form, auth_method=auth_method, authorization_code=code)
    _S256.validate_code_verifier(SimpleNamespace(request=request), None)
