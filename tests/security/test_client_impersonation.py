"""Threat 9: client impersonation at the token endpoint (RFC 9700 §4.15, §2.5; OAuth 2.1 §2.4).

Defence: the registered token_endpoint_auth_method is the only one accepted
(Client.check_endpoint_auth_method): a public client presenting a secret is refused, never
promoted to confidential; a confidential client must present its own secret, by its own method;
failures are 401 invalid_client."""

from __future__ import annotations

from oauth.support import REDIRECT_URI, RESOURCE, assert_oauth_error


def _code_request(code, pkce, **extra):
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier, "resource": RESOURCE, **extra}


def test_client_impersonation_public_client_presenting_secret_in_body_refused(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    assert_oauth_error(flow.exchange(client_id, code, pkce, client_secret="guessed"), "invalid_client", 401)


def test_client_impersonation_public_client_presenting_basic_credentials_refused(flow, register):
    client_id = register()["client_id"]
    code, pkce, _ = flow.get_code(client_id)
    response = flow.client.post("/oauth/token", data=_code_request(code, pkce), auth=(client_id, "guessed"))
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_client_impersonation_confidential_client_without_secret_refused(flow, preregistered):
    client_id, _secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    assert_oauth_error(flow.exchange(client_id, code, pkce), "invalid_client", 401)


def test_client_impersonation_confidential_client_wrong_secret_refused(flow, preregistered):
    client_id, secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    for wrong in ("wrong", secret[:-1], secret + "x", secret.upper()):
        response = flow.client.post("/oauth/token", data=_code_request(code, pkce), auth=(client_id, wrong))
        assert_oauth_error(response, "invalid_client", 401)
    # The code was not spent: the right secret still redeems it.
    response = flow.client.post("/oauth/token", data=_code_request(code, pkce), auth=(client_id, secret))
    assert response.status_code == 200, response.get_json()


def test_client_impersonation_another_clients_secret_refused(flow, register):
    victim = register(token_endpoint_auth_method="client_secret_post")
    attacker = register(token_endpoint_auth_method="client_secret_post", client_name="Attacker App")
    code, pkce, _ = flow.get_code(victim["client_id"])
    response = flow.exchange(victim["client_id"], code, pkce, client_secret=attacker["client_secret"])
    assert_oauth_error(response, "invalid_client", 401)


def test_client_impersonation_secret_by_unregistered_method_refused(flow, preregistered):
    """client_secret_basic is registered: the right secret in the body is still refused."""
    client_id, secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    assert_oauth_error(flow.exchange(client_id, code, pkce, client_secret=secret), "invalid_client", 401)


def test_client_impersonation_confidential_client_cannot_revoke_without_secret(flow, preregistered):
    client_id, secret = preregistered()
    code, pkce, _ = flow.get_code(client_id, scope="crm.objects.contacts.read")
    tokens = flow.client.post("/oauth/token", data=_code_request(code, pkce), auth=(client_id, secret)).get_json()
    response = flow.client.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": client_id})
    assert_oauth_error(response, "invalid_client", 401)
    assert flow.introspect(tokens["access_token"]).get_json()["active"] is True


def test_client_impersonation_public_client_cannot_turn_itself_confidential(client, register):
    registered = register()
    body = {k: v for k, v in registered.items() if k not in ("registration_access_token", "registration_client_uri",
                                                             "client_id_issued_at")}
    body["token_endpoint_auth_method"] = "client_secret_basic"
    response = client.put(f"/oauth/register/{registered['client_id']}", json=body,
                          headers={"Authorization": f"Bearer {registered['registration_access_token']}"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_client_metadata"
