"""The RFC 8414 metadata document, built from the same constants that enforce behaviour."""

from __future__ import annotations

from flask import current_app

from . import assertion
from .introspection import Introspection
from .pkce import S256CodeChallenge
from .registration import supported_client_metadata
from .revocation import Revocation

#: Where the JWKS document is served (RFC 8414 §2 `jwks_uri`).
JWKS_PATH = "/.well-known/jwks.json"


def build_metadata() -> dict:
    issuer = current_app.config["ISSUER"]
    key_jwt = current_app.config["PRIVATE_KEY_JWT_ENABLED"]
    # Response and grant types, token endpoint methods and scopes: what registration enforces.
    supported = supported_client_metadata()
    auth_methods = supported["token_endpoint_auth_methods_supported"]
    metadata = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        # The keys JWT access tokens are signed with (RFC 9068 §4), for resource servers that verify
        # them locally: views/well_known.py serves it.
        "jwks_uri": f"{issuer}{JWKS_PATH}",
        "response_types_supported": supported["response_types_supported"],
        "response_modes_supported": ["query"],
        "grant_types_supported": supported["grant_types_supported"],
        "code_challenge_methods_supported": list(S256CodeChallenge.SUPPORTED_CODE_CHALLENGE_METHOD),
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": list(Introspection.CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": [m for m in Revocation.CLIENT_AUTH_METHODS if m in auth_methods],
        "scopes_supported": supported["scopes_supported"],
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": current_app.config["SERVICE_DOCUMENTATION"],
    }
    if key_jwt:
        metadata["token_endpoint_auth_signing_alg_values_supported"] = list(assertion.SIGNING_ALGORITHMS)
        metadata["revocation_endpoint_auth_signing_alg_values_supported"] = list(assertion.SIGNING_ALGORITHMS)
    metadata["client_id_metadata_document_supported"] = bool(current_app.config["CIMD_ENABLED"])
    if current_app.config["REGISTRATION_MODE"] in ("open", "token"):
        metadata["registration_endpoint"] = f"{issuer}/oauth/register"
    return metadata
