"""Naive-UTC time helpers: every timestamp in the database is naive UTC."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as naive UTC (the form stored in every DateTime column)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_epoch(value: datetime) -> int:
    """Seconds since the epoch for a naive-UTC datetime."""
    return int(value.replace(tzinfo=UTC).timestamp())
