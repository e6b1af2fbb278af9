"""Consent policy: which scopes each hub can grant, remembered consent, and recording a decision.

Granted scopes = requested ∩ resource's scopes ∩ client's allowed scopes (already applied while
validating the request) ∩ the user's permissions in the chosen hub ∩ the boxes left ticked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import accounts, scopes, store
from .models import Client, ResourceServer, User
from .models.clients import is_loopback_redirect, redirect_host
from .oauth.grants import Decision


class ConsentError(ValueError):
    """A consent submission that cannot be accepted (message is shown to the person)."""


class HubNotShown(ConsentError):
    """Allow was pressed for another hub than the one whose permissions were on the page."""

    def __init__(self, hub: store.HubMembership):
        super().__init__(f"Check the permissions for {hub.name} and press Allow again.")
        self.hub = hub


def asks_every_time(client: Client, redirect_uri: str) -> bool:
    """No silent approval where the client's identity cannot be assured (RFC 8252 §8.6): a public
    client redirecting to loopback or a private-use scheme may be any program on the device that
    claims its client_id. An https redirect URI is held by its domain, and a confidential client
    proves itself at the token endpoint, so those keep remembered consent."""
    return client.is_public and urlsplit(redirect_uri).scheme.lower() != "https"


@dataclass
class ClientIdentity:
    """Who is asking and where it sends people back: what the consent page, and the sign-in page
    in front of it, show about an app so that a look-alike is told apart (templates/oauth/_client.html)."""

    client: Client
    redirect_uri: str

    @property
    def display_name(self) -> str:
        return self.client.display_name

    @property
    def redirect_host(self) -> str:
        return redirect_host(self.redirect_uri)

    @property
    def loopback(self) -> bool:
        return is_loopback_redirect(self.redirect_uri)

    @property
    def verified_domain(self) -> str | None:
        return self.client.verified_domain

    @property
    def name_unverified(self) -> bool:
        """Dynamically registered clients chose their own name; nobody checked it."""
        return self.client.registration != "cli"


def waiting_app(client_id: str, redirect_uri: str | None) -> ClientIdentity | None:
    """The app an authorization request waiting behind the sign-in page is for, shown as its consent
    page will show it; None unless `client_id` is a known client and `redirect_uri` (or, when absent,
    its only one) is registered to it: a hand-made link pairing a real app's name with another
    destination gets the plain page. One lookup and never a fetch: a metadata-document client is
    known once the authorization endpoint has validated its request."""
    client = store.get_client(client_id)
    if client is None:
        return None
    uri = redirect_uri if redirect_uri is not None else client.get_default_redirect_uri()
    if not uri or not client.check_redirect_uri(uri):
        return None
    return ClientIdentity(client, uri)


@dataclass
class ScopeChoice:
    scope: scopes.Scope
    available: bool
    checked: bool


@dataclass
class ConsentPage(ClientIdentity):
    resource: ResourceServer
    hubs: list[store.HubMembership]
    selected: store.HubMembership | None
    choices: list[ScopeChoice] = field(default_factory=list)

    @property
    def asks_every_time(self) -> bool:
        return asks_every_time(self.client, self.redirect_uri)

    @property
    def can_approve(self) -> bool:
        return any(c.available for c in self.choices)


def requested_scopes(oauth_grant) -> list[str]:
    return oauth_grant.request.scope.split()


def _hubs_and_grants(user: User, oauth_grant):
    """The user's hubs with their memberships, and their live grants to the request's client,
    resource and installation (store.find_hubs_and_grants: one statement)."""
    request = oauth_grant.request
    return store.find_hubs_and_grants(user, request.client, request.resource, oauth_grant.redirect_uri)


def _permissions(user: User, hub: store.HubMembership) -> frozenset[str]:
    """What the user may do in `hub`, from the membership read with it (accounts.permissions_from,
    the one rule)."""
    return accounts.permissions_from(user.disabled, hub.role, hub.granted, hub.denied)


def build_page(user: User, oauth_grant, hub_param: str | None, ticked: set[str] | None = None) -> ConsentPage:
    """What the consent page shows for the hub the user picked (or their first hub). A client that
    is asked every time gets the person's last choice for this installation pre-filled."""
    hubs, live = _hubs_and_grants(user, oauth_grant)
    client, resource = oauth_grant.request.client, oauth_grant.request.resource
    if hub_param is None and ticked is None and live and asks_every_time(client, oauth_grant.redirect_uri):
        last = live[0]
        hub_param, ticked = last.hub.public_id, set(last.scope_set)
    selected = next((h for h in hubs if str(h.public_id) == str(hub_param)), hubs[0] if hubs else None)
    page = ConsentPage(client=client, resource=resource, redirect_uri=oauth_grant.redirect_uri, hubs=hubs,
                       selected=selected)
    allowed = _permissions(user, selected) if selected is not None else frozenset()
    for scope in scopes.describe(requested_scopes(oauth_grant)):
        available = scope.name in allowed
        checked = available and (ticked is None or scope.name in ticked)
        page.choices.append(ScopeChoice(scope, available, checked))
    return page


def remembered_decision(user: User, oauth_grant) -> Decision | None:
    """Skip the page when the user already granted this client, for this resource and
    installation (redirect URI), at least the requested scopes (in the hub they used most
    recently); never for a client whose identity can't be assured (`asks_every_time`).
    The grants, their hubs and the user's live memberships come in one query."""
    client = oauth_grant.request.client
    if asks_every_time(client, oauth_grant.redirect_uri):
        return None
    requested = set(requested_scopes(oauth_grant))
    _, live = _hubs_and_grants(user, oauth_grant)
    for grant in live:
        if not requested <= grant.scope_set:
            continue
        allowed = _permissions(user, grant.hub)
        scope = [s for s in requested_scopes(oauth_grant) if s in allowed]
        if not scope:
            continue
        return Decision(user=user, hub=grant.hub, grant=store.use_grant(grant, live), scope=scopes.to_string(scope))
    return None


def _public_id(hub_param: str | None) -> int | None:
    """A hub's public id as the form sends it, or None when it cannot be one (not a number, or
    outside BIGINT: no such hub, and no database error)."""
    try:
        public_id = int(hub_param)
    except (TypeError, ValueError):
        return None
    return public_id if 0 < public_id < 2**63 else None


def decide(user: User, oauth_grant, hub_param: str | None, shown_hub: str | None, ticked: list[str]) -> Decision:
    """The user's approval and what to put in the authorization code; the grant is recorded with
    the code (Decision.grant).

    The hub granted is the hub whose permissions the person saw: Allow pressed with another hub
    selected (`shown_hub` is the one displayed) raises HubNotShown and grants nothing."""
    public_id = _public_id(hub_param)
    hubs, live = _hubs_and_grants(user, oauth_grant) if public_id is not None else ([], [])
    hub = next((h for h in hubs if h.public_id == public_id), None)
    if hub is None:
        # A hand-edited form naming a hub that does not exist or the user does not belong to.
        raise ConsentError("Choose one of your hubs.")
    if str(hub.public_id) != (shown_hub or ""):
        raise HubNotShown(hub)
    allowed = _permissions(user, hub)
    requested = requested_scopes(oauth_grant)
    granted = [s for s in requested if s in allowed and s in set(ticked)]
    if not granted:
        raise ConsentError("Leave at least one permission ticked, or choose Deny.")
    scope = scopes.to_string(granted)
    return Decision(user=user, hub=hub, grant=store.record_grant(live, hub, scope), scope=scope)
