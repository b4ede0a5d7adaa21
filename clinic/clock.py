"""All time goes through here: instants are aware UTC datetimes; the clinic's wall clock is
``local()``. Tests control time with time-machine (it patches datetime.now) or by passing
datetimes to the functions that take ``now=``."""

from datetime import UTC, datetime

from clinic import settings


def now():
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


def zone():
    return settings.get().timezone


def local(dt=None):
    """An instant (default: now) as the clinic's wall-clock time."""
    return (dt or now()).astimezone(zone())


def to_utc(dt):
    """An aware datetime as UTC; a naive one is taken as clinic-local wall time."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone())
    return dt.astimezone(UTC)


def aware(naive_utc):
    """A naive UTC datetime from the database as an aware one."""
    return None if naive_utc is None else naive_utc.replace(tzinfo=UTC)
