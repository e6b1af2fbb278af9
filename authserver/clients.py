"""Pre-registered clients (created by an operator with the CLI) and housekeeping of dynamically
registered ones. Dynamic registration itself lives in authserver/oauth/registration.py."""

from __future__ import annotations

import time
from datetime import timedelta

from . import audit, scopes, store
from .models import Client
from .oauth.registration import GRANT_TYPES, RESPONSE_TYPES, redirect_uri_problem
from .secrets import CLIENT_SECRET_PREFIX, hash_secret, new_credential
from .timeutil import utcnow

#: Token endpoint authentication of pre-registered clients: confidential ones use HTTP Basic
#: (client_secret_post works too, see TOKEN_ENDPOINT_AUTH_METHODS), public ones send no secret.
CONFIDENTIAL_METHOD = "client_secret_basic"
PUBLIC_METHOD = "none"


class ClientError(ValueError):
    """A client cannot be created or found as asked; the message is written for people."""


def create_preregistered(
    name: str, redirect_uris: list[str], *, public: bool = False, allowed_scopes: list[str] | None = None
) -> tuple[Client, str | None]:
    """Create a client; returns it and its secret (None for a public client), shown once.

    `allowed_scopes` limits what the client may ever receive (None: no limit beyond the user's
    permissions and the resource's scopes)."""
    name = (name or "").strip()
    if not name:
        raise ClientError("A client needs a name.")
    if not redirect_uris:
        raise ClientError("A client needs at least one redirect URI.")
    for uri in redirect_uris:
        if problem := redirect_uri_problem(uri):
            raise ClientError(f"{uri}: {problem}")
    allowed = scopes.validate_names(allowed_scopes) if allowed_scopes else None
    secret = None if public else new_credential(CLIENT_SECRET_PREFIX)
    client = Client(
        client_id="pre_" + new_credential("", 16),
        client_secret_hash=hash_secret(secret) if secret else None,
        client_metadata={
            "client_name": name[:200],
            "redirect_uris": list(dict.fromkeys(redirect_uris)),
            "token_endpoint_auth_method": PUBLIC_METHOD if public else CONFIDENTIAL_METHOD,
            "grant_types": list(GRANT_TYPES),
            "response_types": list(RESPONSE_TYPES),
        },
        registration="cli",
        allowed_scopes=scopes.to_string(allowed) if allowed is not None else None,
        client_id_issued_at=int(time.time()),
    )
    store.save_client(client)
    audit.record("client.created", client=client, registration="cli")
    return client, secret


def get(client_id: str) -> Client:
    client = store.get_client(client_id)
    if client is None:
        raise ClientError(f"No client with id {client_id!r}. See `flask --app wsgi clients list`.")
    return client


def delete(client: Client) -> None:
    """Delete a client with its grants, codes and tokens (every token stops working at once)."""
    audit.record("client.deleted", client=client, registration=client.registration)
    store.delete_client(client)


def purge_unused(days: int) -> list[str]:
    """Delete dynamically registered clients unused for `days` days; returns their client ids."""
    if days < 1:
        raise ClientError("The unused period must be at least one day.")
    purged = []
    for client in store.find_unused_clients(utcnow() - timedelta(days=days)):
        purged.append(client.client_id)
        audit.record("client.purged", client=client, unused_days=days)
        store.delete_client(client)
    return purged
