"""Reminders of coming visits: one on the morning of the visit, and advance ones a set time before
it (CLINIC_REMINDER_OFFSETS, "24h,2h" by default). Both are scheduled jobs (clinic/jobs.py):
``send_daily`` at CLINIC_DAILY_REMINDER_AT (08:00 clinic time), ``send_advance`` every 5 minutes.

Which visits, and how often:
- Only visits still booked or confirmed. A cancelled visit gets none; cancelling or moving a visit
  withdraws its reminders not yet sent (clinic/notices.py).
- Each reminder is one outbox row with a unique key, ``reminder_daily:<id>:<start>`` or
  ``reminder_<offset>:<id>:<start>`` (``reminder_24h:...``), written whether it is sent or
  skipped. A second run, or two runs at once, find the key taken and send nothing twice; a moved
  visit has a new start, so it gets the reminders of its new time (and only those).
- Each run costs what is due, not the table: one query finds the visits in its time window (the
  (status, start) index) that lack a reminder key (each looked up in the key index), so a run
  with nothing new due reads no visit; the few it finds are written in one transaction, with
  one delivery task per 100 messages.

When an advance reminder is due:
- An offset of whole days means the same clinic time that many days before: the 24 h reminder of
  a 09:00 visit goes out at 09:00 the day before, also when the clocks change in between (then it
  is 23 or 25 real hours before). Patients read "24 hours before" as "this time yesterday", and
  the reminder should not arrive at 08:00 or 10:00 for a 09:00 visit. Any other offset (2 h) is
  real time.
- A run takes the visits from one longest offset ago to the latest start whose reminder is due
  (latest_due_start) and handles every reminder of theirs whose moment has passed and that has
  no row yet: so a visit that started while the clinic was down still gets its record.

When a due reminder is recorded as skipped instead (outbox.skip, with the reason), in this order:
1. The visit got its time after the reminder's moment ("booked less than 24 h ahead"): the
   confirmation just sent covers it. So a visit booked 1 hour ahead gets neither the 24 h nor the
   2 h reminder, and one booked 5 hours ahead only the 2 h one.
2. The reminder's moment passed while the clinic was not running, and by now
   - the visit has started ("... the visit had already started");
   - or it is less than 15 minutes away: too late to be of use, and a reminder then reads as
     a mistake ("... the visit was less than 15 minutes away");
   - or a shorter reminder is due as well (the 2 h one): only the one nearest the visit goes,
     so the patient does not get two reminders at once.
   A reminder missed during downtime is otherwise sent late: it gives the visit's date and time,
   never "tomorrow" or "in 2 hours".
3. The patient had a reminder of this visit (its present time) less than CLINIC_REMINDER_GAP
   (6 h) ago, sent or on its way (gap_reason): at most one reminder per visit in any gap, so a
   10:00 visit gets one message at 08:00, not the daily and the 2 h reminder at once. Checked
   inside the transaction that writes the reminders, with the visits' rows locked, so two runs
   at once (the daily and the advance job) still write one.
The daily reminder goes to every visit of the clinic-local day (23 or 25 hours on the days the
clocks change) that has not started yet; one that started before the run is recorded as skipped.

Reminders say when, which doctor and where, with the link to the visit's page; never the reason
for the visit or the doctor's specialization.
"""

import operator
from datetime import UTC, timedelta
from functools import reduce
from types import SimpleNamespace

from peewee import SQL, Cast, Value, fn

from clinic import clock, db, settings
from clinic.jobs.queue import URGENT
from clinic.mail import notices, outbox
from clinic.models import ACTIVE_STATUSES, Appointment, Doctor, Message, User
from clinic.settings import Setting

DAY = timedelta(days=1)
TOO_LATE = timedelta(minutes=15)  # a missed reminder is not sent this close to the visit
MISSED = "the clinic was not running when this reminder was due"


def _offsets(raw):
    values = settings.durations(raw)
    if min(values) < 2 * TOO_LATE:
        raise ValueError("each offset must be 30m or more")
    return values


settings.register(Setting(
    "reminder_offsets", "24h,2h", _offsets,
    "How long before each visit the advance reminders go out (30m or more each). Whole days "
    "mean the same clinic time that many days before, 23 or 25 hours when the clocks change."))


settings.register(Setting(
    "reminder_gap", "6h", settings.duration,
    "Least time between two reminders of one visit: a reminder due sooner after the last one "
    "is recorded as skipped (the 2 h reminder of a 10:00 visit after the 08:00 daily one)."))

KINDS = ("reminder_daily", "reminder_advance")


def label(offset):
    """An offset as it appears in outbox keys: 24h, 2h, 90m."""
    minutes = int(offset.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _words(offset):
    return label(offset).replace("h", " h").replace("m", " min")


def due_at(start, offset, tz=None):
    """When the ``offset`` reminder of a visit at ``start`` falls due: whole days on the clinic's
    calendar (the same wall time, the first one when it happens twice), anything else in real
    time."""
    if offset % DAY:
        return start - offset
    tz = tz or clock.zone()
    wall = start.astimezone(tz).replace(tzinfo=None, fold=0) - offset
    return wall.replace(tzinfo=tz).astimezone(UTC)


def latest_due_start(now, offset, tz=None):
    """The latest visit start whose ``offset`` reminder is due at ``now``: every visit whose
    due_at() has come starts no later, so a run looks no further. For whole days, the same wall
    time ``offset`` ahead, read as the later instant where it happens twice or is skipped; and
    while the clocks repeat an hour, from the end of it (due_at() reads a repeated wall time as
    its first pass, which is over). A bound, never early; due_at() decides."""
    if offset % DAY:
        return now + offset
    tz = tz or clock.zone()
    local = now.astimezone(tz)
    wall = local.replace(tzinfo=None) + offset
    if local.fold:  # the second pass of a repeated hour
        wall += local.replace(fold=0).utcoffset() - local.utcoffset()
    return max(wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))


def send_daily(now=None):
    """The daily-reminders job: remind every visit of today (clinic time) once. Returns
    ``{"sent": n, "skipped": m}``."""
    now = now or clock.now()
    lo, hi = clock.day_bounds(clock.local(now).date())
    window = (Appointment.status.in_(ACTIVE_STATUSES)
              & (Appointment.start >= lo) & (Appointment.start < hi))
    visits, taken, _ = _visits(window, "reminder_daily", _unwritten("reminder_daily"))
    todo = []
    for visit in visits:
        key = f"reminder_daily:{visit.id}:{notices.stamp(visit.start)}"
        if key in taken:
            continue
        reason = ("the visit had started before the daily reminders went out"
                  if visit.start <= now else None)
        todo.append((key, visit.id, reason))
    return _remind_all("reminder_daily", todo, now)


def send_advance(now=None):
    """The advance-reminders job: send each offset's reminders that are due (see the rules
    above). Returns ``{"sent": n, "skipped": m}``."""
    now = now or clock.now()
    tz = clock.zone()
    offsets = settings.get().reminder_offsets  # longest first
    latest = {offset: latest_due_start(now, offset, tz) for offset in offsets}
    window = (Appointment.status.in_(ACTIVE_STATUSES)
              & (Appointment.start > now - offsets[0])
              & (Appointment.start <= max(latest.values())))
    # A visit whose reminder is due and not written: nearly always none, so a run with nothing
    # due reads no visit and no message.
    unwritten = reduce(operator.or_, [
        (Appointment.start <= latest[offset]) & _unwritten(f"reminder_{label(offset)}")
        for offset in offsets])
    visits, taken, moved = _visits(window, "reminder_advance", unwritten)
    todo = []
    for visit in visits:
        due = [offset for offset in offsets if due_at(visit.start, offset, tz) <= now]
        timed_at = max(visit.created_at, moved.get(visit.id, visit.created_at))
        for offset in due:
            key = f"reminder_{label(offset)}:{visit.id}:{notices.stamp(visit.start)}"
            if key in taken:
                continue
            shorter = [o for o in due if o < offset]
            if timed_at > due_at(visit.start, offset, tz):
                reason = f"booked less than {_words(offset)} ahead"
            elif visit.start <= now:
                reason = f"{MISSED}; the visit had already started"
            elif visit.start - now < TOO_LATE:
                reason = f"{MISSED}; the visit was less than 15 minutes away"
            elif shorter:
                reason = f"{MISSED}; the {_words(shorter[0])} reminder, due as well, replaces it"
            else:
                reason = None
            todo.append((key, visit.id, reason))
    return _remind_all("reminder_advance", todo, now)


def _unwritten(prefix):
    """SQL: the visit has no message under the key ``<prefix>:<id>:<start stamp>`` (as
    notices.stamp writes it), looked up in the key's unique index."""
    if db.is_postgres():
        stamp = fn.to_char(Appointment.start, 'YYYY-MM-DD"T"HH24:MI"Z"')
    else:  # naive UTC text, as peewee stores it
        stamp = fn.strftime("%Y-%m-%dT%H:%MZ", Appointment.start)
    key = (Cast(Value(f"{prefix}:"), "text").concat(Cast(Appointment.id, "text"))
           .concat(Cast(Value(":"), "text")).concat(stamp))
    Written = Message.alias("written")
    return ~fn.EXISTS(Written.select(SQL("1")).where(Written.key == key))


def _visits(window, kind, unwritten):
    """The visits in ``window`` that lack a reminder (``unwritten``; id, start and created_at
    only), the keys of their ``kind`` messages, and when each moved visit was last moved: one
    query when nothing is due, two otherwise, whatever the size of the table. The people are
    read later, and only for the visits that get one (_remind_all)."""
    visits = list(Appointment.select(Appointment.id, Appointment.start, Appointment.created_at)
                  .where(window & unwritten).order_by(Appointment.start, Appointment.id)
                  .namedtuples())
    taken, moved = set(), {}
    if not visits:
        return visits, taken, moved
    # By appointment, not by kind: the kind index would read every reminder ever sent.
    rows = (Message.select(Message.appointment, Message.kind, Message.key, Message.created_at)
            .where(Message.appointment.in_([visit.id for visit in visits])).tuples())
    for appointment_id, row_kind, key, created_at in rows:
        if row_kind == kind:
            taken.add(key)
        elif row_kind == "rescheduled":
            moved[appointment_id] = max(created_at, moved.get(appointment_id, created_at))
    return visits, taken, moved


WRITE_BATCH = 500  # reminders written in one transaction


def _with_people(ids):
    """The visits ``ids`` with what a reminder says of them (notices.details) and where it goes,
    by id, read in one query as tuples: a run writes hundreds of reminders, and peewee's
    three-way join objects would take it longer than rendering their emails."""
    patient, doctor = User.alias("patient"), User.alias("doctor")
    found = (Appointment
             .select(Appointment.id, Appointment.start, Appointment.end, patient.id,
                     patient.name, patient.email, doctor.id, doctor.name, Doctor.specialization)
             .join(patient, on=(patient.id == Appointment.patient))
             .switch(Appointment)
             .join(doctor, on=(doctor.id == Appointment.doctor))
             .switch(Appointment)
             .join(Doctor, on=(Doctor.user == Appointment.doctor))
             .where(Appointment.id.in_(ids))
             .tuples())
    return {row[0]: SimpleNamespace(
        id=row[0], start=row[1], end=row[2], patient_id=row[3],
        patient=SimpleNamespace(id=row[3], name=row[4], email=row[5]),
        doctor=SimpleNamespace(id=row[6], name=row[7]),
        doctor_profile=SimpleNamespace(specialization=row[8])) for row in found}


def gap_reason(at, earlier, gap=None):
    """The rule of CLINIC_REMINDER_GAP, for the jobs and the timeline: why a reminder of a visit
    at ``at`` is not sent, given when its ``earlier`` reminders (of the same visit time, sent or
    on their way) went out; None when it may go."""
    gap = gap or settings.get().reminder_gap
    close = [moment for moment in earlier if at - gap < moment <= at]
    if not close:
        return None
    last = clock.local(max(close)).strftime("%H:%M")
    return f"a reminder went out at {last}, less than {_words(gap)} before"


def _recent(ids, now):
    """{(visit id, key's start stamp): [when each of its reminders was written]} for the
    reminders of the visits ``ids`` written in the last CLINIC_REMINDER_GAP, skipped ones left
    out. Read with the visits' rows locked (PostgreSQL; SQLite's write transaction already
    serialises runs), so a run at the same time waits for this one's commit."""
    list(db.locked(Appointment.select(Appointment.id).where(Appointment.id.in_(ids))))
    since = now - settings.get().reminder_gap
    found = {}
    for visit_id, key, created_at in (
            Message.select(Message.appointment, Message.key, Message.created_at)
            .where(Message.appointment.in_(ids), Message.kind.in_(KINDS),
                   Message.status != "skipped", Message.created_at > since).tuples()):
        found.setdefault((visit_id, key.rsplit(":", 2)[-1]), []).append(created_at)
    return found


def _remind_all(kind, todo, now):
    """Write the reminders ``todo``, each ``(key, visit id, reason)``: sent, or skipped for
    ``reason`` when it has one. The visits and their people are read in one query; the rows go
    in transactions of WRITE_BATCH (outbox.enqueue_many), their delivery in tasks of
    outbox.SEND_BATCH. A run that dies half-way wrote whole transactions only: the next run
    finds the rest unwritten. Returns ``{"sent": n, "skipped": m}``, counting only what this
    run wrote (a run at the same time may have taken a key first)."""
    counts = {"sent": 0, "skipped": 0}
    ids = list({visit_id for _, visit_id, _ in todo})
    visits = _with_people(ids) if ids else {}
    for lo in range(0, len(todo), WRITE_BATCH):
        some = todo[lo:lo + WRITE_BATCH]
        with db.database.atomic():  # the gap checked and the rows written in one transaction
            recent = _recent([visit_id for _, visit_id, _ in some], now)
            items = []
            for key, visit_id, reason in some:
                visit = visits.get(visit_id)
                if visit is None:  # deleted meanwhile: nothing to remind of
                    continue
                earlier = recent.setdefault((visit_id, key.rsplit(":", 2)[-1]), [])
                reason = reason or gap_reason(now, earlier)
                if reason is None:
                    earlier.append(now)  # a second reminder of this run is within the gap too
                items.append({"key": key, "recipient": visit.patient.email,
                              "user": visit.patient.id, "appointment": visit.id,
                              "reason": reason,
                              "context": None if reason else notices.details(visit)})
            written = outbox.enqueue_many(kind, items, priority=URGENT, now=now,
                                          batch=outbox.SEND_BATCH)
        counts["sent"] += written["queued"] + written["failed"]
        counts["skipped"] += written["skipped"]
    return counts
