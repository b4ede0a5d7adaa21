"""The weekly clean-up (Monday 02:00): what the clinic no longer needs goes, in small batches.

- Emails: the bodies and attachments of sent messages after 90 days and of failed ones after 30
  are emptied. The row stays (recipient, kind, subject, status, error, times) as the record of
  what was sent when; its times are not touched.
- Exports: files and download links past their expiry (clinic.exports.purge_expired).
- Task records and the jobs page's task runs older than 30 days, expired sign-ins and old
  sign-in attempts.
- Appointments that started more than a year ago are marked archived.

Clinical records (appointments, treatments) are never deleted here, whatever their age.
"""

import importlib
from datetime import timedelta

from peewee import Value

from clinic import auth, clock
from clinic.db import database
from clinic.jobs import monitor
from clinic.models import Appointment, Message, TaskRecord

BATCH = 500  # rows per transaction: a big table is never locked for long
SENT_BODIES_KEPT = timedelta(days=90)
FAILED_BODIES_KEPT = timedelta(days=30)
TASK_RECORDS_KEPT = timedelta(days=30)
ARCHIVE_AFTER = timedelta(days=365)


def run(now=None, batch=BATCH, progress=None):
    """The clean-up job; returns how many rows each step changed, e.g.
    ``{"sent_bodies": 120, "failed_bodies": 3, "exports": 2, "task_records": 40, "task_runs": 900,
    "sessions": 9, "archived": 800}``; ``exports`` is "skipped" in a clinic without
    clinic/exports.py. ``progress(done, total, what)`` is told after each step."""
    now = now or clock.now()
    has_body = ((Message.text_body != "") | (Message.html_body != "")
                | (Message.attachments != Value("[]", converter=False)))  # as stored
    sent_long_ago = (Message.status == "sent") & (Message.sent_at < now - SENT_BODIES_KEPT)
    # A failed message last changed when it failed (a resend makes it pending again).
    failed_long_ago = ((Message.status == "failed")
                       & (Message.updated_at < now - FAILED_BODIES_KEPT))
    no_body = Message.update(text_body="", html_body="", attachments=[])
    steps = {
        "sent_bodies": lambda: in_batches(no_body, Message.id, sent_long_ago & has_body, batch),
        "failed_bodies": lambda: in_batches(no_body, Message.id, failed_long_ago & has_body, batch),
        "exports": lambda: _purge_exports(now),
        "task_records": lambda: in_batches(TaskRecord.delete(), TaskRecord.id,
                                           TaskRecord.created_at < now - TASK_RECORDS_KEPT,
                                           batch),
        "task_runs": lambda: monitor.prune(now, batch=batch),
        "sessions": lambda: auth.purge_expired(now),
        # Archiving changes no visit's times: updated_at stays when the visit last changed.
        "archived": lambda: in_batches(Appointment.update(archived=True), Appointment.id,
                                       (Appointment.start < now - ARCHIVE_AFTER)
                                       & ~Appointment.archived, batch),
    }
    counts = {}
    for done, (name, step) in enumerate(steps.items(), 1):
        counts[name] = step()
        if progress is not None:
            progress(done, len(steps), name)
    return counts


def in_batches(query, key, condition, batch=BATCH):
    """Run ``query`` (an UPDATE or DELETE of the model whose primary key is ``key``) on the rows
    matching ``condition``, ``batch`` rows per transaction; returns how many rows it changed.

    1. In a transaction, read the ids of the next ``batch`` matching rows, in id order.
    2. Change those of them that still match, and commit: other writers wait one batch at most.
    3. Go on after the last id read until a batch comes back short (ids only grow, so this ends
       whatever the query does to the condition)."""
    done = 0
    last = None
    while True:
        with database.atomic():
            ids = key.model.select(key).where(condition)
            if last is not None:
                ids = ids.where(key > last)
            ids = [row[0] for row in ids.order_by(key).limit(batch).tuples()]
            if ids:
                done += query.where(key.in_(ids), condition).execute()
        if len(ids) < batch:
            return done
        last = ids[-1]


def _purge_exports(now):
    # clinic/exports.py came with the history export; a clinic without it has nothing to purge.
    try:
        exports = importlib.import_module("clinic.exports")
    except ModuleNotFoundError as exc:
        if exc.name != "clinic.exports":
            raise
        return "skipped"
    return exports.purge_expired(now)
