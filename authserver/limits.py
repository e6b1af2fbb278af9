"""Rate-limit counters a request consults itself (after client authentication, before a password
check), kept in Flask-Limiter's storage so they are shared across instances like the route limits."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import current_app, g
from limits import RateLimitItem, RateLimitItemPerSecond, parse

from .extensions import limiter


def _item(setting: str) -> RateLimitItem:
    return _parsed(current_app.config[setting])


@lru_cache(maxsize=128)
def _parsed(text: str) -> RateLimitItem:
    """limits.parse, once per setting's text (parsing is a regular expression and an object per
    call, on every limited request)."""
    return parse(text)


def _identifiers(scope: str, key: tuple[str, ...]) -> tuple[str, ...]:
    return (current_app.config.get("RATELIMIT_KEY_PREFIX") or "authserver", scope, *key)


def _retry_after(item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
    reset_at = limiter.limiter.get_window_stats(item, *identifiers).reset_time
    return max(1, math.ceil(reset_at - time.time()))


def hit(setting: str, scope: str, *key: str) -> int | None:
    """Count one event against the limit in `setting`; None while within it, else the seconds to
    wait (the event is counted before anything is checked, so concurrent requests cannot all pass)."""
    if not limiter.enabled:  # RATELIMIT_ENABLED=false lifts these limits too
        return None
    item, identifiers = _item(setting), _identifiers(scope, key)
    if limiter.limiter.hit(item, *identifiers):
        return None
    return _retry_after(item, identifiers)


def charge(*checks: tuple[str, ...]) -> int | None:
    """Several limits one request consults, in order: each ("hit" | "test", setting, scope,
    *key), as `hit` and `test` would, stopping at the first refused. Returns its index in
    `checks` (the caller answers 429 with `retry_after`), or None when all pass. On Redis they
    cost one round trip together, not one each (faults.Failover.charge)."""
    if not limiter.enabled:
        return None
    ops = [(op, _item(setting), _identifiers(scope, tuple(key))) for op, setting, scope, *key in checks]
    return limiter.limiter.charge(ops)


def retry_after(check: tuple[str, ...]) -> int:
    """Seconds to wait for a check `charge` refused."""
    _, setting, scope, *key = check
    return _retry_after(_item(setting), _identifiers(scope, tuple(key)))


def test(setting: str, scope: str, *key: str) -> int | None:
    """Like `hit`, without counting: None while the limit is not reached, else the seconds to wait."""
    if not limiter.enabled:
        return None
    item, identifiers = _item(setting), _identifiers(scope, key)
    if limiter.limiter.test(item, *identifiers):
        return None
    return _retry_after(item, identifiers)


def clear(setting: str, scope: str, *key: str) -> None:
    if limiter.enabled:
        limiter.limiter.clear(_item(setting), *_identifiers(scope, key))


# A window counter with no practical ceiling: it only counts, it never refuses.
_UNLIMITED = 10**9


def _counter(window_setting: str) -> RateLimitItem:
    return RateLimitItemPerSecond(_UNLIMITED, int(current_app.config[window_setting]))


def count(window_setting: str, scope: str, *key: str) -> int:
    """How many events `record` counted under this key in the current window."""
    if not limiter.enabled:
        return 0
    item = _counter(window_setting)
    return _UNLIMITED - limiter.limiter.get_window_stats(item, *_identifiers(scope, key)).remaining


def record(window_setting: str, scope: str, *key: str) -> None:
    if limiter.enabled:
        limiter.limiter.hit(_counter(window_setting), *_identifiers(scope, key))


# --- failed client authentication ----------------------------------------------------------------
# Counted per address over the token, introspection and revocation endpoints together, and checked
# before a request is handled: past the limit an address gets 429 before any credential is looked
# at, so guessing costs the guesser, never the client or resource server it names.
FAILURES = ("CLIENT_AUTH_FAILURES_PER_IP", "client-auth-failures")
#: WSGI environ keys set once a request was counted against its address's route limit, or its
#: client's limit: the WSGI lane counts first and, if it passes the request on to Flask, the view
#: must not count it again.
ADDRESS_COUNTED = "authserver.address_counted"
CLIENT_COUNTED = "authserver.client_counted"

#: Introspections and token requests per caller address, before authentication.
INTROSPECTION_PER_IP = ("INTROSPECTION_RATE_LIMIT_PER_IP", "introspect-ip")
#: Introspections per authenticated resource server (keyed by its credential id).
INTROSPECTION_PER_RESOURCE = ("INTROSPECTION_RATE_LIMIT", "introspect-resource")
TOKEN_PER_IP = ("TOKEN_RATE_LIMIT_PER_IP", "token-ip")
#: Registrations per caller address, and in all (a ceiling against floods).
REGISTRATION_PER_IP = ("REGISTRATION_RATE_LIMIT_PER_IP", "register-ip")
REGISTRATION_GLOBAL = ("REGISTRATION_RATE_LIMIT_GLOBAL", "register-all")


def registration_refused(address: str) -> int | None:
    """Count a registration against its address's limit, then (within it) against the global one;
    None while within both, else the seconds to wait. One function for the view and the WSGI
    lane, so that both count on the same counters."""
    checks = (("hit", *REGISTRATION_PER_IP, address), ("hit", *REGISTRATION_GLOBAL, "all"))
    refused = charge(*checks)
    return None if refused is None else retry_after(checks[refused])


def note_client_auth_failure() -> None:
    """Mark this request as a failed client authentication (counted per address on the way out)."""
    g.client_auth_failed = True


def failures_exceeded(address: str) -> int | None:
    """Seconds this address must wait because of its failed client authentications, or None."""
    return test(*FAILURES, address)


def count_client_auth_failure(address: str) -> None:
    """Count the failure noted during this request, if any."""
    if g.get("client_auth_failed"):
        hit(*FAILURES, address)
