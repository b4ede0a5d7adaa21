"""The clinic cancels a set of appointments at once and tells each patient why: the visits inside
a doctor's time off or a clinic closure, a deactivated doctor's future bookings.

A batch is a Cancellation row (the reason and the appointment ids) made before anything is
queued, and a background task with progress (clinic/jobs/progress.py) that goes through it. Each
appointment is cancelled in its own transaction together with its notice in the outbox (key
``cancellation:<appointment id>``, clinic/mail/notices.py), so a run that dies half-way has lost
no notice: what it cancelled has its email on the way, and running the batch again (resume())
skips the appointments no longer booked and sends nobody a second email. The
cancellation-sweep job does that for a batch whose task was lost.
"""

import logging
from datetime import timedelta

from peewee import JOIN

from clinic import clock, people
from clinic.db import database
from clinic.errors import Conflict, Invalid, NotFound
from clinic.i18n import _
from clinic.jobs import progress
from clinic.jobs.queue import URGENT
from clinic.mail import notices
from clinic.models import ACTIVE_STATUSES, Appointment, Cancellation, TaskRecord
from huey_config import huey

log = logging.getLogger("clinic.cancellations")

TASK_NAME = "cancel appointments"
MAX_REASON = 300


def start(appointment_ids, reason, user=None, now=None):
    """Store a batch cancelling ``appointment_ids`` for ``reason`` and queue its task; returns
    the Cancellation. The progress record exists before the task is queued."""
    reason = check_reason(reason)
    ids = sorted({int(i) for i in appointment_ids})
    batch = Cancellation.create(reason=reason, appointment_ids=ids, author=user, state="queued",
                                created_at=now or clock.now())
    return _queue(batch, user)


def check_reason(reason):
    """The reason tidied, or Invalid: the patients are told it, so it must be there."""
    reason = " ".join(str(reason or "").split())
    if not reason:
        raise Invalid(_("Say why the appointments are cancelled: the patients are told."),
                      {"reason": _("Enter the reason the patients are told.")})
    if len(reason) > MAX_REASON:
        raise Invalid(_("The reason is too long."),
                      {"reason": _("Keep it under %(count)s characters.") % {"count": MAX_REASON}})
    return reason


def resume(batch_id, user=None):
    """Run a batch again after it stopped: the appointments it cancelled already are skipped."""
    batch = get(batch_id)
    if batch.state == "done":
        raise Conflict(_("These appointments are cancelled already and every patient was told."))
    return _queue(batch, user)


def _queue(batch, user):
    record = progress.create(TASK_NAME, user=user, total=len(batch.appointment_ids),
                             status=f"Waiting to cancel {len(batch.appointment_ids)} "
                                    "appointments")
    Cancellation.update(task_id=record.task_id, state="queued", error="").where(
        Cancellation.id == batch.id).execute()
    cancel_appointments(batch.id, record.task_id)
    return Cancellation.get_by_id(batch.id)


def cancel_and_notify(appointment_ids, reason, now=None, on_step=None):
    """Cancel each appointment still booked or confirmed and queue its patient's notice with
    ``reason``, one transaction each; returns ``{"cancelled": n, "skipped": n}`` (skipped: no
    longer booked, such as cancelled by an earlier run). ``on_step(done)`` follows along."""
    counts = {"cancelled": 0, "skipped": 0}
    for done, appointment_id in enumerate(appointment_ids, 1):
        now_ = now or clock.now()
        with database.atomic():
            changed = (Appointment.update(status="cancelled", updated_at=now_)
                       .where(Appointment.id == appointment_id,
                              Appointment.status.in_(ACTIVE_STATUSES))
                       .execute())
            if changed:
                notices.cancelled(Appointment.get_by_id(appointment_id), why=reason)
        counts["cancelled" if changed else "skipped"] += 1
        if on_step:
            on_step(done)
    return counts


def run(batch_id, task_id=None, now=None):
    """The task's work: go through the batch, with progress on ``task_id``."""
    batch = get(batch_id)
    ids = batch.appointment_ids
    total = len(ids)
    Cancellation.update(state="running").where(Cancellation.id == batch.id).execute()

    def step(done):
        if task_id:
            progress.step(task_id, done, total, f"Cancelled {done} of {total} appointments")

    try:
        counts = cancel_and_notify(ids, batch.reason, now=now, on_step=step)
    except Exception as exc:
        log.exception("cancellation batch %s stopped", batch.id)
        Cancellation.update(state="failed", error=f"{type(exc).__name__}: {exc}"[:500]).where(
            Cancellation.id == batch.id).execute()
        if task_id:
            progress.fail(task_id, f"Stopped: {exc}. Run it again to go on: nobody is told "
                                   "twice.")
        raise
    # An earlier run's cancellations count as this batch's too: the patients were told by it.
    cancelled = (Appointment.select(Appointment.id)
                 .where(Appointment.id.in_(ids), Appointment.status == "cancelled").count())
    Cancellation.update(state="done", cancelled=cancelled, skipped=total - cancelled,
                        finished_at=clock.now()).where(Cancellation.id == batch.id).execute()
    if task_id:
        progress.succeed(task_id, counts, status=(
            f"Done: {counts['cancelled']} cancelled and their patients told"
            + (f", {counts['skipped']} no longer booked" if counts["skipped"] else "")))
    return counts


# A batch whose progress has not moved for this long lost its task (Huey runs a task at most once:
# one killed mid-way is gone), and the cancellation-sweep job runs it again.
STALE = timedelta(minutes=5)


def sweep(now=None):
    """The cancellation-sweep job: queue again every batch not done whose progress record has
    not moved for STALE (or never started). A batch still running slowly and run a second time
    beside itself emails nobody twice. Returns ``{"resumed": n}``."""
    now = now or clock.now()
    stale = (Cancellation.select(Cancellation.id)
             .join(TaskRecord, JOIN.LEFT_OUTER, on=(TaskRecord.task_id == Cancellation.task_id))
             .where(Cancellation.state.in_(("queued", "running")),
                    Cancellation.created_at < now - STALE,
                    TaskRecord.id.is_null() | (TaskRecord.updated_at < now - STALE)))
    resumed = 0
    for batch in stale:
        resume(batch.id)
        resumed += 1
    return {"resumed": resumed}


def upcoming_of(doctor_id, now=None):
    """Ids of the doctor's visits still to come (booked or confirmed), soonest first."""
    return [row.id for row in
            Appointment.select(Appointment.id)
            .where(Appointment.doctor == doctor_id, Appointment.status.in_(ACTIVE_STATUSES),
                   Appointment.start > (now or clock.now()))
            .order_by(Appointment.start)]


def deactivate_doctor(doctor_id, cancel_upcoming=False, reason="", user=None, now=None):
    """Deactivate a doctor (no new bookings, signed out); with ``cancel_upcoming`` cancel all
    their future bookings in the background, each patient told ``reason``. Returns
    ``(upcoming ids, Cancellation or None)``. The reason is checked before anything changes."""
    if cancel_upcoming:
        reason = check_reason(reason)
    upcoming = upcoming_of(doctor_id, now)
    people.set_active(doctor_id, False)
    batch = start(upcoming, reason, user=user, now=now) if cancel_upcoming else None
    return upcoming, batch


def batches(batch_ids):
    """The batches with these ids (None ignored)."""
    ids = [i for i in batch_ids if i]
    return list(Cancellation.select().where(Cancellation.id.in_(ids))) if ids else []


def get(batch_id):
    batch = Cancellation.get_or_none(Cancellation.id == batch_id)
    if batch is None:
        raise NotFound(_("No such cancellation."))
    return batch


def as_dict(batch):
    return {"id": batch.id, "reason": batch.reason, "appointment_ids": batch.appointment_ids,
            "state": batch.state, "task_id": batch.task_id, "cancelled": batch.cancelled,
            "skipped": batch.skipped, "error": batch.error}


@huey.task(priority=URGENT)
def cancel_appointments(batch_id, task_id):
    """Cancel a batch's appointments and tell their patients, with progress on ``task_id``."""
    run(batch_id, task_id)
