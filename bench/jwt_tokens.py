"""JWT access tokens against opaque ones: what each costs, in ratios (absolute numbers do not hold
on a shared machine).

    .venv/bin/python bench/jwt_tokens.py [-n 2000] [--database-url sqlite:////tmp/x.sqlite3]

1. authserver's token endpoint issuing opaque tokens, ES256 JWTs and RS256 JWTs: refreshes in a
   chain (each rotates the refresh token and issues an access token), in-process through the WSGI
   app (the fast lane, as in production), on a fresh database (SQLite in a temporary directory
   unless --database-url names an empty one).
2. the example CRM MCP server's token check (crm_mcp.auth.IntrospectionVerifier.verify_token) in
   `introspect` mode with its cache off (one introspection over HTTP per check, authserver served
   by werkzeug in a thread here) and in `jwt` mode (a local signature and claims check).

It asserts nothing: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "crm_mcp")]

from crm_mcp import config as mcp_config
from crm_mcp.auth import IntrospectionVerifier

from authserver import accounts, create_app, resources
from authserver.extensions import db
from authserver.models import Client

RESOURCE = "http://127.0.0.1:8001/mcp"
SCOPE = "crm.objects.contacts.read"
PASSWORD = "correct horse battery"


def build(database_url: str, issuer: str):
    """A fresh authserver with alice (admin in Acme), the MCP resource server and a public client."""
    import flask_migrate

    app = create_app({"TESTING": True, "SECRET_KEY": "bench-" + "x" * 40, "ISSUER": issuer,
                      "DATABASE_URL": database_url, "RATELIMIT_ENABLED": False, "LOG_LEVEL": "ERROR",
                      "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 8})
    with app.app_context():
        flask_migrate.upgrade()
        alice = accounts.create_user("alice@example.com", PASSWORD, "Alice")
        accounts.add_member(alice, accounts.create_hub("Acme", 10000001), "admin")
        resource, secret = resources.create(RESOURCE, "CRM MCP", None, None)
        db.session.add(Client(client_id="bench", client_metadata={
            "client_name": "Bench", "redirect_uris": ["http://127.0.0.1:7777/callback"],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"]}, registration="cli"))
        db.session.commit()
        return app, resource.credential_id, secret


def first_tokens(app) -> dict:
    """Sign in, consent and exchange the code once (tests/oauth's flow, by hand)."""
    import base64
    import hashlib
    import re
    import secrets
    from urllib.parse import parse_qs, urlsplit

    web = app.test_client()
    csrf = re.compile(r'name="csrf_token" value="([^"]+)"')
    page = web.get("/login").get_data(as_text=True)
    web.post("/login", data={"csrf_token": csrf.search(page).group(1), "email": "alice@example.com",
                             "password": PASSWORD})
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": "bench", "redirect_uri": "http://127.0.0.1:7777/callback",
              "state": "s", "code_challenge": challenge, "code_challenge_method": "S256", "resource": RESOURCE,
              "scope": SCOPE}
    html = web.get("/oauth/authorize", query_string=params).get_data(as_text=True)
    shown = re.search(r'name="shown_hub" value="([^"]+)"', html).group(1)
    answer = web.post("/oauth/authorize", query_string=params, data={
        "csrf_token": csrf.search(html).group(1), "hub": "10000001", "shown_hub": shown, "decision": "allow",
        "scope": [SCOPE]})
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    return web.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "client_id": "bench",
                                          "redirect_uri": params["redirect_uri"], "code_verifier": verifier,
                                          "resource": RESOURCE}).get_json()


def set_format(app, token_format: str) -> None:
    with app.app_context():
        resources.set_token_format(resources.get_by_uri(RESOURCE), token_format)
        db.session.commit()


def bench_refresh(app, n: int) -> tuple[float, dict]:
    """Refreshes per second along one chain, and the last token response."""
    web = app.test_client()
    tokens = first_tokens(app)
    started = time.perf_counter()
    for _ in range(n):
        tokens = web.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": "bench",
                                                "refresh_token": tokens["refresh_token"]}).get_json()
    return n / (time.perf_counter() - started), tokens


def bench_checks(settings, token: str, n: int) -> float:
    """The example server's token checks per second for one token."""
    async def main():
        verifier = IntrospectionVerifier(settings)
        assert await verifier.verify_token(token) is not None, "the token does not verify"
        started = time.perf_counter()
        for _ in range(n):
            await verifier.verify_token(token)
        elapsed = time.perf_counter() - started
        await verifier.aclose()
        return n / elapsed

    return anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="operations per measurement")
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    workdir = tempfile.mkdtemp(prefix="jwt-bench-")
    server = make_server("127.0.0.1", 0, None, threaded=True)
    issuer = f"http://127.0.0.1:{server.server_port}"
    app, credential_id, secret = build(args.database_url or f"sqlite:///{workdir}/bench.sqlite3", issuer)
    server.app = app
    threading.Thread(target=server.serve_forever, daemon=True).start()

    print(f"authserver token endpoint, {args.n} refreshes each (requests/s; ratio to opaque):")
    results = {}
    for label, token_format, alg in (("opaque", "opaque", None), ("jwt ES256", "jwt", "ES256"),
                                     ("jwt RS256", "jwt", "RS256")):
        if alg:
            app.config["SIGNING_KEY_ALGORITHM"] = alg
            with app.app_context():
                from authserver import keys

                for key in keys.find_keys():
                    keys.retire(key.kid)
                keys.rotate(alg)
                db.session.commit()
                app.extensions.pop("authserver.signing_keys", None)
        set_format(app, token_format)
        results[label], _ = bench_refresh(app, args.n)
        print(f"  {label:10} {results[label]:8.0f}  x{results[label] / results['opaque']:.2f}")

    base = {"CRM_MCP_ISSUER": issuer, "CRM_MCP_RESOURCE": RESOURCE, "CRM_MCP_CLIENT_ID": credential_id,
            "CRM_MCP_CLIENT_SECRET": secret, "CRM_MCP_CACHE_SECONDS": "0"}
    set_format(app, "opaque")
    opaque = first_tokens(app)["access_token"]
    set_format(app, "jwt")
    jwt = first_tokens(app)["access_token"]
    print(f"example server token check, {args.n} checks each (checks/s; ratio to introspect):")
    introspect = bench_checks(mcp_config.from_env({**base, "CRM_MCP_TOKEN_MODE": "introspect"}), opaque, args.n)
    local = bench_checks(mcp_config.from_env({**base, "CRM_MCP_TOKEN_MODE": "jwt"}), jwt, args.n)
    print(f"  {'introspect':10} {introspect:8.0f}  x1.00  (one HTTP introspection each, cache off)")
    print(f"  {'jwt':10} {local:8.0f}  x{local / introspect:.2f}  (ES256 verified locally)")
    server.shutdown()


if __name__ == "__main__":
    main()
