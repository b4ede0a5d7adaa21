"""The admin dashboard's figures, and the small in-memory memo that spares the database from
recomputing them on every page view. Each process has its own memo; its entries live for
CLINIC_STATS_CACHE_TTL (5 minutes by default), and an admin's Refresh reaches every process
(``forget``)."""

import threading
from datetime import datetime, time, timedelta

from peewee import Case, fn

from clinic import clock, settings
from clinic.clock import day_bounds
from clinic.db import database
from clinic.models import (
    APPOINTMENT_STATUSES,
    Appointment,
    DailyStat,
    Doctor,
    JobState,
    Message,
    Patient,
    Review,
    Treatment,
    User,
)

_memo = {}
_lock = threading.Lock()


# A Refresh in one web process must reach the memo of every other: forgetting a key stamps the
# time in the database (the JobState row REFRESHED), and an entry computed before the latest
# stamp is computed again. The price: one read by primary key on each view.
REFRESHED = "stats-refreshed"


def memo(key, compute, ttl=None, now=None):
    """``(value, computed_at, cached)``: a fresh value from ``compute()`` if none younger than
    ``ttl`` and than the latest Refresh is kept, else the kept one. Concurrent misses compute
    once."""
    ttl = settings.get().stats_cache_ttl if ttl is None else ttl
    now = now or clock.now()
    refreshed = JobState.started_at(REFRESHED)
    with _lock:
        entry = _memo.get(key)
        if (entry is not None and now - entry[1] < ttl
                and (refreshed is None or refreshed <= entry[1])):
            return entry[0], entry[1], True
        value = compute()
        _memo[key] = (value, now)
        return value, now, False


def forget(key=None, now=None):
    """Drop ``key`` from the memo of every process of the clinic (an admin's Refresh); with no
    key, empty this process's memo only (tests start from nothing)."""
    with _lock:
        if key is None:
            _memo.clear()
            return
        _memo.pop(key, None)
    stamp = now or clock.now()
    (JobState.insert(name=REFRESHED, last_started_at=stamp)
     .on_conflict(conflict_target=[JobState.name], update={JobState.last_started_at: stamp})
     .execute())


def _by_status(lo, hi):
    counts = dict.fromkeys(APPOINTMENT_STATUSES, 0)
    # Naming every status lets the (status, start) index seek to the range once per status;
    # without it SQLite scans the whole index.
    rows = (Appointment.select(Appointment.status, fn.COUNT(Appointment.id).alias("n"))
            .where(Appointment.status.in_(APPOINTMENT_STATUSES),
                   Appointment.start >= lo, Appointment.start < hi)
            .group_by(Appointment.status).tuples())
    for status, n in rows:
        counts[status] = n
    return counts


def compute_dashboard(now=None):
    now = now or clock.now()
    today = clock.local(now).date()
    day_lo, day_hi = day_bounds(today)
    month_start = today.replace(day=1)
    next_month = (month_start.replace(year=month_start.year + 1, month=1)
                  if month_start.month == 12 else month_start.replace(month=month_start.month + 1))
    tz = clock.zone()
    month_lo = datetime.combine(month_start, time(0), tzinfo=tz)
    month_hi = datetime.combine(next_month, time(0), tzinfo=tz)
    return {
        "today": _by_status(day_lo, day_hi),
        "this_month": _by_status(month_lo, month_hi),
        "patients": Patient.select(fn.COUNT(Patient.user)).scalar(),
        "doctors": (Doctor.select(fn.COUNT(Doctor.user)).join(User).where(User.active)
                    .scalar()),
        "completed_treatments": Treatment.select(fn.COUNT(Treatment.appointment)).scalar(),
        "date": today.isoformat(),
    }


def dashboard(now=None, refresh=False):
    """``(figures, computed_at, cached)`` for the admin dashboard."""
    if refresh:
        forget("dashboard")
    return memo("dashboard", lambda: compute_dashboard(now), now=now)


# -- daily statistics -----------------------------------------------------------------------------

# How far back record_day() fills in days that have no figures yet.
BACKFILL_DAYS = 30


def day_figures(day):
    """The figures of one clinic-local day: appointments starting that day by status, patients
    who registered, reviews written, emails sent and emails that failed that day."""
    lo, hi = day_bounds(day)
    figures = _by_status(lo, hi)
    # A visit checked in but not yet seen is passing through: DailyStat keeps no column for it.
    figures.pop("arrived")
    figures["new_patients"] = (Patient.select(fn.COUNT(Patient.user)).join(User)
                               .where(User.created_at >= lo, User.created_at < hi).scalar())
    figures["reviews"] = (Review.select(fn.COUNT(Review.id))
                          .where(Review.created_at >= lo, Review.created_at < hi).scalar())
    for channel, name in (("email", "emails"), ("sms", "sms")):
        figures[f"{name}_sent"] = (Message.select(fn.COUNT(Message.id))
                                   .where(Message.status == "sent", Message.sent_at >= lo,
                                          Message.sent_at < hi, Message.channel == channel)
                                   .scalar())
        # A failed message last changed when it failed (the clean-up keeps its times).
        figures[f"{name}_failed"] = (Message.select(fn.COUNT(Message.id))
                                     .where(Message.status == "failed", Message.updated_at >= lo,
                                            Message.updated_at < hi, Message.channel == channel)
                                     .scalar())
    return figures


def record_day(now=None, backfill=BACKFILL_DAYS):
    """The daily-stats job (01:00): write yesterday's DailyStat row (clinic-local days), replacing
    the figures if it was written before, and the row of every day of the ``backfill`` days up
    to yesterday that has none. The scheduler catches up only the latest missed run, so this is
    what fills in the days a stopped clinic missed (a clinic's first run fills in 30 days, zeros
    included). Returns ``{"recorded": n, "from": day, "to": day}``."""
    now = now or clock.now()
    yesterday = clock.local(now).date() - timedelta(days=1)
    first = yesterday - timedelta(days=backfill - 1)
    recorded = {row.day for row in DailyStat.select(DailyStat.day)
                .where(DailyStat.day >= first, DailyStat.day < yesterday)}
    days = [first + timedelta(days=n) for n in range(backfill)]
    days = [day for day in days if day not in recorded]
    for day in days:
        with database.atomic():
            figures = day_figures(day)
            written = [DailyStat.computed_at, *(getattr(DailyStat, name) for name in figures)]
            (DailyStat.insert(day=day, computed_at=now, **figures)
             .on_conflict(conflict_target=[DailyStat.day], preserve=written)
             .execute())
    return {"recorded": len(days), "from": days[0].isoformat(), "to": days[-1].isoformat()}


# -- the dashboard's charts -----------------------------------------------------------------------

CHART_DAYS = 30
# The statuses a day's DailyStat row counts: "arrived" passes within the day.
DAY_STATUSES = tuple(s for s in APPOINTMENT_STATUSES if s != "arrived")
DAY_FIGURES = (*DAY_STATUSES, "emails_sent", "emails_failed", "sms_sent", "sms_failed")


def no_show_rates(lo, hi):
    """Per doctor, the visits due in [lo, hi) that ended as a no-show, out of those that were
    due and settled (completed or no-show; cancelled ones were never due), by name: one
    GROUP BY. ``[{"doctor_id", "name", "no_shows", "due", "rate"}]``; doctors with no such
    visit are left out."""
    no_shows = fn.SUM(Case(None, [(Appointment.status == "no_show", 1)], 0))
    rows = (Appointment
            .select(Appointment.doctor, User.name, fn.COUNT(Appointment.id), no_shows)
            .join(User, on=(Appointment.doctor == User.id))
            .where(Appointment.start >= lo, Appointment.start < hi,
                   Appointment.status.in_(("completed", "no_show")))
            .group_by(Appointment.doctor, User.name)
            .order_by(User.name, Appointment.doctor)
            .tuples())
    return [{"doctor_id": doctor_id, "name": name, "no_shows": int(missed), "due": due,
             "rate": int(missed) / due} for doctor_id, name, due, missed in rows]


def compute_charts(now=None):
    """The charts' data for the last CHART_DAYS clinic-local days up to yesterday: each day's
    figures as the daily-stats job recorded them (``None`` for a day it has not recorded), and
    each doctor's no-show rate over the same days."""
    now = now or clock.now()
    last = clock.local(now).date() - timedelta(days=1)
    first = last - timedelta(days=CHART_DAYS - 1)
    columns = [getattr(DailyStat, name) for name in DAY_FIGURES]
    recorded = {row[0]: dict(zip(DAY_FIGURES, row[1:], strict=True)) for row in
                DailyStat.select(DailyStat.day, *columns)
                .where(DailyStat.day >= first, DailyStat.day <= last).tuples()}
    days = [first + timedelta(days=n) for n in range(CHART_DAYS)]
    return {
        "first": first,
        "last": last,
        "days": [(day, recorded.get(day)) for day in days],
        "no_shows": no_show_rates(day_bounds(first)[0], day_bounds(last)[1]),
    }


def charts(now=None, refresh=False):
    """``(data, computed_at, cached)`` for the dashboard's charts, kept like its figures."""
    if refresh:
        forget("charts")
    return memo("charts", lambda: compute_charts(now), now=now)
