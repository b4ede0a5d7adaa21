"""All time goes through here: instants are aware UTC datetimes; the clinic's wall clock is
``local()``. Tests control time with time-machine (it patches datetime.now) or by passing
datetimes to the functions that take ``now=``."""

import functools
from datetime import UTC, date, datetime, time, timedelta

from clinic.errors import Invalid
from clinic.i18n import _


def now():
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


def zone():
    """The clinic's time zone in force: CLINIC_TIMEZONE if set, else the Clinic page's, else the
    machine's. The one place it is read, so pages and schedules follow a change at once."""
    from clinic import details  # details reads the database, whose models use this module

    return details.current().timezone


def zone_words(tz=None):
    """The clinic's time zone as patients read it, "Berlin" for Europe/Berlin, "New York" for
    America/New_York, "UTC" for Etc/UTC: in "10:00 (Berlin time)"."""
    name = str(tz or zone()).split("/")[-1].replace("_", " ")
    return "UTC" if name in ("UTC", "UCT", "Universal", "Zulu", "GMT") else name


def local(dt=None):
    """An instant (default: now) as the clinic's wall-clock time."""
    return (dt or now()).astimezone(zone())


def formatted(value, fmt):
    """``value`` as text for people: an instant in the clinic's time zone, a date as it is, by
    strftime's ``fmt``; anything else as str(), None as nothing. Instants are remembered: pages
    and emails show the same few again and again (a reminder run's visits start at the same
    quarter hours), and a remembered one skips the time zone conversion."""
    if isinstance(value, datetime):
        return _formatted(value, fmt, zone())
    if isinstance(value, date):
        return value.strftime(fmt)
    return "" if value is None else str(value)


@functools.lru_cache(maxsize=4096)
def _formatted(value, fmt, tz):
    return value.astimezone(tz).strftime(fmt)


def day_bounds(day, tz=None):
    """[start, end) of a clinic-local day as UTC instants (23 or 25 hours on DST days)."""
    tz = tz or zone()
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def midnight(day):
    """The instant the clinic-local ``day`` begins."""
    return to_utc(datetime.combine(day, time()))


def days_between(day_from, day_to, errors):
    """A filter form's clinic-local days, both included (text, YYYY-MM-DD; either may be
    empty), as ``(since, before)``: the instants to keep ``since <= at < before``, None where
    not given. A text that is not a date, or a last day before the first, is said in
    ``errors`` under "from" or "to"."""
    first, last = _form_day(day_from, "from", errors), _form_day(day_to, "to", errors)
    if first and last and last < first:
        errors["to"] = _("The last day comes before the first.")
    return (midnight(first) if first else None,
            midnight(last + timedelta(days=1)) if last else None)


def parse_day(raw, default=None):
    """A clinic-local day from YYYY-MM-DD (default: ``default``, else today); Invalid if it is
    not one."""
    if not raw:
        return default or local().date()
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise Invalid("date must be YYYY-MM-DD",
                      {"date": _("Enter the date as YYYY-MM-DD.")}) from None


def _form_day(raw, field, errors):
    if not raw or not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        errors[field] = _("Enter a date as YYYY-MM-DD.")
        return None


def to_utc(dt):
    """An aware datetime as UTC; a naive one is taken as clinic-local wall time."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone())
    return dt.astimezone(UTC)


def aware(naive_utc):
    """A naive UTC datetime from the database as an aware one."""
    return None if naive_utc is None else naive_utc.replace(tzinfo=UTC)
