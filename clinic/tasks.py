"""Huey tasks: thin wrappers around plain functions in the domain modules. The functions are
what the tests call; these wrappers only give them a queue, a priority and a schedule.

Priorities (clinic.queue): confirmations and reminders before reports and exports, clean-up last.
"""

import logging
import threading

from huey import crontab

from clinic import db, jobs, monitor, outbox  # noqa: F401 (monitor records each task run)
from clinic.queue import BULK, HOUSEKEEPING, NORMAL, URGENT  # noqa: F401 (re-exported)
from huey_config import huey

log = logging.getLogger("clinic.tasks")

# -- a database connection for each task ---------------------------------------------------------
# A worker thread takes its connection for the task and gives it up after (db.acquire/release):
# no transaction outlives the task, and a PostgreSQL connection goes back to the pool, so one
# broken by one task (a server restart, say) is not inherited by the next. When the caller already
# has one open (Huey's immediate mode runs tasks inline, maybe inside a transaction) it is left
# alone.

_mine = threading.local()


@huey.pre_execute()
def _open_connection(task):
    _mine.here = db.acquire()


@huey.post_execute()
def _close_connection(task, task_value, exc):
    if getattr(_mine, "here", False):
        db.release()
    _mine.here = False


# -- the outbox ---------------------------------------------------------------------------------
# Delivery is queued by outbox.enqueue() once the row is committed; outbox.sweep() (an interval
# job: every minute) delivers whatever a lost task or a retry leaves pending.


@huey.task(priority=URGENT)
def send_messages(ids):
    """Deliver these outbox rows now. Returns nothing: Huey would keep every result."""
    outbox.deliver(ids)


# -- the scheduler ------------------------------------------------------------------------------
# One periodic task for every scheduled job: Huey's crontab knows no time zone and skips missed
# checks, so jobs.tick() decides what fell due (in the clinic's zone, caught up once after
# downtime) and enqueues run_job with each job's priority. Every minute is zone-free.


@huey.periodic_task(crontab(), priority=URGENT)
def scheduler_tick():
    jobs.tick()
    try:
        monitor.interrupt_orphans()  # runs whose process was killed: interrupted, retryable
    except Exception:
        log.exception("could not look for runs whose process is gone")
    try:
        monitor.interrupt_lost()  # runs whose task left the queue without running: the same
    except Exception:
        log.exception("could not look for runs whose task is lost")


@huey.task()
def run_job(name, due_at=None):
    """Run a scheduled job; ``due_at`` (ISO UTC, for the log) is the due time it was queued for.
    Returns nothing: Huey would keep every result."""
    jobs.run(name)


# -- exports --------------------------------------------------------------------------------------
# exports.start() queues this once the export's rows are committed; a task lost with the process
# leaves its export PENDING until it goes stale and the patient can start another.


@huey.task(priority=NORMAL)
def export_history(task_id):
    """Build a patient's history export. Returns nothing: Huey would keep every result."""
    from clinic import exports  # imported here so this section stays self-contained

    exports.build(task_id)


# -- reports --------------------------------------------------------------------------------------
# The monthly reports an admin asks for (POST /api/admin/reports/monthly); the monthly job itself
# runs through run_job like every scheduled job.


@huey.task(priority=NORMAL)
def make_monthly_reports(task_id, month_year, doctor_id=None):
    """Make a month's reports, with progress on the task record ``task_id``. Returns nothing:
    the summary is on the record."""
    from clinic import reports  # imported here: reports queues this task

    reports.run_task(task_id, month_year, doctor_id)


# -- announcements and the sending rate ------------------------------------------------------------
# An announcement only writes its recipients' outbox rows (announcements.send); each batch's rows
# are then delivered by send_messages, queued with BULK priority. Under CLINIC_MAIL_RATE the
# outbox queues send_due_messages for the moment there is room again.


@huey.task(priority=BULK)
def send_announcement(announcement_id, task_id):
    """Write an announcement's emails, with progress on the task record ``task_id``. Returns
    nothing: the counts are on the record."""
    from clinic import announcements  # imported here: announcements queues this task

    announcements.send(announcement_id, task_id)


@huey.task(priority=URGENT)
def send_due_messages():
    """Deliver the messages that waited for the rate limit. Returns nothing."""
    outbox.send_due()
