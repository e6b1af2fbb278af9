"""The CRM's object types, their properties and associations: one table that the query language,
the SQL, the property tool and the record text all read, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass

OBJECT_TYPES = ("contacts", "companies", "deals", "tickets")

#: Operators per property type, in the order the error messages list them.
OPERATORS: dict[str, tuple[str, ...]] = {
    "string": ("eq", "neq", "in", "not_in", "contains_token", "has_property", "not_has_property"),
    "enumeration": ("eq", "neq", "in", "not_in", "has_property", "not_has_property"),
    "number": ("eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "has_property", "not_has_property"),
    "date": ("eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "has_property", "not_has_property"),
}
ALL_OPERATORS = tuple(dict.fromkeys(op for ops in OPERATORS.values() for op in ops))
NO_VALUE_OPERATORS = ("has_property", "not_has_property")


@dataclass(frozen=True)
class Property:
    name: str
    type: str  # a key of OPERATORS
    label: str
    options: tuple[str, ...] = ()  # allowed values of an enumeration
    example: str = ""  # a value for error messages and the property tool

    def describe(self) -> dict:
        described = {"name": self.name, "type": self.type, "label": self.label,
                     "operators": list(OPERATORS[self.type])}
        if self.options:
            described["options"] = list(self.options)
        return described


def _p(name, type_, label, options=(), example=""):
    example = example or (options[0] if options else {"number": "100", "date": "2026-12-31"}.get(type_, "x"))
    return Property(name, type_, label, tuple(options), example)


_OWNER = _p("owner_id", "number", "Owner id", example="me")  # `owner_id:me`: your own records
LIFECYCLE_STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
                    "customer", "evangelist", "other")
DEAL_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
               "contractsent", "negotiation", "closedwon", "closedlost")
INDUSTRIES = ("Manufacturing", "Software", "Energy", "Services", "Finance", "Retail", "Healthcare")

#: Every property of every type; also the only column names ever written into SQL.
PROPERTIES: dict[str, dict[str, Property]] = {
    "contacts": {p.name: p for p in (
        _p("firstname", "string", "First name", example="Ada"),
        _p("lastname", "string", "Last name", example="Lovelace"),
        _p("email", "string", "Email", example="ada@acme.example"),
        _p("jobtitle", "string", "Job title", example="CTO"),
        _p("lifecycle_stage", "enumeration", "Lifecycle stage", LIFECYCLE_STAGES, "customer"),
        _p("company_id", "number", "Primary company id"),
        _p("created_date", "date", "Created on", example="2026-01-31"),
        _OWNER,
    )},
    "companies": {p.name: p for p in (
        _p("name", "string", "Name", example="Acme"),
        _p("domain", "string", "Domain", example="acme.example"),
        _p("industry", "enumeration", "Industry", INDUSTRIES, "Software"),
        _p("city", "string", "City", example="Austin"),
        _p("employees", "number", "Employees", example="500"),
        _OWNER,
    )},
    "deals": {p.name: p for p in (
        _p("name", "string", "Deal name", example="renewal"),
        _p("stage", "enumeration", "Deal stage", DEAL_STAGES, "negotiation"),
        _p("amount", "number", "Amount", example="10000"),
        _p("company_id", "number", "Primary company id"),
        _p("close_date", "date", "Close date"),
        _OWNER,
    )},
    "tickets": {p.name: p for p in (
        _p("subject", "string", "Subject", example="login"),
        _p("status", "enumeration", "Status", ("new", "waiting", "in_progress", "closed"), "new"),
        _p("priority", "enumeration", "Priority", ("low", "medium", "high", "urgent"), "high"),
        _p("created_date", "date", "Created on", example="2026-01-31"),
        _OWNER,
    )},
}

#: What free text matches (names and emails); SQL expressions over the type's own columns.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email"),
    "companies": ("name", "domain"),
    "deals": ("name",),
    "tickets": ("subject",),
}
#: What an association value that is not an id is compared with (case-insensitively, whole words
#: from the start: `acme` names "Acme Corporation").
NAME_FIELDS: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email"),
    "companies": ("name", "domain"),
    "deals": ("name",),
    "tickets": ("subject",),
}
#: Which types may be associated with which (both directions are stored).
ASSOCIATIONS: dict[str, tuple[str, ...]] = {
    "contacts": ("companies", "deals", "tickets"),
    "companies": ("contacts", "deals", "tickets"),
    "deals": ("contacts", "companies"),
    "tickets": ("contacts", "companies"),
}

#: A line for errors: an example query per object type.
EXAMPLES: dict[str, str] = {
    "contacts": "object_type:contacts lifecycle_stage:customer associated_companies:in:acme,initech",
    "companies": "object_type:companies industry:Software sort:name",
    "deals": "object_type:deals amount:gt:10000 close_date:lte:2026-12-31 sort:close_date:desc",
    "tickets": "object_type:tickets status:new priority:in:high,urgent",
}


def example_query(object_type: str, visible) -> str:
    """EXAMPLES[object_type], unless it names a property this person may not see."""
    example = EXAMPLES[object_type]
    used = {token.split(":")[0] for token in example.split()} & set(PROPERTIES[object_type])
    if used <= set(visible):
        return example
    prop = PROPERTIES[object_type][next(p for p in visible if p != "owner_id")]
    return f"object_type:{object_type} {prop.name}:{prop.example}"


def parse_record_id(value) -> tuple[str, int] | None:
    """("contacts", 12) from "contacts:12", as search returns ids; None for anything else."""
    object_type, _, number = str(value).strip().partition(":")
    if object_type not in OBJECT_TYPES or not number.isdigit():
        return None
    return object_type, int(number)


def singular(object_type: str) -> str:
    return "company" if object_type == "companies" else object_type[:-1]


def title(object_type: str, props: dict) -> str:
    """A record's display name, from the properties the person may see."""
    if object_type == "contacts":
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
        return name or props.get("email") or ""
    return str(props.get("subject" if object_type == "tickets" else "name") or "")
