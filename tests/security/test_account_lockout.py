"""Threat: locking a person out by guessing at their account, and guessing faster than the limits
allow by sending attempts at once (issue 11 items 8 and 10, RFC 9700 §4.x, OWASP ASVS 2.2.1).

Defence: sign-in attempts are counted per (account, address) and per address *before* the
password is checked, so no number of concurrent attempts gets past a limit; a successful sign-in
clears its (account, address) count. Per account across addresses nothing is ever refused:
attempts are slowed by a delay that grows with the account's recent failures, up to a cap."""

from __future__ import annotations

import threading
import time

import pytest
from argon2 import PasswordHasher

from .support import signed_in

EMAIL = "alice@example.com"


@pytest.fixture
def delays(monkeypatch):
    """Every delay the server imposes, recorded instead of slept."""
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


@pytest.fixture
def alice(make_user):
    return make_user(EMAIL, name="Alice")


def test_guessing_from_one_address_never_locks_the_owner_out(client, alice, login, delays):
    attacker, owner = "203.0.113.66", "198.51.100.20"
    for _ in range(5):
        assert login(client, EMAIL, "guess", ip=attacker).status_code == 200
    # The guessing address is refused for this account, even with the right password...
    refused = login(client, EMAIL, ip=attacker)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert not signed_in(client)
    # ...while the owner, from their own address, signs in: slowed, never refused.
    delays.clear()
    response = login(client, EMAIL, ip=owner)
    assert response.status_code == 302 and signed_in(client)
    assert delays and 0 < delays[-1] <= 2.0


@pytest.mark.app_config(LOGIN_DELAY_PER_FAILURE=0.3, LOGIN_DELAY_MAX=1.5)
def test_the_per_account_slow_down_grows_with_failures_and_is_capped(client, alice, login, delays):
    # Guessing spread over many addresses, each under its own limits.
    waits = []
    for i in range(12):
        delays.clear()
        assert login(client, EMAIL, "guess", ip=f"203.0.113.{i + 1}").status_code == 200
        waits.append(sum(delays))
    assert waits[0] == 0
    assert waits == sorted(waits) and waits[1] == pytest.approx(0.3)
    assert max(waits) == pytest.approx(1.5)
    delays.clear()
    assert login(client, EMAIL, ip="198.51.100.20").status_code == 302
    assert sum(delays) == pytest.approx(1.5)


@pytest.mark.app_config(
    LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP="3 per minute",
    LOGIN_ATTEMPTS_PER_IP="3 per minute",
    LOGIN_DELAY_PER_FAILURE=0,
    WTF_CSRF_ENABLED=False,
)
@pytest.mark.parametrize("spread", ["one account", "many accounts"])
def test_concurrent_attempts_never_get_past_the_limit(app, alice, monkeypatch, spread):
    checked = []
    real_verify = PasswordHasher.verify

    def slow_verify(self, stored, password):
        # Slow enough that every attempt is in flight before the first one finishes.
        checked.append(password)
        real_sleep(0.3)
        return real_verify(self, stored, password)

    real_sleep = time.sleep
    monkeypatch.setattr(PasswordHasher, "verify", slow_verify)
    attempts = 12
    start = threading.Barrier(attempts)
    statuses = []

    def attempt(i):
        email = EMAIL if spread == "one account" else f"user{i}@example.com"
        browser = app.test_client()
        start.wait()
        response = browser.post("/login", data={"email": email, "password": f"guess {i}"},
                                environ_base={"REMOTE_ADDR": "203.0.113.66"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] * 3 + [429] * (attempts - 3)
    assert len(checked) == 3

