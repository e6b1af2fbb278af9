"""The scope catalog: every grantable scope with a plain-language description and a group.

Modelled on a large CRM's scopes (``crm.objects.<type>.read|write``). A deployer may replace the
catalog with the ``SCOPE_CATALOG`` setting; it is validated at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .config import ConfigError


@dataclass(frozen=True)
class Scope:
    name: str
    description: str
    group: str


def _crm(obj: str, label: str, write: bool = True) -> dict[str, dict[str, str]]:
    entries = {
        f"crm.objects.{obj}.read": {
            "description": f"View your {label}",
            "group": label.capitalize(),
        }
    }
    if write:
        entries[f"crm.objects.{obj}.write"] = {
            "description": f"Create and edit your {label}",
            "group": label.capitalize(),
        }
    return entries


DEFAULT_CATALOG: dict[str, dict[str, str]] = {
    **_crm("contacts", "contacts"),
    **_crm("companies", "companies"),
    **_crm("deals", "deals"),
    **_crm("tickets", "tickets"),
    **_crm("notes", "notes"),
    **_crm("owners", "owners (users who own records)", write=False),
}

# Accepted in authorization requests for compatibility with clients that always send it, and
# ignored: refresh tokens depend on the client's registered grant types, not on this scope.
IGNORED_SCOPES = frozenset({"offline_access"})


class UnknownScopeError(ValueError):
    """A scope name that is not in the catalog."""


def build_catalog(raw: dict | None) -> dict[str, Scope]:
    """Validate a catalog mapping (name -> {description, group}) into Scope objects."""
    raw = DEFAULT_CATALOG if raw is None else raw
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("SCOPE_CATALOG must be a non-empty mapping of scope name to details.")
    catalog: dict[str, Scope] = {}
    for name, details in raw.items():
        if not isinstance(name, str) or not name or any(c.isspace() or c in '"\\' for c in name):
            raise ConfigError(f"Invalid scope name in SCOPE_CATALOG: {name!r}.")
        if not isinstance(details, dict) or not isinstance(details.get("description"), str):
            raise ConfigError(f"Scope {name!r} in SCOPE_CATALOG needs a 'description' string.")
        catalog[name] = Scope(name, details["description"], str(details.get("group") or "Other"))
    return catalog


def catalog() -> dict[str, Scope]:
    """The catalog in force for the current app (built once in create_app)."""
    return current_app.extensions["authserver.scopes"]


def all_names() -> list[str]:
    return list(catalog())


def validate_names(names, *, what: str = "scope") -> list[str]:
    """Return the names (deduplicated, in order) or raise UnknownScopeError naming the bad ones."""
    known = catalog()
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownScopeError(
            f"Unknown {what}: {', '.join(unknown)}. Known scopes: {', '.join(known)}."
        )
    return names


def describe(names) -> list[Scope]:
    """Catalog entries for the given names, in catalog order."""
    wanted = set(names)
    return [s for n, s in catalog().items() if n in wanted]


def to_string(names) -> str:
    """Space-separated scope string in catalog order (stable for comparisons and display)."""
    wanted = set(names)
    return " ".join(n for n in catalog() if n in wanted)
