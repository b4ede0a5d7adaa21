"""Monthly activity reports: each active doctor gets one email about the previous clinic-local
month, with its totals and a table of the completed visits (date, time, patient, diagnosis,
treatment). The job ``monthly-reports`` runs ``send_monthly`` on the 1st; an admin can make a
month's reports at any time (``start``), in the background with progress.

Once per doctor and month. The report's row (MonthlyReport, unique doctor + month) and its email
(outbox key ``monthly_report:{doctor_id}:{YYYY-MM}``) are written in one transaction, so a second
run, the catch-up after downtime, an admin's re-run or two runs at once email nobody twice. A
doctor with no appointments that month gets a short report saying so: every active doctor hears
from the clinic once a month, and a missing email is never a question.

The figures, over the appointments whose start falls in the month (clinic-local midnight on the
1st to midnight on the next 1st; a month with a daylight-saving change has 743 or 745 hours):

- appointments by status, every status, cancelled included;
- treatments: treatment records of those appointments;
- patients: different patients among the appointments that were not cancelled;
- no-show rate: no_show / (completed + no_show), the share of visits that were due and missed;
  none when no visit was completed or missed.

The whole clinic's month takes two GROUP BY queries and one query for the table rows ordered by
doctor and start, however many doctors and visits; only the writing is per doctor.
"""

import itertools
import logging
import re
from datetime import UTC, date, datetime, time
from typing import NamedTuple

from peewee import JOIN, fn

from clinic import clock
from clinic.db import database
from clinic.errors import Invalid, NotFound
from clinic.i18n import N_, _
from clinic.jobs import progress
from clinic.jobs.queue import NORMAL
from clinic.mail import outbox
from clinic.models import (
    APPOINTMENT_STATUSES,
    Appointment,
    Doctor,
    Message,
    MonthlyReport,
    Treatment,
    User,
)
from huey_config import huey

log = logging.getLogger("clinic.reports")

TASK_NAME = "monthly-reports"
STATUS_LABELS = {"completed": N_("Completed"), "no_show": N_("No-show"),
                 "cancelled": N_("Cancelled"), "booked": N_("Booked, never recorded"),
                 "confirmed": N_("Confirmed, never recorded")}  # translated in the email


# -- months ---------------------------------------------------------------------------------------


def label(month):
    """``date(2026, 10, 1)`` as ``"2026-10"``."""
    return f"{month.year:04d}-{month.month:02d}"


def _next(month):
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(now=None):
    """The first day of the clinic-local month before the one ``now`` is in."""
    this = clock.local(now or clock.now()).date().replace(day=1)
    return date(this.year - (this.month == 1), (this.month - 2) % 12 + 1, 1)


def bounds(month):
    """[start, end) of the clinic-local ``month`` as UTC instants: each end is midnight in the
    offset of its own day, so a month with a daylight-saving change is an hour shorter or longer."""
    tz = clock.zone()
    return tuple(datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
                 for day in (month, _next(month)))


def parse_month(raw, now=None):
    """The month that ``raw`` ("YYYY-MM") names, as its first day, if it has ended; Invalid
    (field ``month_year``) saying what is expected otherwise. The running month is refused too:
    its report would be incomplete, and being made it would stop the real one on the 1st."""
    example = label(previous_month(now))
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})", raw.strip()) if isinstance(raw, str) else None
    if not match or int(match.group(1)) < 1900 or not 1 <= int(match.group(2)) <= 12:
        message = f"month_year must be YYYY-MM, e.g. {example}"
        raise Invalid(message, {"month_year": message})
    month = date(int(match.group(1)), int(match.group(2)), 1)
    if month > previous_month(now):
        message = f"month_year must be a month that has ended, e.g. {example}"
        raise Invalid(message, {"month_year": message})
    return month


# -- the figures ----------------------------------------------------------------------------------


def _in(month):
    lo, hi = bounds(month)
    return (Appointment.start >= lo) & (Appointment.start < hi)


def _empty():
    return {"appointments": 0, "by_status": dict.fromkeys(APPOINTMENT_STATUSES, 0),
            "treatments": 0, "patients": 0, "no_show_rate": None}


def totals(month):
    """``{doctor_id: figures}`` for every doctor with appointments in ``month``; figures as in
    ``_empty()``. Two GROUP BY queries for the whole clinic."""
    result = {}
    by_status = (Appointment
                 .select(Appointment.doctor, Appointment.status, fn.COUNT(Appointment.id),
                         fn.COUNT(Treatment.appointment))
                 .join(Treatment, JOIN.LEFT_OUTER, on=(Treatment.appointment == Appointment.id))
                 .where(_in(month))
                 .group_by(Appointment.doctor, Appointment.status)
                 .tuples())
    for doctor_id, status, appointments, treatments in by_status:
        figures = result.setdefault(doctor_id, _empty())
        figures["by_status"][status] = figures["by_status"].get(status, 0) + appointments
        figures["appointments"] += appointments
        figures["treatments"] += treatments
    patients = (Appointment
                .select(Appointment.doctor, fn.COUNT(fn.DISTINCT(Appointment.patient)))
                .where(_in(month), Appointment.status != "cancelled")
                .group_by(Appointment.doctor)
                .tuples())
    for doctor_id, count in patients:
        result[doctor_id]["patients"] = count
    for figures in result.values():
        done, missed = figures["by_status"]["completed"], figures["by_status"]["no_show"]
        if done + missed:
            figures["no_show_rate"] = round(missed / (done + missed), 4)
    return result


class Visit(NamedTuple):
    """A row of a report's table, in clinic-local time."""

    day: date
    time: str  # HH:MM
    patient: str
    diagnosis: str
    treatment: str


def visits(month, doctor_id=None):
    """``{doctor_id: [Visit, ...]}``: the completed visits of ``month``, each doctor's in order
    of start. One query."""
    tz = clock.zone()
    patient = User.alias("patient_user")
    query = (Appointment
             .select(Appointment.doctor, Appointment.start, patient.name, Treatment.diagnosis,
                     Treatment.treatment)
             .join(patient, on=(Appointment.patient == patient.id))
             .switch(Appointment)
             .join(Treatment, JOIN.LEFT_OUTER, on=(Treatment.appointment == Appointment.id))
             .where(_in(month), Appointment.status == "completed")
             .order_by(Appointment.doctor, Appointment.start, Appointment.id)
             .tuples())
    if doctor_id is not None:
        query = query.where(Appointment.doctor == doctor_id)
    result = {}
    for doctor, start, name, diagnosis, treatment in query:
        start = start.astimezone(tz)
        result.setdefault(doctor, []).append(Visit(start.date(), f"{start:%H:%M}", name,
                                                   diagnosis or "", treatment or ""))
    return result


def by_day(visits):
    """``[(date, [Visit, ...]), ...]`` for the email's table."""
    return [(day, list(group)) for day, group in itertools.groupby(visits, key=lambda v: v.day)]


# -- making the reports ---------------------------------------------------------------------------


def active_doctors():
    return (User.select(User)
            .join(Doctor, on=(Doctor.user == User.id))
            .where(User.active, User.role == "doctor")
            .order_by(User.name, User.id))


def key(doctor_id, month):
    return f"monthly_report:{doctor_id}:{label(month)}"


def _make_one(doctor, month, figures, rows, now):
    """Write ``doctor``'s report on ``month`` and queue its email, in one transaction; False when
    the report exists already (made by an earlier or a concurrent run: nothing is sent)."""
    with database.atomic():
        made = (MonthlyReport.insert(doctor=doctor.id, month=label(month), totals=figures,
                                     created_at=now)
                .on_conflict_ignore().as_rowcount().execute())
        if not made:
            return False
        context = {"doctor_name": doctor.name, "month": month, "figures": figures,
                   "labels": STATUS_LABELS, "days": by_day(rows)}
        message = outbox.enqueue("monthly_report", key(doctor.id, month), doctor.email,
                                 context=context, user=doctor.id)
        if message is None:  # the email went out once, before its report row was lost
            message = Message.get(Message.key == key(doctor.id, month))
        (MonthlyReport.update(message=message.id)
         .where(MonthlyReport.doctor == doctor.id, MonthlyReport.month == label(month))
         .execute())
    return True


def make(month, doctors, now=None, step=None):
    """Make ``month``'s report for each of ``doctors`` (Users) that has none yet; returns counts:
    sent (made and queued in the outbox now), already_sent (made before, not sent again) and
    failed (could not be made: logged, and left for a re-run to make). ``step(done, total,
    doctor, outcome, error)`` is called after each doctor (``error`` the reason a report
    failed, else "")."""
    now = now or clock.now()
    doctors = list(doctors)
    made_before = {doctor_id for (doctor_id,) in MonthlyReport
                   .select(MonthlyReport.doctor)
                   .where(MonthlyReport.month == label(month)).tuples()}
    todo = [d for d in doctors if d.id not in made_before]
    figures = totals(month) if todo else {}
    # The whole clinic's rows in one query; just the doctor's when one report is asked for.
    rows = visits(month, todo[0].id if len(todo) == 1 else None) if todo else {}
    counts = {"sent": 0, "already_sent": 0, "failed": 0}
    for done, doctor in enumerate(doctors, 1):
        error = ""
        if doctor.id in made_before:
            outcome = "already_sent"
        else:
            try:
                made = _make_one(doctor, month, figures.get(doctor.id) or _empty(),
                                 rows.get(doctor.id, []), now)
                outcome = "sent" if made else "already_sent"
            except Exception as exc:  # one doctor's failure must not cost the others theirs
                log.exception("monthly report %s for doctor %s failed", label(month), doctor.id)
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        counts[outcome] += 1
        if step is not None:
            step(done, len(doctors), doctor, outcome, error)
    return counts


def send_monthly(now=None, progress=None):
    """The ``monthly-reports`` job: last month's report to every active doctor who has not had
    it. Safe to run again, late or concurrently. ``progress(done, total, what)`` is told after
    each doctor."""
    now = now or clock.now()
    month = previous_month(now)
    doctors = list(active_doctors())
    step = None
    if progress is not None:
        def step(done, total, doctor, outcome, error):
            progress(done, total, "doctors")
    return {"month": label(month), "doctors": len(doctors), **make(month, doctors, now, step)}


# -- on demand, in the background ----------------------------------------------------------------


def _active_doctor(doctor_id):
    doctor = active_doctors().where(User.id == doctor_id).first()
    if doctor is None:
        raise NotFound(_("No active doctor has that id."))
    return doctor


def start(user, month_year, doctor_id=None, now=None):
    """Queue the making of ``month_year``'s reports for every active doctor, or for the one
    ``doctor_id``; returns ``(TaskRecord, "YYYY-MM")``. The task's record exists (PENDING,
    total = the number of doctors) before the task is queued, so its status can be read at
    once. Invalid for a bad month, NotFound for an unknown or inactive doctor."""
    month = parse_month(month_year, now)
    if doctor_id is not None:
        _active_doctor(doctor_id)
        total = 1
    else:
        total = active_doctors().count()
    record = progress.create(TASK_NAME, user=user, total=total,
                             status=f"Waiting to make the reports for {month:%B %Y}")
    try:
        make_monthly_reports(record.task_id, label(month), doctor_id)
    except Exception as exc:
        progress.fail(record.task_id, f"The task could not be queued: {exc}")
        raise
    return record, label(month)


def run_task(task_id, month_year, doctor_id=None, now=None):
    """The body of the ``make_monthly_reports`` task: make the reports, stepping the task's
    progress after each doctor, and finish with the result ``{"total", "successful", "failed",
    "success_rate", "sent", "already_sent", "month_year", "summary", "results"}``:
    "successful" counts the doctors who have their report, made now (sent) or by an earlier run
    (already_sent, not emailed again); ``summary`` repeats the four figures on their own, and
    ``results`` has one entry per doctor, ``{"id", "name", "outcome", "error"}``. Anything
    raised marks the task FAILURE with the reason, then goes on up."""
    try:
        month = date.fromisoformat(month_year + "-01")
        doctors = active_doctors()
        if doctor_id is not None:
            doctors = doctors.where(User.id == doctor_id)
        doctors = list(doctors)
        progress.step(task_id, 0, len(doctors), f"Counting {month:%B %Y}'s appointments")

        results = []

        def step(done, total, doctor, outcome, error):
            results.append({"id": doctor.id, "name": doctor.name, "outcome": outcome,
                            "error": error})
            said = {"sent": "report sent", "already_sent": "already had the report",
                    "failed": "report failed"}[outcome]
            progress.step(task_id, done, total, f"{done} of {total} doctors: {doctor.name}, "
                                                f"{said}")

        counts = make(month, doctors, now, step=step)
        total = len(doctors)
        successful = counts["sent"] + counts["already_sent"]
        summary = {"month_year": month_year, "total": total, "successful": successful,
                   "failed": counts["failed"],
                   "success_rate": round(successful / total, 4) if total else 1.0,
                   "sent": counts["sent"], "already_sent": counts["already_sent"]}
        summary["summary"] = {name: summary[name]
                              for name in ("total", "successful", "failed", "success_rate")}
        summary["results"] = results
        status = (f"{month:%B %Y}: {counts['sent']} reports sent, {counts['already_sent']} "
                  f"already sent before (not sent again), {counts['failed']} failed.")
        progress.succeed(task_id, summary, status=status)
        return summary
    except Exception as exc:
        progress.fail(task_id, f"The reports could not be made: {type(exc).__name__}: {exc}")
        raise


# -- the admins' summary --------------------------------------------------------------------------

SUMMARY_STATES = ("sent", "made", "failed", "missing")


def summary(month_year, now=None):
    """A month's reports at a glance, for GET /api/admin/reports/summary and /admin/reports:
    ``{"month_year", "counts": {state: n}, "doctors": [{"doctor_id", "doctor_name", "active",
    "state", "made_at", "sent_at", "error", "totals"}]}`` for every active doctor and every
    doctor who has that month's report. The state: sent (its email went out), made (the email is
    on its way), failed (the email could not be sent: ``error`` says why) or missing (no report
    yet). Three queries. Invalid for a bad month, as parse_month()."""
    month = parse_month(month_year, now)
    reports = {r.doctor_id: r for r in MonthlyReport.select().where(
        MonthlyReport.month == label(month))}
    messages = {m.id: m for m in Message.select(Message.id, Message.status, Message.sent_at,
                                                Message.last_error)
                .where(Message.id.in_([r.message_id for r in reports.values()
                                       if r.message_id is not None]))}
    doctors = (User.select(User.id, User.name, User.active)
               .join(Doctor, on=(Doctor.user == User.id))
               .where(User.active | User.id.in_(list(reports)))
               .order_by(User.name, User.id))
    rows, counts = [], dict.fromkeys(SUMMARY_STATES, 0)
    for doctor in doctors:
        report = reports.get(doctor.id)
        message = messages.get(report.message_id) if report is not None else None
        if report is None:
            state = "missing"
        elif message is not None and message.status == "sent":
            state = "sent"
        elif message is not None and message.status in ("failed", "skipped"):
            state = "failed"
        else:
            state = "made"
        counts[state] += 1
        rows.append({"doctor_id": doctor.id, "doctor_name": doctor.name,
                     "active": doctor.active, "state": state,
                     "made_at": report.created_at if report else None,
                     "sent_at": message.sent_at if state == "sent" else None,
                     "error": message.last_error if state == "failed" else "",
                     "totals": report.totals if report else None})
    return {"month_year": label(month), "counts": counts, "doctors": rows}


# -- the task --------------------------------------------------------------------------------------
# The monthly reports an admin asks for (POST /api/admin/reports/monthly); the monthly job itself
# runs through the scheduler's run_job like every scheduled job.


@huey.task(priority=NORMAL)
def make_monthly_reports(task_id, month_year, doctor_id=None):
    """Make a month's reports, with progress on the task record ``task_id``. Returns nothing:
    the summary is on the record."""
    run_task(task_id, month_year, doctor_id)
