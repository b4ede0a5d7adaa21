"""Announcements: an admin writes to a group of patients (all of them, a doctor's, or those with an
appointment in a date range), sees the email and the number of recipients first, then sends it.

Sending is a background task (BULK priority) that only writes: each recipient becomes one outbox
row keyed ``announcement:<announcement id>:<user id>``, 500 to a transaction, and the outbox
delivers them like any other email (after more urgent mail when CLINIC_MAIL_RATE bites). A run
that stops half-way (the process died, the database refused) is run again from the start: the
rows already written are found by their keys and nobody gets the announcement twice. Patients
who said no to announcements (clinic/preferences.py) get a skipped row that says so.

Who is in the audience is decided when the rows are written: the active patients of the clinic;
"a doctor's patients" are those with an appointment with that doctor, not cancelled, at any time;
"an appointment in a date range" means one not cancelled that starts on one of those clinic days.
"""

import hashlib
import json
import logging
from datetime import date

from babel.numbers import format_decimal
from peewee import fn

from clinic import clock, i18n, people, settings
from clinic.errors import Conflict, NotFound, check
from clinic.i18n import _
from clinic.jobs import progress
from clinic.jobs.queue import BULK
from clinic.mail import compose, outbox, preferences
from clinic.models import Announcement, Appointment, Message, OptOut, User
from huey_config import huey

log = logging.getLogger("clinic.announcements")

KIND = "announcement"
TASK_NAME = "announcement"
BATCH = 500  # recipients written per transaction
PRIORITY = -10  # in the outbox: after every other kind of email (they have 0 or more)
MAX_SUBJECT = 150
MAX_TEXT = 10_000
AUDIENCES = {
    "all": "All patients",
    "doctor": "Patients of one doctor",
    "appointments": "Patients with an appointment in a date range",
}
SAMPLE_NAME = "Alex Example"  # the preview's patient when the audience is empty


# -- what is sent, to whom ------------------------------------------------------------------------


def _day(raw, name, errors):
    try:
        return date.fromisoformat(str(raw or "").strip())
    except ValueError:
        errors[name] = _("Enter a date as YYYY-MM-DD.")
        return None


def parse(subject, text, audience):
    """``(subject, text, audience)`` checked and tidied; Invalid naming the fields otherwise
    (subject, text, audience, doctor_id, from, to). ``audience`` is a dict: {"type": "all"},
    {"type": "doctor", "doctor_id": 3} or {"type": "appointments", "from": "2026-03-01",
    "to": "2026-03-31"} (clinic days, both included)."""
    errors = {}
    subject = " ".join(str(subject or "").split())
    text = str(text or "").replace("\r\n", "\n").strip()
    if not subject:
        errors["subject"] = _("Write a subject.")
    elif len(subject) > MAX_SUBJECT:
        errors["subject"] = (_("Keep the subject under %(count)d characters.")
                             % {"count": MAX_SUBJECT})
    if not text:
        errors["text"] = _("Write the message.")
    elif len(text) > MAX_TEXT:
        errors["text"] = (_("Keep the message under %(count)s characters.")
                          % {"count": format_decimal(MAX_TEXT, locale=i18n.language())})
    audience = audience if isinstance(audience, dict) else {}
    kind = audience.get("type")
    chosen = {"type": kind}
    if kind == "doctor":
        raw = str(audience.get("doctor_id") or "").strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            errors["doctor_id"] = _("Choose a doctor.")
        else:
            try:
                chosen["doctor_id"] = people.get_doctor(int(raw)).user_id
            except NotFound:
                errors["doctor_id"] = _("Choose a doctor from the list.")
    elif kind == "appointments":
        first, last = (_day(audience.get("from"), "from", errors),
                       _day(audience.get("to"), "to", errors))
        if first and last and last < first:
            errors["to"] = _("The last day comes before the first.")
        elif first and last:
            chosen.update({"from": first.isoformat(), "to": last.isoformat()})
    elif kind != "all":
        errors["audience"] = "Choose who gets it: " + ", ".join(
            f"{key} ({words.lower()})" for key, words in AUDIENCES.items()) + "."
    check(errors)
    return subject, text, chosen


def recipients(audience):
    """The active patients in ``audience`` (as parse() returns it): a query of Users (id, email,
    name) in id order, so the task can go through it in batches."""
    query = (User.select(User.id, User.email, User.name)
             .where(User.role == "patient", User.active)
             .order_by(User.id))
    visits = Appointment.select(Appointment.id).where(Appointment.patient == User.id,
                                                     Appointment.status != "cancelled")
    if audience["type"] == "doctor":
        query = query.where(fn.EXISTS(visits.where(Appointment.doctor == audience["doctor_id"])))
    elif audience["type"] == "appointments":
        lo, _end = clock.day_bounds(date.fromisoformat(audience["from"]))
        _start, hi = clock.day_bounds(date.fromisoformat(audience["to"]))
        query = query.where(fn.EXISTS(visits.where(Appointment.start >= lo,
                                                   Appointment.start < hi)))
    return query


def describe(audience):
    """The audience in words, for the pages."""
    if audience.get("type") == "doctor":
        doctor = User.get_or_none(User.id == audience.get("doctor_id"))
        return (_("Patients of %(doctor)s") % {"doctor": doctor.name} if doctor
                else _("Patients of a doctor no longer listed"))
    if audience.get("type") == "appointments":
        first, last = (date.fromisoformat(audience[k]) for k in ("from", "to"))
        if first == last:
            return (_("Patients with an appointment on %(day)s")
                    % {"day": i18n.formatted(first, "day")})
        return (_("Patients with an appointment from %(first)s to %(last)s")
                % {"first": i18n.formatted(first, "day"), "last": i18n.formatted(last, "day")})
    return _("All patients")


def fingerprint(subject, text, audience):
    """A short digest of what was previewed: the page sends it back with "Send", and a message
    changed since its preview is shown again instead of sent (parse()d values)."""
    raw = json.dumps([subject, text, audience], sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _context(subject, text, name):
    return {"subject": subject, "text": text, "patient_name": name}


def preview(subject, text, audience):
    """What the admin sees before sending: ``{"subject", "text", "audience", "audience_words",
    "recipients", "opted_out", "patient_name", "fingerprint"}``: the email as the first
    recipient will get it (its text version) and how many patients it goes to. Invalid as
    parse()."""
    subject, text, audience = parse(subject, text, audience)
    query = recipients(audience)
    first = recipients(audience).first()  # first() would put a LIMIT 1 on ``query`` itself
    name = first.name if first else SAMPLE_NAME
    example = f"{settings.get().base_url}/unsubscribe/…"  # each patient's own link
    rendered_subject, rendered_text, _html = compose.render(
        KIND, **_context(subject, text, name), unsubscribe_url=example)
    opted_out = (OptOut.select(OptOut.id)
                 .where(OptOut.kind == preferences.choice_of(KIND),
                        OptOut.user.in_(query.select(User.id).order_by()))
                 .count())
    total = query.count()
    return {"subject": rendered_subject, "text": rendered_text, "audience": audience,
            "audience_words": describe(audience), "recipients": total, "opted_out": opted_out,
            "patient_name": name, "fingerprint": fingerprint(subject, text, audience)}


# -- sending --------------------------------------------------------------------------------------


def start(user, subject, text, audience, now=None):
    """Store the announcement and queue its sending; returns ``(Announcement, TaskRecord)``.
    The task's record exists (PENDING, total = the recipients) before the task is queued, so
    its progress can be read at once. Invalid as parse()."""
    now = now or clock.now()
    subject, text, audience = parse(subject, text, audience)
    total = recipients(audience).count()
    announcement = Announcement.create(author=user, subject=subject, text=text,
                                       audience=audience, state="queued", recipients=total,
                                       created_at=now, updated_at=now)
    return announcement, _queue(announcement, user, total)


def resume(user, announcement_id):
    """Run the sending of an announcement again, after a failure or a crash: whoever has their
    row already is skipped. Returns the new TaskRecord. Conflict-free: a second run at the same
    time writes nothing twice either."""
    announcement = get(announcement_id)
    if announcement.state == "written":
        raise Conflict(_("This announcement is sent already: every recipient has their email."))
    total = recipients(announcement.audience).count()
    return _queue(announcement, user, total)


def _queue(announcement, user, total):
    record = progress.create(TASK_NAME, user=user, total=total,
                             status=f"Waiting to send to {total} patients")
    (Announcement.update(task_id=record.task_id, state="queued", error="",
                         updated_at=clock.now())
     .where(Announcement.id == announcement.id).execute())
    try:
        send_announcement(announcement.id, record.task_id)
    except Exception as exc:
        progress.fail(record.task_id, f"The task could not be queued: {exc}")
        raise
    return record


def send(announcement_id, task_id=None, now=None, batch=None):
    """The sending task: write every recipient's outbox row, ``batch`` to a transaction, and
    step the task's progress after each. Returns counts: recipients, queued, skipped (opted
    out), failed (no valid address) and existing (written by an earlier run).

    1. Go through the audience in id order, ``batch`` patients at a time (keyset paging: each
       batch starts after the last id, so the table is never read whole).
    2. Each batch is one outbox.enqueue_many(): one transaction, one delivery task.
    3. Anything raised marks the announcement failed and the task FAILURE, with the reason;
       the rows written so far stay, and resume() (or send() again) goes on from there."""
    now = now or clock.now()
    batch = batch or BATCH
    announcement = get(announcement_id)
    try:
        _set(announcement.id, state="writing")
        query = recipients(announcement.audience)
        total = query.count()
        counts = {"recipients": 0, "queued": 0, "skipped": 0, "failed": 0, "existing": 0}
        if task_id:
            progress.step(task_id, 0, total, f"Writing the emails: 0 of {total} patients")
        last = 0
        while True:
            users = list(query.where(User.id > last).limit(batch))
            if not users:
                break
            for key, value in _write(announcement, users, now).items():
                counts[key] += value
            counts["recipients"] += len(users)
            last = users[-1].id
            if task_id:
                done = counts["recipients"]
                progress.step(task_id, done, max(total, done),
                              f"Writing the emails: {done} of {max(total, done)} patients")
        figures = delivery(announcement.id)
        _set(announcement.id, state="written", recipients=counts["recipients"],
             queued=sum(figures.values()) - figures["skipped"], skipped=figures["skipped"],
             finished_at=clock.now())
        if task_id:
            # Only what this task did, which stays true: how many have gone out since
            # changes by the minute, and the page reads that from the outbox.
            to_send = counts["recipients"] - figures["skipped"]
            progress.succeed(task_id, counts, status=(
                f"Done: {to_send} email{'' if to_send == 1 else 's'} ready to send"
                + (f", {figures['skipped']} not sent (opted out)" if figures["skipped"] else "")))
        return counts
    except Exception as exc:
        log.exception("announcement %s stopped", announcement.id)
        _set(announcement.id, state="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        if task_id:
            progress.fail(task_id, f"Sending stopped: {exc}. Send it again to go on: nobody "
                                   "gets it twice.")
        raise


def _write(announcement, users, now):
    """One batch of recipients into the outbox, in one transaction."""
    items = [{"key": key(announcement.id, user.id), "recipient": user.email, "user": user.id,
              "context": _context(announcement.subject, announcement.text, user.name)}
             for user in users]
    return outbox.enqueue_many(KIND, items, priority=PRIORITY, task_priority=BULK, now=now)


def _set(announcement_id, **fields):
    fields["updated_at"] = clock.now()
    Announcement.update(**fields).where(Announcement.id == announcement_id).execute()


def key(announcement_id, user_id):
    return f"announcement:{announcement_id}:{user_id}"


def _rows(announcement_id):
    """The announcement's outbox rows: its keys' range, read through the key's unique index."""
    prefix = f"announcement:{announcement_id}:"
    return (Message.key >= prefix) & (Message.key < prefix[:-1] + ";")  # ";" follows ":"


def delivery(announcement_id):
    """``{status: count}`` of the announcement's emails in the outbox, every status present."""
    figures = dict.fromkeys(("pending", "sending", "sent", "failed", "skipped"), 0)
    for status, count in (Message.select(Message.status, fn.COUNT(Message.id))
                          .where(_rows(announcement_id))
                          .group_by(Message.status).tuples()):
        figures[status] = count
    return figures


# -- for the pages --------------------------------------------------------------------------------


def get(announcement_id):
    announcement = Announcement.get_or_none(Announcement.id == announcement_id)
    if announcement is None:
        raise NotFound(_("No such announcement."))
    return announcement


def listing(limit=25, offset=0):
    return (Announcement.select().order_by(Announcement.created_at.desc(), Announcement.id.desc())
            .limit(limit).offset(offset))


# -- the task --------------------------------------------------------------------------------------
# An announcement only writes its recipients' outbox rows (send()); each batch's rows are then
# delivered by the outbox's send_messages, queued with BULK priority.


@huey.task(priority=BULK)
def send_announcement(announcement_id, task_id):
    """Write an announcement's emails, with progress on the task record ``task_id``. Returns
    nothing: the counts are on the record."""
    send(announcement_id, task_id)
