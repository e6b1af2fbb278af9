"""The query language of `search`: space-separated `key[:operator]:value` tokens, all ANDed.

Small and regular on purpose (no OR, no nesting, no relative dates), because that is what models
write reliably; every mistake raises a QueryError that says what was wrong, what is valid there
(with the nearest match to a misspelling) and gives one example, so a model can correct itself."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date

from .catalog import (
    ALL_OPERATORS,
    ASSOCIATIONS,
    EXAMPLES,
    NO_VALUE_OPERATORS,
    OBJECT_TYPES,
    OPERATORS,
    PROPERTIES,
    example_query,
)

DEFAULT_TYPE = "contacts"
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_OFFSET = 10000
MAX_QUERY = 2000
MAX_VALUES = 100
CONTROL_KEYS = ("object_type", "limit", "offset", "sort")
NO_NESTING = ("Parentheses are not supported (no nesting); write each condition as its own token, "
              "e.g. lifecycle_stage:customer jobtitle:CTO")
_NAME = re.compile(r"[a-z_]+\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


class QueryError(ValueError):
    """A query the language does not accept; the message is written for the model that sent it."""


@dataclass(frozen=True)
class Condition:
    prop: str
    op: str
    values: tuple = ()  # parsed values (numbers for number properties); empty for has-operators


@dataclass(frozen=True)
class Association:
    object_type: str
    values: tuple[str, ...]  # ids (digits) or names


@dataclass
class Query:
    object_type: str = DEFAULT_TYPE
    conditions: list[Condition] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # words and phrases, each must match
    associations: list[Association] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: tuple[str, str] | None = None  # (property, "asc" | "desc")


def _nearest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{match[0]}"?' if match else "."


@dataclass(frozen=True)
class _Token:
    text: str  # without the quotes
    quoted_from: int | None  # index in text where quoted characters begin, if any


def tokenize(query: str) -> list[_Token]:
    """Split on spaces outside double quotes; a quoted part keeps its spaces and colons."""
    tokens, chars, quoted_from, in_quotes = [], [], None, False
    for ch in query + " ":
        if ch == '"':
            in_quotes = not in_quotes
            if in_quotes and quoted_from is None:
                quoted_from = len(chars)
            continue
        if ch.isspace() and not in_quotes:
            if chars or quoted_from is not None:
                tokens.append(_Token("".join(chars), quoted_from))
            chars, quoted_from = [], None
            continue
        chars.append(ch)
    if in_quotes:
        raise QueryError('A double quote is not closed. Close the phrase, e.g. "ada lovelace".')
    return tokens


def referenced_types(query: str) -> list[str]:
    """The object types a query reads (its own and its associations'), for the scope check; a
    query that does not parse names only the type it would have read, so the tool can explain."""
    found = [DEFAULT_TYPE]
    try:
        tokens = tokenize(query)
    except QueryError:
        return found
    for token in tokens:
        if ":" not in _unquoted_prefix(token):
            continue
        key, op, value = _split(token)  # exactly as parse() reads it, quotes and case included
        if key == "object_type" and _joined(op, value) in OBJECT_TYPES:
            found[0] = _joined(op, value)
        elif key.startswith("associated_") and key[len("associated_"):] in OBJECT_TYPES:
            found.append(key[len("associated_"):])
    return list(dict.fromkeys(found))


def _unquoted_prefix(token: _Token) -> str:
    return token.text if token.quoted_from is None else token.text[:token.quoted_from]


def _joined(op: str | None, value: str) -> str:
    """An object_type value as parse() compares it."""
    return (f"{op}:{value}" if op else value).strip().lower()


def _split(token: _Token) -> tuple[str, str | None, str]:
    """key, operator (None when the token gives none) and value; colons inside quotes are value."""
    end = len(token.text) if token.quoted_from is None else token.quoted_from
    head = token.text[:end]
    key, _, rest = head.partition(":")
    rest += token.text[end:]
    candidate, sep, value = rest.partition(":")
    if sep and candidate and ":" in head[len(key) + 1:] and _NAME.match(candidate.lower()):
        return key.lower(), candidate.lower(), value
    return key.lower(), None, rest


def parse(query: str, hidden: frozenset[str] | set[str] = frozenset()) -> Query:
    """Parse a query for a person who may not see `hidden` properties ("deals.amount")."""
    if not isinstance(query, str):
        raise QueryError("The query must be a string, e.g. " + EXAMPLES["contacts"])
    if len(query) > MAX_QUERY:
        raise QueryError(f"The query is longer than {MAX_QUERY} characters; narrow it with fewer, sharper filters.")
    tokens = tokenize(query)
    result = Query()
    seen: set[str] = set()

    types = [t for t in tokens if ":" in _unquoted_prefix(t) and _split(t)[0] == "object_type"]
    for token in types:
        _, op, value = _split(token)
        value = _joined(op, value)
        if "object_type" in seen:
            raise QueryError("object_type is given twice; give it once. Example: object_type:deals")
        seen.add("object_type")
        if value not in OBJECT_TYPES:
            raise QueryError(f'Unknown object_type "{value}"{_nearest(value, OBJECT_TYPES)} '
                             f"Use one of: {', '.join(OBJECT_TYPES)}. Example: object_type:deals")
        result.object_type = value
    visible = {name: p for name, p in PROPERTIES[result.object_type].items()
               if f"{result.object_type}.{name}" not in hidden}

    for token in tokens:
        if token.quoted_from == 0:  # a phrase
            if not token.text.strip():
                raise QueryError('An empty phrase "" matches nothing; put words between the quotes, e.g. "ada lovelace".')
            result.text.append(token.text.strip())
            continue
        if ":" not in _unquoted_prefix(token):
            _bare_word(token.text, result)
            continue
        if token.text.startswith("(") or (token.quoted_from is None and token.text.endswith(")")):
            raise QueryError(NO_NESTING)
        key, op, value = _split(token)
        if key == "object_type":
            continue
        if key in ("limit", "offset", "sort"):
            if key in seen:
                raise QueryError(f"{key} is given twice; give it once. Example: {_control_example(key)}")
            seen.add(key)
            _control(result, key, op, value, visible)
        elif key.startswith("associated_"):
            result.associations.append(_association(result.object_type, key, op, value))
        else:
            result.conditions.append(condition(result.object_type, visible, key, op, value))
    return result


def _bare_word(word: str, result: Query) -> None:
    if word in ("OR", "||", "|"):
        raise QueryError("There is no OR: all tokens must match. For several values of one property use in, "
                         "e.g. lifecycle_stage:in:lead,customer")
    if word in ("AND", "&&"):
        raise QueryError("AND is implied between tokens; remove it. Example: lifecycle_stage:customer jobtitle:CTO")
    if word.startswith("(") or word.endswith(")"):
        raise QueryError(NO_NESTING)
    if word.startswith("-") and len(word) > 1:
        raise QueryError('There is no "-" negation; use neq or not_in, e.g. lifecycle_stage:neq:customer.')
    result.text.append(word)


def _control_example(key: str) -> str:
    return {"limit": "limit:50", "offset": "offset:20", "sort": "sort:close_date:desc"}[key]


def _control(result: Query, key: str, op: str | None, value: str, visible: dict) -> None:
    raw = f"{op}:{value}" if op else value
    if key in ("limit", "offset"):
        low, high = (1, MAX_LIMIT) if key == "limit" else (0, MAX_OFFSET)
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise QueryError(f'{key} must be a whole number from {low} to {high}; got "{raw}". '
                             f"Example: {_control_example(key)}")
        setattr(result, key, int(raw))
        return
    prop, _, direction = raw.partition(":")
    prop, direction = prop.lower(), (direction or "asc").lower()
    if prop != "id" and prop not in visible:
        raise QueryError(f'Cannot sort {result.object_type} by "{prop}"{_nearest(prop, ["id", *visible])} '
                         f"Sort by one of: id, {', '.join(visible)}. Example: sort:{next(iter(visible))}:desc")
    if direction not in ("asc", "desc"):
        raise QueryError(f'The sort direction must be asc or desc; got "{direction}". Example: sort:{prop}:desc')
    result.sort = (prop, direction)


def _association(object_type: str, key: str, op: str | None, value: str) -> Association:
    other = key[len("associated_"):]
    allowed = [f"associated_{t}" for t in ASSOCIATIONS[object_type]]
    if key not in allowed:
        raise QueryError(f'{object_type.capitalize()} have no "{key}"{_nearest(key, allowed)} '
                         f"Use one of: {', '.join(allowed)}. Example: {allowed[0]}:in:acme,initech")
    if op not in (None, "eq", "in"):
        raise QueryError(f'Unknown operator "{op}" for {key}{_nearest(op, ("eq", "in"))} Associations take '
                         f"eq (the default) or in. Example: {key}:in:12,initech")
    values = _values(value) if op == "in" else (value.strip(),)
    if not all(values):
        raise QueryError(f"{key} needs a record id or name" + (" list" if op == "in" else "") +
                         f", e.g. {key}:12 or {key}:in:acme,initech")
    return Association(other, tuple(v.lower() for v in values))


def _values(raw: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in raw.split(","))
    if len(values) > MAX_VALUES:
        raise QueryError(f"At most {MAX_VALUES} values per in or not_in; split the search.")
    return values


def condition(object_type: str, visible: dict, key: str, op: str | None, value: str) -> Condition:
    prop = visible.get(key)
    if prop is None:
        keys = [*visible, *(f"associated_{t}" for t in ASSOCIATIONS[object_type]), *CONTROL_KEYS]
        raise QueryError(
            f'Unknown property "{key}" for {object_type}{_nearest(key, keys)} Properties: {", ".join(visible)}; '
            f"other keys: {', '.join(keys[len(visible):])}. Example: {example_query(object_type, visible)}"
        )
    operators = OPERATORS[prop.type]
    example = f"{prop.name}:{prop.example}"
    if op is None:
        if value.lower() in NO_VALUE_OPERATORS:
            return Condition(prop.name, value.lower())
        op = "eq"
    elif op not in operators:
        what = (f'Operator "{op}" does not apply to {prop.name} ({prop.type}).' if op in ALL_OPERATORS
                else f'Unknown operator "{op}" for {prop.name} ({prop.type}){_nearest(op, operators)}')
        raise QueryError(f"{what} Operators for {prop.type}: {', '.join(operators)}. Example: {_example_for(prop)}")
    if op in NO_VALUE_OPERATORS:
        if value:
            raise QueryError(f"{op} takes no value; write {prop.name}:{op}")
        return Condition(prop.name, op)
    raw = _values(value) if op in ("in", "not_in") else (value,)
    if not all(raw):
        raise QueryError(f"{prop.name}:{op} needs " + ("comma-separated values" if op in ("in", "not_in") else
                         "a value after the colon") + f". Example: {_example_for(prop, op)}")
    if op == "contains_token" and any(" " in v.strip() for v in raw):
        raise QueryError(f"contains_token takes one word; use a token per word, e.g. {prop.name}:contains_token:"
                         f"{raw[0].split()[0]}")
    return Condition(prop.name, op, tuple(_value(prop, v.strip(), example) for v in raw))


def _example_for(prop, op: str | None = None) -> str:
    if op in ("in", "not_in") or (op is None and prop.type == "enumeration"):
        values = list(prop.options[:2]) if prop.options else [prop.example, prop.example]
        return f"{prop.name}:{op or 'in'}:{','.join(values)}"
    if prop.type in ("number", "date"):
        return f"{prop.name}:{'gt' if prop.type == 'number' else 'lte'}:{prop.example if prop.name != 'owner_id' else '42'}"
    return f"{prop.name}:{prop.example}"


def _value(prop, raw: str, example: str):
    if prop.type == "number":
        if prop.name == "owner_id" and raw.lower() == "me":
            return "me"
        try:
            number = float(raw)
        except ValueError:
            raise QueryError(f'{prop.name} is a number; "{raw}" is not. Example: {_example_for(prop)}') from None
        return int(number) if number.is_integer() else number
    if prop.type == "date":
        try:
            if not _DATE.match(raw):
                raise ValueError
            return date.fromisoformat(raw).isoformat()
        except ValueError:
            raise QueryError(f'{prop.name} is a date written YYYY-MM-DD; "{raw}" is not (relative dates such as '
                             f"today are not supported). Example: {_example_for(prop)}") from None
    if prop.type == "enumeration":
        for option in prop.options:
            if option.lower() == raw.lower():
                return option
        raise QueryError(f'{prop.name} has no value "{raw}"{_nearest(raw, prop.options)} '
                         f"Values: {', '.join(prop.options)}. Example: {example}")
    return raw
