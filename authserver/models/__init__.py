"""Typed SQLAlchemy models, one module per table family."""

from .accounts import EndedSession, Hub, Membership, UpstreamIdentity, User
from .admin import AdminCredential
from .audit import AuditEvent
from .clients import Client
from .grants import AuthorizationCode, Grant
from .keys import SigningKey
from .remote import RemoteDocument, UsedAssertion
from .resources import ResourceServer
from .tokens import Token

__all__ = [
    "AdminCredential",
    "AuditEvent",
    "AuthorizationCode",
    "Client",
    "EndedSession",
    "Grant",
    "Hub",
    "Membership",
    "RemoteDocument",
    "ResourceServer",
    "SigningKey",
    "Token",
    "UpstreamIdentity",
    "UsedAssertion",
    "User",
]
