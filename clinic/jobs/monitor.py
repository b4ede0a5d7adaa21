"""The jobs monitor: what the admin's jobs page and `python run.py job history` read of the runs
that clinic.jobs.runs records, and the few things an admin can do about one (run a job now, retry
a failed task, revoke a waiting one, prune old records).
"""

import logging
import math
import statistics
from collections import defaultdict
from datetime import timedelta

from huey.exceptions import HueyException
from huey.registry import Message

from clinic import clock, db, filters, i18n
from clinic.errors import Conflict, NotFound
from clinic.jobs import runs, scheduler
from clinic.models import TASK_RUN_STATES, JobState, TaskRecord, TaskRun
from huey_config import huey

log = logging.getLogger("clinic.jobs.monitor")

STALLED_AFTER = timedelta(minutes=2)  # no tick, or waiting tasks and none started, this long
WAITING = ("queued", "retrying")  # may still run: Revoke applies
RETRYABLE = ("failed", "interrupted")
STATS_DAYS = 7
KEEP = timedelta(days=30)


def run_for(task_id):
    run = TaskRun.get_or_none(TaskRun.task_id == str(task_id)[:64])
    if run is None:
        raise NotFound("No task has that id; it may have been cleaned up.")
    return run


def progress_of(run):
    """The progress record (clinic.jobs.progress) the task reports on, or None."""
    ids = [run.task_id] + ([run.progress_id] if run.progress_id else [])
    return TaskRecord.select().where(TaskRecord.task_id.in_(ids)).first()


def search(job="", state="", day_from="", day_to="", limit=25, offset=0, idle=True):
    """Task runs, newest first, filtered by job, state and clinic-local days (both included);
    without ``idle``, not the runs that found nothing to do. Raises Invalid (with the field)
    for a state or a date it does not know."""
    return filters.page(
        TaskRun.select(), TaskRun.queued_at, day_from, day_to,
        choices={"state": (state, TASK_RUN_STATES, "Choose a state from the list.")},
        where=[TaskRun.job == job if job else None, TaskRun.state == state if state else None,
               None if idle else ~TaskRun.idle],
        order=(TaskRun.queued_at.desc(), TaskRun.id.desc()), limit=limit, offset=offset)


def history(failed=False, limit=20):
    """The latest runs for `python run.py job history`, newest first."""
    return list(search(state="failed" if failed else "", limit=limit))


def job_names():
    """Every name the job filter offers: the scheduled jobs, then other tasks seen."""
    seen = {row[0] for row in TaskRun.select(TaskRun.job).distinct().tuples()}
    scheduled = [job.name for job in scheduler.JOBS]
    return scheduled + sorted(seen - set(scheduled))


def percentile(values, pct):
    """The nearest-rank percentile: the smallest value with ``pct`` % of values at or below."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def runtime_stats(now=None, days=STATS_DAYS):
    """Per job over the last ``days``: ``{"succeeded", "failed", "median", "p95"}``, the
    runtimes (seconds) being those of the successful runs."""
    since = (now or clock.now()) - timedelta(days=days)
    counts = defaultdict(lambda: {"succeeded": 0, "failed": 0})
    runtimes = defaultdict(list)
    rows = (TaskRun.select(TaskRun.job, TaskRun.state, TaskRun.runtime)
            .where(TaskRun.queued_at >= since, TaskRun.state.in_(("succeeded", "failed")))
            .tuples())
    for job, state, runtime in rows:
        counts[job][state] += 1
        if state == "succeeded" and runtime is not None:
            runtimes[job].append(runtime)
    return {job: {**count,
                  "median": statistics.median(runtimes[job]) if runtimes[job] else None,
                  "p95": percentile(runtimes[job], 95)}
            for job, count in counts.items()}


def overview(now=None):
    """Each scheduled job as scheduler.listing() gives it (schedule in words, last run, next five
    runs), with its counts and runtimes over the last week."""
    now = now or clock.now()
    stats = runtime_stats(now)
    empty = {"succeeded": 0, "failed": 0, "median": None, "p95": None}
    return [{**row, **stats.get(row["name"], empty)} for row in scheduler.listing(now, runs=5)]


def scheduler_holder(now=None):
    """Which process holds the scheduler ("host pid N"): the holder of the scheduler lease
    (clinic.jobs.scheduler), else the process that ran the last tick, else ""."""
    lease = scheduler.scheduler_lease(now)
    if lease is not None:
        return lease[0]
    beat = JobState.get_or_none(JobState.name == runs.HEARTBEAT)
    if beat is None or not beat.last_result.startswith("ticked by "):
        return ""
    return beat.last_result.removeprefix("ticked by ")


def last_tick():
    """When the scheduler last ticked (aware UTC), or None if it never has."""
    return JobState.started_at(runs.HEARTBEAT)


def banner(now=None):
    """Why background jobs look stopped, in plain words, or None. Cheap enough for every admin
    page: one row by key, one indexed row, and the queue's length only when tasks wait."""
    try:
        now = now or clock.now()
        ticked = last_tick()
        if ticked is not None and now - ticked > STALLED_AFTER:
            return f"Background jobs are not running since {_when(ticked, now)}."
        oldest = (TaskRun.select(TaskRun.queued_at).where(TaskRun.state == "queued")
                  .order_by(TaskRun.queued_at).limit(1).scalar())
        if oldest is None or now - oldest <= STALLED_AFTER:
            return None
        # A run whose task was lost (a process killed mid-task) stays queued: a worker that
        # started anything lately is not stopped.
        started_lately = TaskRun.select().where(
            TaskRun.started_at >= now - STALLED_AFTER).exists()
        if started_lately or huey.pending_count() == 0:
            return None
        return (f"Background jobs are not running: tasks have been waiting since "
                f"{_when(oldest, now)} and none has started.")
    except Exception:  # the banner must never break a page
        log.exception("could not check the background jobs")
        return None


def _when(instant, now):
    if clock.local(instant).date() == clock.local(now).date():
        return i18n.formatted(instant, "time")
    return i18n.formatted(instant, "short")


def format_runtime(seconds):
    """Seconds as people read them: 0.42 s, 12 s, 3 min 5 s, 1 h 2 min."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# -- acting ---------------------------------------------------------------------------------------


def run_now(name):
    """Queue scheduled job ``name`` now with its priority; returns the task id. NotFound for a
    name no job has."""
    job = scheduler.get(name)
    task = scheduler.run_job.s(job.name, priority=job.priority)
    huey.enqueue(task)
    return task.id


def retry(task_id):
    """Queue a failed (or interrupted) task again: the same task, arguments and id, so its row
    counts the new attempt.

    1. Check it can run again: its arguments were kept, and this clinic still has the task.
    2. Claim it with a conditional UPDATE (failed -> queued): of two clicks, one queues it.
    3. Queue it; if that fails, give the state back."""
    run = run_for(task_id)
    if run.state not in RETRYABLE:
        raise Conflict(f"Only a failed task can be retried; its state is {run.state}.")
    if run.call is None:
        raise Conflict("This task's arguments were not kept, so it cannot be run again.")
    try:
        # Huey's own way from a name to its task: the message a worker would read from the queue.
        task = huey.deserialize_task(huey.serializer.serialize(Message(
            id=run.task_id, name=run.task, args=tuple(run.call["args"]),
            kwargs=dict(run.call["kwargs"]), priority=run.priority)))
    except HueyException:
        raise Conflict(f"This clinic has no task {run.task} any more.") from None
    claimed = (TaskRun.update(state="queued")
               .where(TaskRun.task_id == run.task_id, TaskRun.state == run.state).execute())
    if claimed != 1:
        raise Conflict("Someone else retried or changed this task a moment ago.")
    try:
        huey.enqueue(task)
    except Exception:
        TaskRun.update(state=run.state).where(TaskRun.task_id == run.task_id).execute()
        raise
    return task.id


def revoke(task_id, now=None):
    """Make a task that is still waiting never run. Huey skips a revoked task when a worker
    takes it from the queue, which then records it as revoked; the row says so at once."""
    run = run_for(task_id)
    with db.database.atomic():
        claimed = (TaskRun.update(state="revoked", finished_at=now or clock.now())
                   .where(TaskRun.task_id == run.task_id, TaskRun.state.in_(WAITING))
                   .execute())
        if claimed != 1:
            raise Conflict(f"Only a waiting task can be revoked; its state is "
                           f"{TaskRun.get_by_id(run.id).state}.")
        # revoke_once: Huey forgets the revocation once it has skipped the task.
        huey.revoke_by_id(run.task_id, revoke_once=True)


def prune(now=None, keep=KEEP, batch=500):
    """Delete runs queued more than ``keep`` ago, ``batch`` rows per transaction; returns how
    many. For the weekly clean-up job (clinic/cleanup.py)."""
    cutoff = (now or clock.now()) - keep
    deleted = 0
    while True:
        with db.database.atomic():
            ids = [r.id for r in TaskRun.select(TaskRun.id).where(TaskRun.queued_at < cutoff)
                   .limit(batch)]
            if not ids:
                return deleted
            deleted += TaskRun.delete().where(TaskRun.id.in_(ids)).execute()
