"""Operator commands, run as `flask --app wsgi <group> <command>`: users, hubs, members, resource
servers, clients, scopes, roles, admin API credentials, the audit trail, housekeeping and the demo
data.

Each command is one transaction, committed at its end. A bad input is a message on stderr and a
non-zero exit status: 1 for a request that cannot be carried out, 2 for a malformed argument.
"""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from . import accounts, admin_credentials, audit, clients, keys, resources, scopes, store, upstream
from .extensions import db
from .models import Hub, ResourceServer, User
from .secrets import new_credential, sha256_hex, verify_secret
from .timeutil import utcnow

#: Domain errors whose message is written for people: shown as is, exit status 1.
PUBLIC_ERRORS = (
    accounts.AccountError, resources.ResourceError, scopes.UnknownScopeError, clients.ClientError,
    keys.SigningKeyError, admin_credentials.AdminCredentialError,
    upstream.UnknownProvider,
)


def _reporting_errors(f):
    """Turn domain errors into a clean CLI error (and leave the database untouched)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except PUBLIC_ERRORS as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from exc
        except IntegrityError as exc:
            # A concurrent command created the same row between our check and our commit.
            db.session.rollback()
            raise click.ClickException("That conflicts with data created meanwhile; run the command again.") from exc

    return wrapper


class Group(AppGroup):
    """A command group whose commands run in an app context and report domain errors cleanly."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda f: register(_reporting_errors(f))


users = Group("users", help="Create, list, disable and enable user accounts, set their passwords, and link "
                            "them to upstream sign-in providers.")
hubs = Group("hubs", help="Create and list hubs (CRM accounts).")
members = Group("members", help="Hub membership: roles and per-member permission overrides.")
resources_cli = Group("resources", help="Resource servers (MCP servers): the audiences of tokens.")
scopes_cli = Group("scopes", help="The scope catalog.")
roles_cli = Group("roles", help="Role presets.")
clients_cli = Group("clients", help="OAuth clients: pre-registered ones, and housekeeping of registered ones.")
audit_cli = Group("audit", help="The audit trail.")
tokens_cli = Group("tokens", help="Housekeeping of codes and tokens.")
keys_cli = Group("keys", help="JWT access-token signing keys: list, rotate, retire.")
admin_cli = Group("admin", help="Credentials of the admin API (/admin/api/v1/): create, list, revoke.")
demo = Group("demo", help="Demo data for local development.")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    for group in (users, hubs, members, resources_cli, clients_cli, scopes_cli, roles_cli, audit_cli, tokens_cli, keys_cli,
                  admin_cli, demo):
        app.cli.add_command(group)


# --- lookups and output --------------------------------------------------------------------------
def _user(email: str) -> User:
    user = accounts.get_user_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with email {accounts.normalize_email(email)!r}.")
    return user


def _hub(public_id: str) -> Hub:
    hub = accounts.get_hub(public_id)
    if hub is None:
        raise click.ClickException(f"No hub with id {public_id!r}. See `flask --app wsgi hubs list`.")
    return hub


def _resource(uri: str) -> ResourceServer:
    canonical = resources.canonicalize(uri)
    resource = resources.get_by_uri(canonical)
    if resource is None:
        raise click.ClickException(f"No resource server for {canonical}. See `flask --app wsgi resources list`.")
    return resource


def _scope_names(values) -> list[str]:
    """Scope options may be repeated or space-separated: `--scope a --scope "b c"`."""
    return [name for value in values for name in value.split()]


def _echo_table(headers: list[str], rows: list[list], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _scope_list(names) -> str:
    return scopes.to_string(names) or "(none)"


def _echo_credentials(resource: ResourceServer, secret: str) -> None:
    click.echo(f"  resource URI:  {resource.uri}")
    click.echo(f"  credential id: {resource.credential_id}")
    click.echo(f"  secret:        {secret}")


SECRET_SHOWN_ONCE = "The secret is shown only once (only its hash is stored): keep it now."


def _echo_permissions(user: User, hub: Hub) -> None:
    click.echo(f"Effective permissions of {user.email} in hub {hub.public_id}: "
               f"{_scope_list(accounts.permissions(user, hub))}")


# --- users ---------------------------------------------------------------------------------------
@users.command("create")
@click.argument("email")
@click.option("--name", help="Display name (default: the part of the email before the @).")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="At least 8 characters. Asked for (hidden, twice) when absent; prefer that to the shell history.",
)
def create_user(email: str, name: str | None, password: str) -> None:
    """Create a user account."""
    user = accounts.create_user(email, password, name)
    db.session.commit()
    click.echo(f"Created user {user.email} ({user.display_name}).")


@users.command("list")
def list_users() -> None:
    """List user accounts."""
    rows = [[u.email, u.display_name, "disabled" if u.disabled else "enabled"] for u in accounts.find_users()]
    _echo_table(["EMAIL", "NAME", "STATUS"], rows, empty="No users yet.")


@users.command("set-password")
@click.argument("email")
def set_user_password(email: str) -> None:
    """Set a user's password (asked for twice, hidden) and end their signed-in sessions."""
    user = _user(email)
    # An empty answer is returned (and refused below) rather than asked for again forever.
    password = click.prompt("New password", hide_input=True, default="", show_default=False)
    if click.prompt("Repeat it", hide_input=True, default="", show_default=False) != password:
        raise click.ClickException("The two passwords differ; nothing was changed.")
    accounts.set_password(user, password)
    db.session.commit()
    click.echo(f"Set the password of {user.email} and ended their signed-in sessions.")


def _set_disabled(email: str, disabled: bool) -> None:
    user = _user(email)
    accounts.set_disabled(user, disabled)
    db.session.commit()
    click.echo(f"{'Disabled' if disabled else 'Enabled'} {user.email}.")


@users.command("disable")
@click.argument("email")
def disable_user(email: str) -> None:
    """Disable an account: no sign-in (signed-in sessions end), no permissions in any hub, and
    every grant revoked with its tokens (enabling the account again revives none)."""
    _set_disabled(email, True)


@users.command("enable")
@click.argument("email")
def enable_user(email: str) -> None:
    """Enable a disabled account again."""
    _set_disabled(email, False)


@users.command("link")
@click.argument("email")
@click.argument("provider")
@click.argument("subject")
def link_user(email: str, provider: str, subject: str) -> None:
    """Let the person whose `sub` at PROVIDER is SUBJECT sign in as EMAIL through that provider."""
    user, provider = _user(email), upstream.configured_provider(provider)
    accounts.link_upstream_identity(user, provider["name"], subject, None)
    db.session.commit()
    click.echo(f"Linked {subject!r} at {provider['name']} to {user.email}.")


@users.command("unlink")
@click.argument("email")
@click.argument("provider")
def unlink_user(email: str, provider: str) -> None:
    """Remove a user's link to an upstream provider (it may be gone from UPSTREAM_PROVIDERS)."""
    user = _user(email)
    removed = accounts.unlink_upstream_identities(user, provider)
    if not removed:
        raise click.ClickException(f"{user.email} has no link at {provider!r}.")
    db.session.commit()
    click.echo(f"Unlinked {user.email} from {provider}.")


@users.command("links")
@click.argument("email")
def list_user_links(email: str) -> None:
    """List a user's upstream identities."""
    rows = [[i.provider, i.subject, i.email or "", i.last_login_at or "never"]
            for i in accounts.find_upstream_identities(_user(email))]
    _echo_table(["PROVIDER", "SUBJECT", "EMAIL AT LINK", "LAST SIGN-IN"], rows, empty="No upstream identities.")


# --- hubs ----------------------------------------------------------------------------------------
@hubs.command("create")
@click.argument("name")
@click.option(
    "--id", "public_id", type=click.IntRange(10_000_000, 99_999_999),
    help="The 8-digit public hub id (default: a random free one).",
)
def create_hub(name: str, public_id: int | None) -> None:
    """Create a hub."""
    hub = accounts.create_hub(name, public_id)
    db.session.commit()
    click.echo(f"Created hub {hub.name!r} with id {hub.public_id}.")


@hubs.command("list")
def list_hubs() -> None:
    """List hubs with their member counts."""
    rows = [[h.public_id, h.name, len(h.memberships)] for h in accounts.find_hubs()]
    _echo_table(["ID", "NAME", "MEMBERS"], rows, empty="No hubs yet.")


# --- members -------------------------------------------------------------------------------------
@members.command("add")
@click.argument("email")
@click.argument("hub_id")
@click.option("--role", required=True, help="A role preset (see `roles list`).")
def add_member(email: str, hub_id: str, role: str) -> None:
    """Make a user a member of a hub with a role."""
    user, hub = _user(email), _hub(hub_id)
    accounts.add_member(user, hub, role)
    db.session.commit()
    click.echo(f"Added {user.email} to hub {hub.public_id} as {role}.")


@members.command("remove")
@click.argument("email")
@click.argument("hub_id")
def remove_member(email: str, hub_id: str) -> None:
    """Remove a user from a hub (their grants in it stop working)."""
    user, hub = _user(email), _hub(hub_id)
    accounts.remove_member(user, hub)
    db.session.commit()
    click.echo(f"Removed {user.email} from hub {hub.public_id}.")


@members.command("set-role")
@click.argument("email")
@click.argument("hub_id")
@click.argument("role")
def set_role(email: str, hub_id: str, role: str) -> None:
    """Change a member's role."""
    user, hub = _user(email), _hub(hub_id)
    accounts.set_role(user, hub, role)
    db.session.commit()
    _echo_permissions(user, hub)


@members.command("grant")
@click.argument("email")
@click.argument("hub_id")
@click.argument("scope")
def grant(email: str, hub_id: str, scope: str) -> None:
    """Allow a member one scope beyond their role (lifting a denial of it)."""
    user, hub = _user(email), _hub(hub_id)
    accounts.grant_permission(user, hub, scope)
    db.session.commit()
    _echo_permissions(user, hub)


@members.command("deny")
@click.argument("email")
@click.argument("hub_id")
@click.argument("scope")
def deny(email: str, hub_id: str, scope: str) -> None:
    """Deny a member one scope, whatever their role allows."""
    user, hub = _user(email), _hub(hub_id)
    accounts.deny_permission(user, hub, scope)
    db.session.commit()
    _echo_permissions(user, hub)


@members.command("list")
@click.argument("hub_id")
def list_members(hub_id: str) -> None:
    """List a hub's members with their role, overrides and effective permissions."""
    hub = _hub(hub_id)
    click.echo(f"Hub {hub.public_id} {hub.name!r}")
    memberships = sorted(hub.memberships, key=lambda m: m.user.email)
    if not memberships:
        click.echo("No members yet.")
    for membership in memberships:
        user = membership.user
        click.echo(f"{user.email}  role: {membership.role}{'  (disabled)' if user.disabled else ''}")
        if membership.granted:
            click.echo(f"  granted: {' '.join(membership.granted)}")
        if membership.denied:
            click.echo(f"  denied: {' '.join(membership.denied)}")
        click.echo(f"  permissions: {_scope_list(accounts.permissions(user, hub))}")


# --- resource servers ----------------------------------------------------------------------------
@resources_cli.command("create")
@click.argument("uri")
@click.option("--name", required=True, help="Shown to people on the consent page.")
@click.option("--scope", "scope_names", multiple=True, help="An accepted scope (repeatable; default: every scope).")
@click.option(
    "--default-scope", "default_names", multiple=True,
    help="A scope granted when a request names none (repeatable; default: the accepted scopes).",
)
@click.option("--token-format", type=click.Choice(resources.TOKEN_FORMATS), default=resources.OPAQUE,
              show_default=True, help="Access tokens: opaque (introspected) or jwt (RFC 9068, verified locally).")
def create_resource(uri: str, name: str, scope_names: tuple[str, ...], default_names: tuple[str, ...],
                    token_format: str) -> None:
    """Register a resource server and print its introspection credentials."""
    if token_format == resources.JWT:
        keys.check_configured()
    resource, secret = resources.create(
        uri, name, _scope_names(scope_names) or None, _scope_names(default_names) or None,
        token_format=token_format,
    )
    db.session.commit()
    click.echo(f"Registered resource server {resource.name!r}.")
    _echo_credentials(resource, secret)
    click.echo(SECRET_SHOWN_ONCE)


@resources_cli.command("list")
def list_resources() -> None:
    """List resource servers with their scopes."""
    found = resources.find_all()
    if not found:
        click.echo("No resource servers yet.")
    for resource in found:
        click.echo(f"{resource.uri}  {resource.name!r}")
        click.echo(f"  credential id: {resource.credential_id}")
        click.echo(f"  token format: {resource.token_format}")
        click.echo(f"  scopes: {_scope_list(resource.scope_set)}")
        click.echo(f"  default scopes: {_scope_list(resource.default_scope_set)}")


@resources_cli.command("rotate-secret")
@click.argument("uri")
def rotate_resource_secret(uri: str) -> None:
    """Replace a resource server's introspection secret; the old one stops working at once."""
    resource = _resource(uri)
    secret = resources.rotate_secret(resource)
    db.session.commit()
    click.echo(f"New secret for {resource.name!r}:")
    _echo_credentials(resource, secret)
    click.echo(SECRET_SHOWN_ONCE)


@resources_cli.command("set-format")
@click.argument("uri")
@click.argument("token_format", type=click.Choice(resources.TOKEN_FORMATS))
def set_resource_format(uri: str, token_format: str) -> None:
    """Issue opaque or jwt access tokens for a resource server from now on (tokens already issued
    keep working until they expire)."""
    resource = _resource(uri)
    if token_format == resources.JWT:
        keys.check_configured()
    resources.set_token_format(resource, token_format)
    db.session.commit()
    click.echo(f"{resource.name!r} is issued {token_format} access tokens from now on.")


# --- signing keys --------------------------------------------------------------------------------
@keys_cli.command("list")
def list_keys() -> None:
    """List signing keys with their state and schedule (times in UTC)."""
    now = utcnow()
    rows = [[k.kid, k.alg, keys.state(k, now), _when(k.created_at), _when(k.active_at),
             _when(k.retired_at) if k.retired_at else "-", _when(k.published_until) if k.published_until else "-"]
            for k in keys.find_keys()]
    _echo_table(["kid", "alg", "state", "created", "signs from", "retired", "published until"], rows,
                "No signing keys yet (the first JWT issued makes one, or run `keys rotate`).")


@keys_cli.command("rotate")
@click.option("--alg", type=click.Choice(list(keys.ALGORITHMS)), default=None,
              help="Algorithm of the new key (default: AUTHSERVER_SIGNING_KEY_ALGORITHM).")
def rotate_keys(alg: str | None) -> None:
    """Make a new signing key: published now, signing after the pre-publication time, when the
    current key is retired (it stays published until the tokens it signed have expired)."""
    key = keys.rotate(alg)
    db.session.commit()
    click.echo(f"New signing key {key.kid} ({key.alg}), published now, signing from {_when(key.active_at)} UTC.")


@keys_cli.command("retire")
@click.argument("kid")
def retire_key(kid: str) -> None:
    """Stop signing with a key now; it leaves the JWKS once every token it signed has expired."""
    key = keys.retire(kid)
    db.session.commit()
    click.echo(f"Retired {key.kid}; published until {_when(key.published_until)} UTC.")
    if not any(keys.state(k, utcnow()) in ("signing", "pending") for k in keys.find_keys()):
        click.echo("No key is left to sign: the next JWT issued makes a new one. Run `keys rotate` to choose when.")


# --- scopes and roles ----------------------------------------------------------------------------
@scopes_cli.command("list")
def list_scopes() -> None:
    """List the scope catalog."""
    rows = [[s.name, s.group, s.description] for s in scopes.catalog().values()]
    _echo_table(["SCOPE", "GROUP", "DESCRIPTION"], rows, empty="The catalog is empty.")


@roles_cli.command("list")
def list_roles() -> None:
    """List the role presets and the scopes each allows."""
    for role, names in accounts.roles().items():
        click.echo(f"{role}: {_scope_list(names)}")


# --- clients -------------------------------------------------------------------------------------
@clients_cli.command("create")
@click.option("--name", required=True, help="Shown to people on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="Repeat for several.")
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE only), e.g. a native app.")
@click.option("--scope", "scope_values", multiple=True,
              help="Scopes the client may ever receive (repeat, or space-separate). Default: no limit.")
def create_client(name: str, redirect_uris: tuple[str, ...], public: bool, scope_values: tuple[str, ...]) -> None:
    """Pre-register a client (confidential unless --public) and print its credentials once."""
    client, secret = clients.create_preregistered(
        name, list(redirect_uris), public=public, allowed_scopes=_scope_names(scope_values) or None
    )
    db.session.commit()
    click.echo(f"Created client {client.client_name!r}.")
    click.echo(f"  client_id:     {client.client_id}")
    click.echo(f"  auth method:   {client.token_endpoint_auth_method}")
    click.echo(f"  allowed scopes: {client.allowed_scopes or '(any the user allows)'}")
    if secret:
        click.echo(f"  client_secret: {secret}")
        click.echo(SECRET_SHOWN_ONCE)


@clients_cli.command("list")
def list_clients() -> None:
    """Every client, with how it was registered and when it was last used."""
    rows = [
        [c.client_id, c.client_name, c.registration, c.token_endpoint_auth_method,
         " ".join(c.redirect_uris), c.allowed_scopes or "-", _when(c.last_used_at)]
        for c in store.find_clients()
    ]
    _echo_table(["client_id", "name", "registration", "auth", "redirect URIs", "allowed scopes", "last used"],
                rows, "No clients.")


@clients_cli.command("delete")
@click.argument("client_id")
def delete_client(client_id: str) -> None:
    """Delete a client; its grants and every token issued to it stop working at once."""
    client = clients.get(client_id)
    name = client.client_name
    clients.delete(client)
    db.session.commit()
    click.echo(f"Deleted client {name!r} ({client_id}) with its grants and tokens.")


@clients_cli.command("purge-unused")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Unused period (default: the UNUSED_CLIENT_DAYS setting).")
@click.option("--every", type=click.IntRange(min=60), default=None, metavar="SECONDS",
              help="Keep running, purging every SECONDS (for a scheduler-less deployment).")
def purge_unused(days: int | None, every: int | None) -> None:
    """Delete dynamically registered clients not used within the unused period."""
    days = days or current_app.config["UNUSED_CLIENT_DAYS"]
    while True:
        purged = clients.purge_unused(days)
        db.session.commit()
        click.echo(f"Purged {len(purged)} client(s) unused for {days} day(s)."
                   + (f" {' '.join(purged)}" if purged else ""))
        if every is None:
            return
        db.session.remove()
        time.sleep(every)


@clients_cli.command("initial-token")
def initial_token() -> None:
    """Make an initial access token for REGISTRATION_MODE "token" (RFC 7591 §3)."""
    token = new_credential("ait_")
    click.echo(f"Initial access token (give it to the client developer): {token}")
    click.echo("Add its SHA-256 digest to REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES, e.g.")
    click.echo(f"  AUTHSERVER_REGISTRATION_INITIAL_ACCESS_TOKEN_HASHES='[\"{sha256_hex(token)}\"]'")


# --- admin API credentials -----------------------------------------------------------------------
@admin_cli.command("create-credential")
@click.option("--name", required=True, help="Who or what holds it (e.g. 'CRM back end').")
def create_admin_credential(name: str) -> None:
    """Create an admin API credential and print its id and secret once."""
    credential, secret = admin_credentials.create(name)
    db.session.commit()
    click.echo(f"Created admin credential {credential.name!r}.")
    click.echo(f"  credential id: {credential.credential_id}")
    click.echo(f"  secret:        {secret}")
    click.echo(SECRET_SHOWN_ONCE)
    click.echo("Call the admin API with HTTP Basic: the credential id as user name, the secret as password.")


@admin_cli.command("list-credentials")
def list_admin_credentials() -> None:
    """List admin API credentials (never their secrets), revoked ones included."""
    rows = [[c.credential_id, c.name, _when(c.created_at), _when(c.last_used_at),
             f"revoked {_when(c.revoked_at)}" if c.revoked_at else "active"] for c in admin_credentials.find_all()]
    _echo_table(["credential id", "name", "created", "last used", "status"], rows, "No admin credentials.")


@admin_cli.command("revoke-credential")
@click.argument("credential_id")
def revoke_admin_credential(credential_id: str) -> None:
    """Revoke an admin API credential: it is refused from the next request on."""
    credential = admin_credentials.revoke(credential_id)
    db.session.commit()
    click.echo(f"Revoked admin credential {credential.credential_id} ({credential.name!r}).")


# --- audit trail and housekeeping ----------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "never"


@audit_cli.command("list")
@click.option("--user", "email", help="Events of this user (email).")
@click.option("--event", help="Event name; * is a wildcard (e.g. 'token.*').")
@click.option("--client", "client_id", help="Events about this client_id.")
@click.option("--hub", "hub_id", type=int, help="Events in this hub (public id).")
@click.option("--since", type=click.DateTime(), help="Only events at or after this UTC time.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_audit(email, event, client_id, hub_id, since, limit, as_json) -> None:
    """The most recent audit events first."""
    user_id = _user(email).id if email else None
    events = audit.find_events(user_id=user_id, event=event, client_id=client_id, hub_id=hub_id,
                               since=since, limit=limit)
    if as_json:
        for e in events:
            click.echo(json.dumps({
                "time": e.created_at.isoformat() + "Z", "event": e.event, "user_id": e.user_id, "hub_id": e.hub_id,
                "client_id": e.client_id, "ip": e.ip, "request_id": e.request_id, "detail": e.detail,
            }, sort_keys=True))
        return
    rows = [[_when(e.created_at), e.event, e.user_id or "-", e.hub_id or "-", e.client_id or "-", e.ip or "-",
             " ".join(f"{k}={v}" for k, v in (e.detail or {}).items())] for e in events]
    _echo_table(["time (UTC)", "event", "user", "hub", "client", "ip", "detail"], rows, "No matching events.")


@tokens_cli.command("purge-expired")
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Rows deleted (and committed) per statement of each kind.")
def purge_expired(batch_size: int) -> None:
    """Delete expired codes, tokens, assertion records, ended sessions and stale documents (safe
    to run at any time)."""
    # Committing after each bounded batch keeps every transaction short: a single DELETE of a
    # million expired tokens would hold its row locks, and bloat the WAL, for its whole duration.
    now = utcnow()
    totals: dict[str, int] = {}
    while True:
        counts = store.purge_expired(now, limit=batch_size)
        db.session.commit()
        for what, n in counts.items():
            totals[what] = totals.get(what, 0) + n
        if all(n < batch_size for n in counts.values()):
            break
    click.echo("Purged " + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in totals.items()) + ".")


# --- demo data -----------------------------------------------------------------------------------
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_NAME = "Demo User"
DEMO_HUBS = ((10000001, "Acme Sales", "admin"), (10000002, "Globex Support", "viewer"))
DEMO_RESOURCE_URI = "http://127.0.0.1:8001/mcp"
DEMO_RESOURCE_NAME = "Example CRM MCP server"
#: Fixed so that the example MCP server can be configured before the seed runs (make run-mcp).
DEMO_RESOURCE_CREDENTIAL_ID = "rs_demo"


#: Exactly the scopes the example MCP server's tools use (SCOPES_SUPPORTED in
#: examples/crm_mcp/crm_mcp/auth.py), so a client that names none is granted nothing unused.
DEMO_DEFAULT_SCOPES = (
    "crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
    "crm.objects.tickets.read", "crm.objects.notes.read", "crm.objects.notes.write",
)


def demo_default_scopes() -> list[str]:
    """The demo resource server's default scopes: what the example's tools use, and no more."""
    return scopes.validate_names(DEMO_DEFAULT_SCOPES)


@demo.command("seed")
@click.option(
    "--resource-secret",
    envvar="AUTHSERVER_DEMO_RESOURCE_SECRET",
    help="Introspection secret for the demo resource server, kept across runs (env "
    "AUTHSERVER_DEMO_RESOURCE_SECRET). Without it, a rerun rotates the secret.",
)
def seed(resource_secret: str | None) -> None:
    """Create the demo user, hubs and resource server; running it again changes nothing."""
    if resource_secret is not None and (len(resource_secret) < 16 or any(c.isspace() for c in resource_secret)):
        raise click.BadParameter("must be at least 16 characters, without spaces.", param_hint="--resource-secret")
    created = []
    user = accounts.get_user_by_email(DEMO_EMAIL)
    if user is None:
        user = accounts.create_user(DEMO_EMAIL, DEMO_PASSWORD, DEMO_NAME)
        created.append(f"user {DEMO_EMAIL}")
    for public_id, name, role in DEMO_HUBS:
        hub = accounts.get_hub(public_id)
        if hub is None:
            hub = accounts.create_hub(name, public_id)
            created.append(f"hub {name!r}")
        if accounts.get_membership(user, hub) is None:
            accounts.add_member(user, hub, role)
            created.append(f"{role} membership in {name!r}")

    resource = resources.get_by_uri(DEMO_RESOURCE_URI)
    rotated = False
    if resource is None:
        resource, secret = resources.create(
            DEMO_RESOURCE_URI, DEMO_RESOURCE_NAME, None, demo_default_scopes(), DEMO_RESOURCE_CREDENTIAL_ID
        )
        created.append(f"resource server {DEMO_RESOURCE_NAME!r}")
        if resource_secret:
            secret = resources.rotate_secret(resource, resource_secret)
    elif resource_secret:
        secret = resource_secret
        if not verify_secret(resource.credential_secret_hash, resource_secret):
            resources.rotate_secret(resource, resource_secret)
            rotated = True
    else:
        # Only the hash is stored, so the previous secret cannot be shown again: replace it.
        secret = resources.rotate_secret(resource)
        rotated = True
    db.session.commit()

    click.echo(f"Created {', '.join(created)}." if created else "Demo data already present.")
    click.echo(f"Sign in at {current_app.config['ISSUER']}/login")
    click.echo(f"  email:    {DEMO_EMAIL}")
    click.echo(f"  password: {DEMO_PASSWORD}")
    click.echo(f"Demo resource server {resource.name!r} (introspection credentials):")
    _echo_credentials(resource, secret)
    if rotated:
        click.echo("The resource server already existed; its secret was replaced by the one above.")
