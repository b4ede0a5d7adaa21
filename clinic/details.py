"""The clinic's details in force: its name, address, phone, website and time zone.

Each comes from its CLINIC_ variable when that is set (the environment wins), else from what an
admin saved on the Clinic page (the one ``ClinicSettings`` row), else the setting's default (the
machine's time zone). ``current()`` is read by every page, email and schedule (clock.zone() goes
through it), so it keeps the answer in memory: this process forgets it when an admin saves, and
every process reads the row again after ``CACHE_FOR``, so a change reaches the other processes of
a scaled-out clinic within that time, without a restart (docs/design.md).
"""

import functools
import logging
import re
import threading
import time
import zoneinfo
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import phonenumbers
from peewee import DatabaseError

from clinic import settings
from clinic.db import database
from clinic.errors import Conflict, check
from clinic.i18n import _

log = logging.getLogger("clinic.details")

FIELDS = ("name", "address", "phone", "timezone", "website")
CACHE_FOR = 10.0  # seconds a process serves the details it read before reading them again

_WEBSITE = re.compile(r"https?://[^\s/]+\.[^\s/]+(/\S*)?", re.IGNORECASE)


@dataclass(frozen=True)
class Details:
    name: str
    address: str
    phone: str  # E.164, or ""
    timezone: ZoneInfo
    website: str
    timezone_confirmed: bool
    from_environment: tuple  # the FIELDS whose CLINIC_ variable is set

    @property
    def phone_text(self):
        """The phone as people write it: +49 30 1234567."""
        return format_phone(self.phone)

    @property
    def phone_region(self):
        """The country of numbers typed without their +code: CLINIC_PHONE_REGION, else the
        clinic phone's, else "" (then a number needs its country code)."""
        configured = settings.get().values.get("phone_region") or ""
        if configured:
            return configured
        if self.phone:
            try:
                return phonenumbers.region_code_for_number(phonenumbers.parse(self.phone)) or ""
            except phonenumbers.NumberParseException:
                return ""
        return ""

    def as_json(self):
        return {"name": self.name, "address": self.address, "phone": self.phone,
                "timezone": str(self.timezone), "website": self.website,
                "timezone_confirmed": self.timezone_confirmed,
                "from_environment": list(self.from_environment)}


def call_us(capital=True):
    """"Please call the clinic on +49 30 1234567.", or without the number when none is set."""
    phone = current().phone_text
    text = (_("Please call the clinic on %(phone)s.") % {"phone": phone} if phone
            else _("Please call the clinic."))
    return text if capital else text[:1].lower() + text[1:]


def format_phone(e164):
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# (details, when read by time.monotonic(), the Settings they were made from)
_kept = (None, 0.0, None)
_lock = threading.Lock()


def current():
    """The details in force, read at most every CACHE_FOR seconds (and after every save)."""
    global _kept
    s = settings.get()
    details, read_at, source = _kept
    if details is not None and source is s and time.monotonic() - read_at < CACHE_FOR:
        return details
    with _lock:
        row, ok = _stored()
        details = _effective(s, row)
        # A database not yet migrated (or not there) is asked again next time.
        _kept = (details, time.monotonic() if ok else 0.0, s)
    return details


def forget():
    """Read the details again at the next ``current()`` (after a save, and in tests)."""
    global _kept
    _kept = (None, 0.0, None)


def _stored():
    """The saved row (or None) and whether the database could be read at all."""
    from clinic.models import ClinicSettings

    if database.obj is None:
        return None, False
    try:
        if database.is_closed():
            with database.connection_context():
                return ClinicSettings.get_or_none(ClinicSettings.id == 1), True
        return ClinicSettings.get_or_none(ClinicSettings.id == 1), True
    except DatabaseError as exc:  # before the first migration
        log.debug("clinic details not readable: %s", exc)
        return None, False


def _effective(s, row):
    given = [name for name in FIELDS if name in s.given]
    values = {}
    for name in FIELDS:
        stored = getattr(row, name, "") if row is not None else ""
        values[name] = s.values.get(name) if name in given or not stored else stored
    if isinstance(values["timezone"], str):
        try:
            values["timezone"] = ZoneInfo(values["timezone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # tzdata lost a name: keep going
            values["timezone"] = s.timezone
    if "phone" in given:
        values["phone"] = _normalised(values["phone"], s.values.get("phone_region") or None)
    confirmed = "timezone" in given or bool(row is not None and row.timezone_confirmed)
    return Details(name=values["name"] or "", address=values["address"] or "",
                   phone=values["phone"] or "", timezone=values["timezone"],
                   website=values["website"] or "", timezone_confirmed=confirmed,
                   from_environment=tuple(given))


def _normalised(raw, region):
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return raw
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=1)
def time_zones():
    """Every IANA time zone name, sorted (for the page's list and the check)."""
    return tuple(sorted(zoneinfo.available_timezones()))


# -- saving ---------------------------------------------------------------------------------------


def update(changes, who=None, confirm=False):
    """Save ``changes`` (some of FIELDS, as text) as the clinic's details; returns the details
    now in force. Invalid with a message per field for bad values; Conflict for a field set in
    the environment (it would have no effect). ``confirm`` (the page's save, or a PATCH that
    sends the time zone) marks the time zone as confirmed. One transaction: all or nothing."""
    from clinic import clock, people
    from clinic.models import ClinicSettings

    now_in_force = current()
    locked = {name: _("Set by %(variable)s in the environment; change it there (the "
                      "environment wins over this page).") % {"variable": f"CLINIC_{name.upper()}"}
              for name in changes if name in now_in_force.from_environment}
    if locked:
        raise Conflict(next(iter(locked.values())) if len(locked) == 1
                       else _("Some of these are set in the environment."), locked)
    errors = {}
    clean = {}
    for name, raw in changes.items():
        value = " ".join((raw or "").split())  # one line: headers and footers hold it
        if name == "name":
            if not value:
                errors["name"] = _("Enter the clinic's name.")
            elif len(value) > 200:
                errors["name"] = _("The name is too long (200 characters at most).")
        elif name == "address" and len(value) > 300:
            errors["address"] = _("The address is too long (300 characters at most).")
        elif name == "phone":
            found = {}
            value = people.parse_phone(value, found, region=now_in_force.phone_region)
            if found:
                errors["phone"] = found["phone"]
        elif name == "timezone":
            if value not in time_zones():
                errors["timezone"] = (_("Not a time zone we know: choose one from the list, such "
                                      "as Europe/Berlin or America/New_York."))
        elif name == "website" and value:
            if "://" not in value:
                value = "https://" + value
            if len(value) > 300 or not _WEBSITE.fullmatch(value):
                errors["website"] = _("Enter the website's address, such as https://example.com.")
        clean[name] = value
    check(errors)
    if confirm or "timezone" in clean:
        clean["timezone_confirmed"] = True
    with database.atomic():
        ClinicSettings.insert(id=1).on_conflict_ignore().execute()
        (ClinicSettings.update(**clean, updated_at=clock.now(),
                               updated_by=who.id if who is not None else None)
         .where(ClinicSettings.id == 1).execute())
    forget()
    return current()
