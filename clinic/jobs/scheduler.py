"""The scheduled jobs: what runs when, and the tick that starts each one once per due time.

Huey's own periodic tasks know no time zone and skip a check that was missed, so clinic has ONE
periodic task, ``scheduler_tick`` (below), running every minute and calling ``tick()``.
For each job, ``tick`` takes its latest due time (its schedule read in the clinic's zone), claims
it in ``JobState`` with a conditional UPDATE, and only if that changed a row enqueues the job as a
Huey task with the job's priority. So a job fires once per due time however many ticks or
processes run, and a due time missed while the clinic was down is caught up once, at the next tick
(the latest one only), if the job's ``catch_up`` rule allows.

Each schedule is a setting (CLINIC_<SETTING>, see ``declare``). The job functions live in their
own modules and are named here by dotted path, imported only when the job runs. A job function
takes ``now`` (an aware UTC datetime) and returns what it did (a dict or a short text).
"""

import contextlib
import importlib
import inspect
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from huey import crontab

from clinic import clock, models, settings
from clinic.errors import NotFound
from clinic.jobs import heartbeats, schedule
from clinic.jobs.queue import HOUSEKEEPING, NORMAL, URGENT
from huey_config import huey

log = logging.getLogger("clinic.jobs.scheduler")

# catch_up rules: how late after its due time a missed run still starts.
ALWAYS = "always"  # at the next tick however late, also on the very first tick
SAME_DAY = "same day"  # only on the clinic day it was due
# ... or a timedelta: only within that long after the due time.

# A due time this recent is the tick meant for it, not a catch-up: it always runs.
ON_TIME = timedelta(minutes=5)


@dataclass(frozen=True)
class Job:
    name: str  # what `python run.py job run NAME` takes
    setting: str  # the settings attribute holding the schedule (env CLINIC_<SETTING>)
    default: str  # the schedule when the setting is not set
    function: object  # "module.function", imported when it runs (or the function itself)
    priority: int
    help: str
    catch_up: object = ALWAYS

    def schedule(self):
        value = settings.get().values.get(self.setting)
        return value if value is not None else schedule.parse(self.default)

    def resolve(self):
        if callable(self.function):
            return self.function
        module, _, name = self.function.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def fires(self, due, now, tz, first):
        """Whether due time ``due``, not yet claimed at ``now``, should run. On the first tick
        (no due time claimed before) only on-time and catch-up-always jobs run: a new clinic
        does not start with a burst of every job whose time passed long ago."""
        if now - due < ON_TIME or self.catch_up == ALWAYS:
            return True
        if first:
            return False
        if self.catch_up == SAME_DAY:
            return _day(due, tz) == _day(now, tz)
        return now - due <= self.catch_up

    def describe_catch_up(self):
        missed = "if the clinic was not running at its time, it runs once when it is back"
        if self.catch_up == ALWAYS:
            return missed
        if self.catch_up == SAME_DAY:
            return missed + " the same day, else it waits for its next time"
        return missed + f" within {_duration(self.catch_up)}, else it waits for its next time"


class UnknownJob(NotFound, KeyError):
    """No job has that name (a KeyError for callers that look jobs up like a dict)."""

    def __str__(self):
        return self.message


# The registry: a list, so it keeps the order `job list` shows.
JOBS = []


def declare(name, setting, default, function, priority, help, catch_up=ALWAYS):
    """Register a job and the setting that holds its schedule."""
    job = Job(name, setting, default, function, priority, help, catch_up)
    settings.register(settings.Setting(
        setting, default, schedule.parse,
        f"When the {name} job runs (08:00, mon 02:00, 1 09:00 or every 5m; clinic time). {help}"))
    JOBS.append(job)
    return job


def get(name):
    for job in JOBS:
        if job.name == name:
            return job
    raise UnknownJob(f"No job is named {name!r}. Jobs: {', '.join(j.name for j in JOBS)}.")


@contextlib.contextmanager
def registry(*jobs):
    """Make ``jobs`` the only registered jobs for the duration (tests use it)."""
    saved = JOBS[:]
    JOBS[:] = jobs
    try:
        yield
    finally:
        JOBS[:] = saved


declare("daily-reminders", "daily_reminder_at", "08:00", "clinic.reminders.send_daily",
        URGENT, "Reminds every patient with a visit today.", catch_up=SAME_DAY)
declare("advance-reminders", "advance_reminder_sweep", "every 5m", "clinic.reminders.send_advance",
        URGENT, "Sends the reminders due before each visit (24 h and 2 h by default).")
declare("outbox-sweep", "outbox_sweep", "every 1m", "clinic.mail.sweeper.sweep",
        URGENT, "Re-queues emails left waiting or stuck while being sent.")
declare("cancellation-sweep", "cancellation_sweep", "every 5m", "clinic.cancellations.sweep",
        URGENT, "Runs again a batch of cancellations (time off, a doctor who left) whose task "
        "was lost.")
declare("monthly-reports", "monthly_report_at", "1 09:00", "clinic.reports.send_monthly",
        NORMAL, "Sends each active doctor a report on the previous month.")
declare("review-requests", "review_request_at", "10:00", "clinic.reviews.send_requests",
        NORMAL, "Asks patients seen in the last 24 hours to review their visit.")
declare("review-reminders", "review_reminder_at", "10:30", "clinic.reviews.send_reminders",
        NORMAL, "Reminds patients once, 7 days after a review request, if they gave no review.",
        catch_up=SAME_DAY)
declare("retry-failed", "retry_sweep", "every 1h", "clinic.mail.sweeper.retry_failed",
        NORMAL, "Retries emails that failed for a passing reason.")
declare("no-shows", "no_show_sweep", "every 15m", "clinic.appointments.mark_no_shows",
        NORMAL, "Marks visits still booked well after their start as no-shows.")
declare("waitlist-holds", "waitlist_sweep", "every 1m", "clinic.waitlist.sweep",
        URGENT, "Ends waitlist holds that ran out and offers each slot to the next in line.")
declare("daily-stats", "daily_stats_at", "01:00", "clinic.stats.record_day",
        HOUSEKEEPING, "Records yesterday's figures for the dashboard's charts.")
declare("cleanup", "cleanup_at", "mon 02:00", "clinic.cleanup.run",
        HOUSEKEEPING, "Deletes old email bodies, expired exports, sessions and task records; "
        "archives appointments older than a year.",
        catch_up=SAME_DAY)


# -- the tick -------------------------------------------------------------------------------------


def tick(now=None, enqueue=None):
    """Enqueue every job whose latest due time at or before ``now`` is not yet claimed; returns
    ``[(name, due_at)]`` of those enqueued. ``enqueue(job, due_at)`` defaults to the Huey task
    ``run_job``. A job whose enqueue fails keeps its due time unclaimed for the next tick."""
    now = now or clock.now()
    enqueue = enqueue or _enqueue
    fired = []
    for job in list(JOBS):
        try:
            due = _claim(job, now, enqueue)
        except Exception:
            log.exception("scheduler: could not start %s", job.name)
            continue
        if due is not None:
            fired.append((job.name, due))
    return fired


def _claim(job, now, enqueue):
    """Claim ``job``'s latest due time and enqueue it; returns it, or None.

    1. Find the due time; nothing to do if the job's row already has it (or a later one).
    2. Decide whether it runs or is only recorded as skipped (``Job.fires``).
    3. Claim it with a conditional UPDATE: of several tickers, only one changes the row.
    4. The winner enqueues. If that fails, it gives the due time back for the next tick.
       (Not one transaction: Huey may run a task at once, and a job must not run inside it.)"""
    tz = clock.zone()
    due = job.schedule().previous(now, tz)
    state = models.JobState.get_or_none(models.JobState.name == job.name)
    if state is None:
        models.JobState.insert(name=job.name).on_conflict_ignore().execute()
        last_due = None
    else:
        last_due = state.last_due_at
    if last_due is not None and last_due >= due:
        return None
    fires = job.fires(due, now, tz, first=last_due is None)
    changes = {models.JobState.last_due_at: due}
    if not fires:
        why = "first start" if last_due is None else "the clinic was not running then"
        changes[models.JobState.last_result] = f"skipped the run due {_local(due)}: {why}"
    claimed = (models.JobState.update(changes)
               .where(models.JobState.name == job.name,
                      models.JobState.last_due_at.is_null() | (models.JobState.last_due_at < due))
               .execute())
    if claimed != 1 or not fires:
        return None
    try:
        enqueue(job, due)
    except Exception:
        (models.JobState.update(last_due_at=last_due)
         .where(models.JobState.name == job.name, models.JobState.last_due_at == due)
         .execute())
        raise
    log.info("scheduler: %s due %s enqueued", job.name, _local(due))
    return due


def _enqueue(job, due):
    run_job(job.name, due.isoformat(), priority=job.priority)


# -- the scheduler lease --------------------------------------------------------------------------
# Any number of workers may run with the scheduler on; one at a time holds the lease and enqueues
# the periodic tick. The holder renews it at each minute's check; when it stops (or dies), another
# takes over once the lease is LEASE_FOR old. Even two ticking at once would be harmless (the
# claims above), but one holder tells the admin which process schedules. Needs clocks in step.

LEASE = "scheduler-lease"  # the JobState row: last_result is the holder, last_started_at renewed
LEASE_FOR = timedelta(seconds=90)  # a minute's check plus slack


def hold_scheduler(holder, now=None):
    """Take or renew the scheduler lease for ``holder`` ("host pid N"); True if it holds it."""
    now = now or clock.now()
    state = models.JobState
    state.insert(name=LEASE).on_conflict_ignore().execute()
    return (state.update(last_result=holder, last_started_at=now)
            .where(state.name == LEASE,
                   (state.last_result == holder) | state.last_started_at.is_null()
                   | (state.last_started_at <= now - LEASE_FOR))
            .execute()) == 1


def release_scheduler(holder):
    """Give the lease up (a clean stop), so another worker takes over at its next check."""
    state = models.JobState
    (state.update(last_started_at=None)
     .where(state.name == LEASE, state.last_result == holder).execute())


def scheduler_lease(now=None):
    """``(holder, renewed_at)`` of a lease still valid at ``now``, or None."""
    now = now or clock.now()
    row = models.JobState.get_or_none(models.JobState.name == LEASE)
    if row is None or row.last_started_at is None or now - row.last_started_at >= LEASE_FOR:
        return None
    return row.last_result, row.last_started_at


# -- running --------------------------------------------------------------------------------------


def run(name, now=None, progress=None):
    """Run job ``name`` now, in this thread, and return what its function returned. Records the
    start, finish and a one-line result in JobState; an error is recorded and raised again.
    ``progress(done, total, what)`` is handed to job functions that report progress (the long
    ones: reports, clean-up), for `python run.py job run`."""
    job = get(name)
    now = now or clock.now()
    log.info("job %s started", job.name)
    started = time.monotonic()
    models.JobState.insert(name=job.name).on_conflict_ignore().execute()
    _record(job, last_started_at=now)
    function = job.resolve()
    extra = {}
    if progress is not None and "progress" in inspect.signature(function).parameters:
        extra["progress"] = progress
    try:
        result = function(now=now, **extra)
    except Exception as exc:
        _record(job, last_finished_at=_after(now, started),
                last_result=_short(f"failed: {type(exc).__name__}: {exc}"))
        raise
    _record(job, last_finished_at=_after(now, started), last_result=summary(result))
    log.info("job %s finished: %s", job.name, summary(result))
    return result


def _record(job, **fields):
    models.JobState.update(fields).where(models.JobState.name == job.name).execute()


def _after(now, started):
    return now + timedelta(seconds=time.monotonic() - started)


def summary(result):
    """A job's return value as one short line: ``{"sent": 3}`` reads "sent 3"."""
    if result is None:
        return "done"
    if isinstance(result, dict):
        text = ", ".join(f"{key} {value}" for key, value in result.items()) or "done"
    else:
        text = str(result)
    return _short(text)


def found_nothing(result):
    """Whether a job's result says it had nothing to do: a count of 0, or counts all 0."""
    if isinstance(result, dict):
        counts = list(result.values())
    else:
        counts = [result]
    return bool(counts) and all(isinstance(n, int) and not isinstance(n, bool) and n == 0
                                for n in counts)


def _short(text, limit=200):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- what the admin sees --------------------------------------------------------------------------


def listing(now=None, runs=5):
    """Each job with its schedule in plain words, its last run and its next ``runs`` due
    times (aware UTC), for `python run.py job list` and the admin's jobs page."""
    now = now or clock.now()
    tz = clock.zone()
    states = {s.name: s for s in models.JobState.select()}
    rows = []
    for job in JOBS:
        plan = job.schedule()
        state = states.get(job.name) or models.JobState(name=job.name)
        next_runs = plan.next(now, tz, runs)
        rows.append({
            "name": job.name,
            "help": job.help,
            "setting": "CLINIC_" + job.setting.upper(),
            "schedule": plan.describe(tz),
            "catch_up": job.describe_catch_up(),
            "priority": job.priority,
            "last_due_at": state.last_due_at,
            "last_started_at": state.last_started_at,
            "last_finished_at": state.last_finished_at,
            "last_result": state.last_result,
            "next_runs": next_runs,
            "next": _local(next_runs[0]) if next_runs else "",  # in words, for `job list`
            "last": state.last_result or "never run",
        })
    return rows


def _local(instant):
    return clock.local(instant).strftime("%Y-%m-%d %H:%M %Z")


def _day(instant, tz):
    return instant.astimezone(tz).date()


def _duration(delta):
    minutes = int(delta.total_seconds()) // 60
    if minutes % 1440 == 0:
        return f"{minutes // 1440} days" if minutes != 1440 else "a day"
    if minutes % 60 == 0:
        return f"{minutes // 60} hours" if minutes != 60 else "an hour"
    return f"{minutes} minutes"


# -- the tasks -------------------------------------------------------------------------------------
# One periodic task for every scheduled job: Huey's crontab knows no time zone and skips missed
# checks, so tick() decides what fell due (in the clinic's zone, caught up once after downtime)
# and enqueues run_job with each job's priority. Every minute is zone-free.


@huey.periodic_task(crontab(), priority=URGENT)
def scheduler_tick():
    tick()
    try:
        heartbeats.interrupt_orphans()  # runs whose process was killed: interrupted, retryable
    except Exception:
        log.exception("could not look for runs whose process is gone")
    try:
        heartbeats.interrupt_lost()  # runs whose task left the queue without running: the same
    except Exception:
        log.exception("could not look for runs whose task is lost")


@huey.task(context=True)
def run_job(name, due_at=None, task=None):
    """Run a scheduled job; ``due_at`` (ISO UTC, for the log) is the due time it was queued for.
    Its result goes on its TaskRun row for the jobs page. Returns nothing: Huey would keep
    every result."""
    result = run(name)
    if task is not None:
        models.TaskRun.update(result=summary(result), idle=found_nothing(result)).where(
            models.TaskRun.task_id == task.id).execute()
