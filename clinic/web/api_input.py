"""Reading what a JSON API route was sent, for api_routes, api_admin and api_accounts.

JSON has numbers, strings, lists...; the domain functions expect what a form gives them, so a
route checks the types first. Numbers are checked against what the database can hold before
they reach it: SQLite refuses integers past 2**63 with an OverflowError, which would otherwise
be a 500.
"""

import math
from datetime import MAXYEAR, MINYEAR, UTC, datetime

from bottle import request

from clinic import clock
from clinic.errors import Invalid, NotFound
from clinic.i18n import _
from clinic.web.decorators import json_error

MAX_ID = 2**63 - 1  # the largest integer the database stores


def texts(data, names, errors, present_only=False):
    """The string fields ``names`` of a JSON body (missing or null: ""), NULs dropped. Anything
    that is not a string is noted in ``errors``. With ``present_only``, only the fields the body
    has."""
    values = {}
    for name in names:
        if present_only and name not in data:
            continue
        value = data.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[name] = _("Expected a string.")
            value = ""
        values[name] = value.replace("\x00", "")
    return values


def body_id(data, name, errors):
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        errors[name] = _("Expected an id (a whole number).")
        return None
    return value


def path_id(raw, what):
    """An id from the URL; one that cannot be an id is simply not found."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_ID:
        raise NotFound(f"No such {what}.")
    return int(raw)


def start(data, errors):
    """``start``: ISO 8601 with an offset, as an aware UTC datetime. Without an offset the time
    would be a guess about the caller's zone, so it is refused."""
    raw = data.get("start")
    try:
        if not isinstance(raw, str):
            raise ValueError
        value = datetime.fromisoformat(raw.strip())
        if value.tzinfo is None:
            raise ValueError
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        errors["start"] = ("Expected an ISO 8601 date and time with offset, such as "
                           "2026-03-02T09:30:00+01:00.")
        return None


def query_int(name, default, low, high):
    raw = request.query.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        message = f"{name} must be a whole number from {low} to {high}."
        raise Invalid(message, {name: message})
    return int(raw)


def day(raw):
    if not raw:
        raise Invalid("date is required, as YYYY-MM-DD.",
                      {"date": _("Enter the date as YYYY-MM-DD.")})
    value = clock.parse_day(raw)
    # The first and last days of the calendar have no neighbours to compute a day's bounds with.
    if not MINYEAR < value.year < MAXYEAR:
        raise Invalid("date is out of range.", {"date": _("Enter a date near today.")})
    return value


def throttled(exc, message):
    """429 for auth.Throttled: ``message``, when to try again, and Retry-After."""
    seconds = max(1, math.ceil(exc.retry_after.total_seconds()))
    res = json_error(429, f"{message} Try again in {seconds} seconds.")
    res.set_header("Retry-After", str(seconds))
    return res
