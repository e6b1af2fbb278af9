"""A controllable clock for tests: authserver.timeutil.utcnow, stopped and moved at will."""

from __future__ import annotations

from datetime import datetime, timedelta

from authserver import timeutil


class Clock:
    """Every utcnow() reads the time the clock was made (whole seconds, as tokens count them) plus
    `offset`, wherever utcnow was imported: it reads timeutil's `datetime`, which this replaces.
    Stopped, so a test's schedule is exact however slow the machine."""

    def __init__(self, monkeypatch):
        self.offset = timedelta(0)
        clock = self
        real = datetime.now

        class Stopped(datetime):
            start = None

            @classmethod
            def now(cls, tz=None):
                if cls.start is None:
                    cls.start = real(tz).replace(microsecond=0)
                return cls.start + clock.offset

        monkeypatch.setattr(timeutil, "datetime", Stopped)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
