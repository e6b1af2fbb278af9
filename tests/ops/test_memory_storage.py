"""The in-process rate-limit storage (no Redis, or Redis down) under threads: limits 5.8's
MemoryStorage lets two threads' first hits start one expiry timer twice, a RuntimeError that
reached people as a 500 from a threaded worker (seen in CI: tests/reliability, gunicorn gthread).
The property: no two threads are ever inside the storage's timer scheduling at once."""

from __future__ import annotations

import threading

import limits.storage.memory as memory_module
import pytest
from limits.storage import MemoryStorage

from authserver import faults
from authserver.extensions import limiter


def _first_hits_meet(storage, monkeypatch) -> tuple[list, list]:
    """Two threads' first hits on `storage`; (times two threads were building a timer together,
    errors raised). A timer being built waits up to 0.5 s for a second one: it only comes if
    scheduling is not serialized."""
    together: list[bool] = []

    class MeetingTimer(threading.Timer):
        meeting = threading.Barrier(2, timeout=0.5)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            try:
                self.meeting.wait()
                together.append(True)
            except threading.BrokenBarrierError:
                pass

    storage.timer.join()  # the timer started with the storage has run: the next hit schedules one
    monkeypatch.setattr(memory_module.threading, "Timer", MeetingTimer)
    start, errors = threading.Barrier(2), []

    def first_hit(key: str) -> None:
        start.wait()
        try:
            storage.incr(key, 60)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_hit, args=(f"key-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    return together, errors


def test_first_hits_from_two_threads_schedule_one_timer_at_a_time(monkeypatch):
    together, errors = _first_hits_meet(faults.ThreadSafeMemoryStorage(), monkeypatch)
    assert together == [] and errors == []


def test_the_check_above_catches_limits_own_storage(monkeypatch):
    """Limits' MemoryStorage (5.8) lets both threads in: if a release fixes it, this fails and
    ThreadSafeMemoryStorage can go."""
    together, _ = _first_hits_meet(MemoryStorage(), monkeypatch)
    assert together == [True, True]


@pytest.mark.app_config(REDIS_URL=None)
def test_without_redis_the_app_counts_in_the_thread_safe_storage(app):
    assert app.config["RATELIMIT_STORAGE_URI"] == faults.MEMORY_STORAGE_URI
    with app.app_context():
        strategy = limiter.limiter
        storages = [strategy.storage] + ([strategy.memory.storage] if hasattr(strategy, "memory") else [])
        assert all(isinstance(s, faults.ThreadSafeMemoryStorage) for s in storages), storages
