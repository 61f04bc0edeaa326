"""Time helpers: UTC now, and the one ISO 8601 text form every stored or printed time takes."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """UTC, millisecond precision, with offset: the form of every time in the state database."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment is not None else None


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
