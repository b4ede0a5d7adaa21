"""The jobs monitor: every background task, recorded from Huey's signals into TaskRun, for the
admin's jobs page and `python run.py job history`; and the few things an admin can do about one
(run a job now, retry a failed task, revoke a waiting one).

Three sections, each using the ones above it:
1. Recording runs: Huey emits a signal at each step of a task's life (huey/api.py), in the
   thread doing that step, and the handler writes the step to the task's one TaskRun row there
   and then, with one statement: an insert as it is queued, an update as it starts and as it
   ends. Nothing waits in memory to be written, so whoever reads the rows next sees every step
   a task has taken, and a process killed with SIGKILL loses none of them.
2. Process heartbeats: each process that runs tasks keeps a JobState row of its own, so that
   runs left "running" by a process that is gone, and runs whose task left the queue, can be
   marked interrupted, with Retry.
3. Reading and acting: the jobs page's queries, the banner, Run now, Retry, Revoke, prune.

Where the signals fire, and so which connection a handler writes on (every handler uses
db.connection(): this thread's own if it has one open, else one opened for the write):
- ``enqueued`` fires in the thread that queues the task (a web request, a task, Huey's
  scheduler), before the task reaches the queue: its row exists before any worker can start it.
  When that thread is in a transaction, the row is written in a savepoint of it.
- ``executing`` fires in the worker before the pre_execute hook takes the task's connection
  (clinic/tasks.py), ``complete`` and ``retrying`` after post_execute gave it back; the others
  while the task has it.
A handler that fails is logged and forgotten: recording must never break an enqueue or a task.

A task that runs again keeps its task id (Huey's retries; Retry here re-queues the same id), so it
keeps its row: ``attempt`` counts its runs and the state is that of the latest. The last error
stays on the row after a later attempt succeeds: it tells why the retry was needed.

The scheduler's tick runs every minute: it is recorded as a heartbeat (the JobState row named
``scheduler``), which the banner reads, and as a TaskRun row only when it fails.
"""

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import math
import os
import re
import socket
import statistics
import sys
import threading
import traceback as tb
from collections import defaultdict
from datetime import timedelta

from huey import signals as S
from huey.exceptions import HueyException
from huey.registry import Message
from peewee import Case

from clinic import clock, db, jobs
from clinic.errors import Conflict, NotFound, check
from clinic.models import TASK_RUN_STATES, JobState, TaskRecord, TaskRun
from huey_config import huey

log = logging.getLogger("clinic.monitor")

HOLDER = f"{socket.gethostname()} pid {os.getpid()}"  # this process, as health reports it
HEARTBEAT = "scheduler"  # the JobState row the scheduler's tick keeps fresh
TICK = "scheduler_tick"  # the Huey task that ticks (clinic/tasks.py)
STALLED_AFTER = timedelta(minutes=2)  # no tick, or waiting tasks and none started, this long
WAITING = ("queued", "retrying")  # may still run: Revoke applies
RETRYABLE = ("failed", "interrupted")
ERROR_CHARS = 1000
TRACEBACK_CHARS = 20_000  # the end of a traceback says most; the start is cut
STATS_DAYS = 7
KEEP = timedelta(days=30)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


# == 1. Recording runs ===========================================================================

# The tasks this process is running now: task id -> the instant it started. The runtime at its
# end is counted from here, and interrupt_orphans tells this process's runs from those of a
# process that had the same pid before by it.
running = {}

HOST = socket.gethostname()


def host_name():
    """This machine, as TaskRun.worker holds it (100 characters): a longer name is cut, with a
    digest of the whole, so two long names alike at the start stay apart."""
    if len(HOST) <= 80:
        return HOST
    return f"{HOST[:70]}~{hashlib.sha256(HOST.encode()).hexdigest()[:9]}"


def process_name():
    """This process, as a run records who ran it: "host pid N" (the pid asked anew: a forked
    child is another process)."""
    return f"{host_name()} pid {os.getpid()}"


def record(signal, task, *args):
    """Write what ``signal`` says about ``task`` to its row, now, in this thread. Never raises."""
    try:
        at = clock.now()
        with db.connection(), _savepoint():
            _HANDLERS[signal](task, at, *args)
    except Exception:
        log.exception("could not record %s of task %s %s", signal, task.name, task.id)


def _savepoint():
    """A savepoint when the caller is in a transaction (on PostgreSQL a failed statement would
    abort the caller's whole transaction); otherwise nothing: one statement commits itself."""
    return db.database.atomic() if db.database.in_transaction() else contextlib.nullcontext()


def _queued(task, at):
    if task.name == TICK:
        return
    # A row already there is the same task queued again (Huey's retries, Retry): it keeps its
    # state, which says so already ("retrying", "queued"); a "queued" never reopens a run.
    TaskRun.insert(**_new(task, at)).on_conflict_ignore().execute()


def _started(task, at):
    running[task.id] = at
    if task.name == TICK:
        set_state(HEARTBEAT, last_started_at=at)
        return
    worker = process_name()
    if not _update(task, state="running", started_at=at, finished_at=None, runtime=None,
                   attempt=TaskRun.attempt + 1, worker=worker):
        _insert(task, at, state="running", started_at=at, attempt=1, worker=worker)


def _finished(task, at, state, error="", traceback=None):
    started = running.pop(task.id, None)
    if task.name == TICK:
        set_state(HEARTBEAT, last_finished_at=at, last_result=f"ticked by {HOLDER}"
                  if state == "succeeded" else _cut(f"{state}: {error}", 200))
        if state == "succeeded":
            return
    fields = {"state": state, "finished_at": at, "runtime": None}
    if started is not None and state not in ("revoked", "expired"):
        fields["runtime"] = max(0.0, (at - started).total_seconds())
    if error:
        fields["error"] = error
    if traceback is not None:
        fields["traceback"] = traceback
    if not _update(task, **fields):
        _insert(task, at, **fields)


def _failed(task, at, exc):
    _finished(task, at, "failed", _describe(exc), _traceback(exc))


ASKED_AGAIN = "The task asked to be run again."


def _retrying(task, at):
    running.pop(task.id, None)
    # The error that made it retry stays; a task that raised RetryTask has none, so says so.
    error = Case(None, [(TaskRun.state.in_(("failed", "cancelled")), TaskRun.error)],
                 ASKED_AGAIN)
    if not _update(task, state="retrying", error=error):
        _insert(task, at, state="retrying", error=ASKED_AGAIN)


def _finishing(state, error=""):
    return lambda task, at: _finished(task, at, state, error)


_HANDLERS = {
    S.SIGNAL_ENQUEUED: _queued,
    S.SIGNAL_SCHEDULED: _queued,
    S.SIGNAL_EXECUTING: _started,
    S.SIGNAL_COMPLETE: _finishing("succeeded"),
    S.SIGNAL_ERROR: _failed,
    S.SIGNAL_RETRYING: _retrying,
    S.SIGNAL_REVOKED: _finishing("revoked"),
    S.SIGNAL_EXPIRED: _finishing("expired", "Not run: it waited longer than its expiry allows."),
    S.SIGNAL_CANCELED: _finishing("cancelled", "Cancelled before it finished."),
    S.SIGNAL_INTERRUPTED: _finishing("interrupted",
                                     "The clinic stopped while this task was running."),
    S.SIGNAL_LOCKED: _finishing("failed", "Not run: another run of this task held its lock."),
    S.SIGNAL_TIMEOUT: lambda task, at: _finished(
        task, at, "failed", f"Stopped: it ran longer than its {task.timeout} s time limit."),
    S.SIGNAL_RATE_LIMITED: _finishing(
        "failed", "Not run: too many runs of this task in a short time."),
}
SIGNALS = tuple(_HANDLERS)  # the signals record() is connected to

huey.signal(*SIGNALS)(record)


def _update(task, **fields):
    """Change the task's row; whether it had one."""
    return TaskRun.update(**fields).where(TaskRun.task_id == task.id).execute()


def _insert(task, at, **fields):
    """The row of a task whose "queued" was not recorded (its write failed, or the process that
    queued it records nothing), made at a later step."""
    TaskRun.insert(**{**_new(task, at), **fields}).on_conflict_ignore().execute()


def _new(task, at):
    named = _named_arguments(task)
    return {"task_id": task.id, "job": job_name(task), "task": _registry_name(task),
            "summary": summarize(task, named), "call": _call(task), "priority": task.priority,
            "progress_id": _progress_id(task, named), "state": "queued", "queued_at": at}


def set_state(name, **fields):
    """Write ``fields`` into the JobState row ``name``, made if there is none."""
    JobState.insert(name=name, **fields).on_conflict(
        conflict_target=[JobState.name],
        update={getattr(JobState, field): value for field, value in fields.items()}).execute()


# -- what a task is, for its row --------------------------------------------------------------


def job_name(task):
    """The scheduled job's name for run_job, "scheduler" for the tick, else the task's name."""
    if task.name == "run_job":
        name = task.args[0] if task.args else task.kwargs.get("name")
        return _cut(str(name), 80)
    if task.name == TICK:
        return HEARTBEAT
    return _cut(task.name, 80)


def _registry_name(task):
    """Huey's name for the task's class, as its registry knows it (module and task name)."""
    return f"{type(task).__module__}.{type(task).__name__}"


@functools.cache
def _parameters_of(module, name):
    wrapper = getattr(sys.modules.get(module), name, None)
    func = getattr(wrapper, "func", None)
    try:
        return list(inspect.signature(func).parameters) if func else []
    except (TypeError, ValueError):
        return []


def _parameters(task):
    """The names of the task function's parameters, for ``name=value`` in the summary."""
    return _parameters_of(type(task).__module__, task.name)


def _named_arguments(task):
    names = _parameters(task)
    pairs = [(names[i] if i < len(names) else f"arg{i + 1}", value)
             for i, value in enumerate(task.args)]
    return pairs + list(task.kwargs.items())


def summarize(task, named=None):
    """The task's arguments in a line, ``ids=[12, 13], name=daily-reminders``. Clinic tasks take
    ids by design; anything that does not look like an id or a name is shown only by its kind,
    so no patient's details reach the jobs page. ``named``: _named_arguments(task), if known."""
    if named is None:
        named = _named_arguments(task)
    return _cut(", ".join(f"{name}={_shown(value)}" for name, value in named), 300)


def _shown(value):
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, str):
        return value if _IDENTIFIER.fullmatch(value) else f"<text, {len(value)} characters>"
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            shown = ", ".join(str(item) for item in items[:10])
            more = f", … {len(items)} in all" if len(items) > 10 else ""
            return f"[{shown}{more}]"
        return f"<{len(items)} items>"
    if isinstance(value, dict):
        return f"<{len(value)} entries>"
    return f"<{type(value).__name__}>"


def _call(task):
    """The arguments, so Retry can queue the task again; None when they are not JSON."""
    call = {"args": list(task.args), "kwargs": dict(task.kwargs)}
    try:
        json.dumps(call)
    except (TypeError, ValueError):
        return None
    return call


def _progress_id(task, named):
    for name, value in named:
        if name == "task_id" and isinstance(value, str):
            return value[:64]
    return ""


def _describe(exc):
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _cut(text, ERROR_CHARS)


def _traceback(exc):
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > TRACEBACK_CHARS:
        text = "… (the start is cut)\n" + text[-TRACEBACK_CHARS:]
    return text


def _cut(text, limit):
    return text if len(text) <= limit else text[: limit - 1] + "…"


# == 2. Process heartbeats, and runs left behind =================================================

ORPHANED = ("The process running this task stopped before it finished (it was killed, or the "
            "machine restarted). Retry runs it again.")

# Every process that runs tasks says so in a JobState row of its own ("worker <digest>") as it
# starts and every BEAT_EVERY, until its workers have stopped, and takes the row away then. A
# process of another machine whose row has not changed for GONE_AFTER, as this process has
# watched it (two machines' clocks may differ; one machine's own readings do not), is taken to
# be gone. Rows BEATS_KEPT old are deleted.
BEAT_EVERY = timedelta(minutes=1)
GONE_AFTER = timedelta(minutes=5)
BEATS_KEPT = timedelta(days=1)
BEAT_PREFIX = "worker "
watched = {}  # beat row name -> (its last_started_at, when this process first saw that value)


def beat_name(worker):
    """The JobState row of the process ``worker`` ("host pid N"): names are 60 characters at
    most, and a host's name can be longer."""
    return BEAT_PREFIX + hashlib.sha256(worker.encode()).hexdigest()[:32]


def beat(now=None):
    """Say that this process still runs tasks (as a process that runs jobs starts, and every
    BEAT_EVERY after): so that another machine can tell its runs from those of a process that
    is gone. The row holds "host pid N" and, a line each, the ids of the tasks it runs."""
    worker = process_name()
    set_state(beat_name(worker), last_started_at=now or clock.now(),
              last_result="\n".join([worker, *sorted(running.copy())]))


def stop_beating():
    """This process runs no more tasks: its workers have stopped, and the runs of any task
    still running then were marked interrupted (queue.ClinicConsumer.stop)."""
    JobState.delete().where(JobState.name == beat_name(process_name())).execute()


def interrupt_orphans(now=None):
    """Mark interrupted the runs left "running" by a process that is gone: a process killed
    mid-task (SIGKILL, the machine losing power) sends no signal, and its runs would show as
    running for ever, with no Retry. A process of this machine is gone when its pid is; one of
    another machine when it has not said it runs (beat()) for GONE_AFTER, as watched from here.
    Called as a process that runs jobs starts, and by the scheduler's tick every minute.
    Returns how many it marked."""
    now = now or clock.now()
    beats, stale = {}, False
    for name, last in (JobState.select(JobState.name, JobState.last_started_at)
                       .where(JobState.name.startswith(BEAT_PREFIX)).tuples()):
        stale = stale or now - last > BEATS_KEPT
        seen = watched.get(name)
        if seen is None or seen[0] != last:
            watched[name] = seen = (last, now)
        beats[name] = seen[1]  # unchanged since then
    for name in list(watched):
        if name not in beats:
            del watched[name]
    orphans = [run_id for run_id, task_id, worker in
               TaskRun.select(TaskRun.id, TaskRun.task_id, TaskRun.worker)
               .where(TaskRun.state == "running").tuples()
               if _gone(worker, task_id, beats, now)]
    if orphans:
        (TaskRun.update(state="interrupted", finished_at=now, runtime=None, error=ORPHANED)
         .where(TaskRun.id.in_(orphans), TaskRun.state == "running").execute())
        log.warning("marked %d run(s) interrupted: the process running them is gone",
                    len(orphans))
    if stale:  # after the runs: a process gone for a day has had its runs marked above
        JobState.delete().where(JobState.name.startswith(BEAT_PREFIX),
                                JobState.last_started_at < now - BEATS_KEPT).execute()
    return len(orphans)


def _gone(worker, task_id, beats, now):
    host, _, pid = worker.rpartition(" pid ")
    if not host or not pid.isdigit():
        return False  # recorded before runs said who ran them
    if host != host_name():
        # Another machine's: gone when its process's beat has not changed for GONE_AFTER. No
        # row at all: a process of a version before beats, or one whose workers stopped (its
        # runs were marked then); either way not known to be gone.
        unchanged_since = beats.get(beat_name(worker))
        return unchanged_since is not None and now - unchanged_since > GONE_AFTER
    pid = int(pid)
    if pid == os.getpid():  # this process, or one before it that had the same pid
        return task_id not in running
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, as another user's
    return False  # it exists (or another process took its pid: then this run waits for it)


LOST_AFTER = timedelta(minutes=10)  # queued this long and not in the queue: maybe lost...
CONFIRM_AFTER = timedelta(minutes=2)  # ...and lost once still so at looks this far apart
LOST = ("Its task is no longer in the queue (the queue's storage was emptied, or a process "
        "stopped as it took the task), so it would never run. Retry queues it again.")


class Looks:
    """This process's looks for lost tasks: when it last looked, and since when each task has
    been missing at every look, without a break."""

    def __init__(self):
        self.last = None
        self.missing = {}  # task id -> when the looks began to find it missing
        self.lock = threading.Lock()


looks = Looks()


def interrupt_lost(now=None):
    """Mark interrupted the runs that wait for a task no longer in the queue: recorded "queued"
    for LOST_AFTER, their task neither scheduled nor waiting nor running in a process that says
    so (beat()), at every look of this process for CONFIRM_AFTER. One look is not enough: a
    worker takes a task from the queue a moment before its run says "running", and the
    scheduler moves a task from its schedule to the queue. Looks more than CONFIRM_AFTER apart
    do not chain (the tick may have run in other processes meanwhile). Called by the scheduler's
    tick every minute. Returns how many it marked."""
    now = now or clock.now()
    with looks.lock:
        if looks.last is None or not timedelta(0) <= now - looks.last <= CONFIRM_AFTER:
            looks.missing.clear()
        looks.last = now
        old = (TaskRun.select(TaskRun.task_id)
               .where(TaskRun.state == "queued", TaskRun.queued_at < now - LOST_AFTER))
        if not old.exists():  # nearly always: the queue is not read
            looks.missing.clear()
            return 0
        # Where a task can be, then the runs: a run still queued after its task was nowhere.
        present = _queued_ids() | _running_ids()
        absent = {task_id for task_id, in old.tuples()} - present
        for task_id in list(looks.missing):
            if task_id not in absent:
                del looks.missing[task_id]
        lost = [task_id for task_id in absent
                if now - looks.missing.setdefault(task_id, now) >= CONFIRM_AFTER]
        for lo in range(0, len(lost), 500):
            (TaskRun.update(state="interrupted", finished_at=now, runtime=None, error=LOST)
             .where(TaskRun.task_id.in_(lost[lo:lo + 500]), TaskRun.state == "queued")
             .execute())
        for task_id in lost:
            del looks.missing[task_id]
    if lost:
        log.warning("marked %d run(s) interrupted: their tasks are no longer in the queue",
                    len(lost))
    return len(lost)


def _queued_ids():
    """The ids of the tasks in the schedule or waiting in the queue (the schedule first: the
    scheduler moves tasks from it to the queue). Read without the task registry: a task of a
    name this process does not know is still there. An item that cannot be read fails the
    look: left out, its task would look lost."""
    storage, serializer = huey.storage, huey.serializer
    items = [*storage.scheduled_items(), *storage.enqueued_items()]
    return {serializer.deserialize(data).id for data in items}


def _running_ids():
    """The tasks running here, and those the processes that beat() say they run: a run whose
    "running" was never written (its record failed) is still not lost."""
    ids = set(running.copy())
    for (held,) in (JobState.select(JobState.last_result)
                    .where(JobState.name.startswith(BEAT_PREFIX)).tuples()):
        ids.update(held.split("\n")[1:])
    return ids


# == 3. Reading and acting ========================================================================


def run_for(task_id):
    run = TaskRun.get_or_none(TaskRun.task_id == str(task_id)[:64])
    if run is None:
        raise NotFound("No task has that id; it may have been cleaned up.")
    return run


def progress_of(run):
    """The progress record (clinic.progress) the task reports on, or None."""
    ids = [run.task_id] + ([run.progress_id] if run.progress_id else [])
    return TaskRecord.select().where(TaskRecord.task_id.in_(ids)).first()


def search(job="", state="", day_from="", day_to="", limit=25, offset=0):
    """Task runs, newest first, filtered by job, state and clinic-local days (both included).
    Raises Invalid (with the field) for a state or a date it does not know."""
    errors = {}
    if state and state not in TASK_RUN_STATES:
        errors["state"] = "Choose a state from the list."
    since, before = clock.days_between(day_from, day_to, errors)
    check(errors)
    query = TaskRun.select()
    if job:
        query = query.where(TaskRun.job == job)
    if state:
        query = query.where(TaskRun.state == state)
    if since:
        query = query.where(TaskRun.queued_at >= since)
    if before:
        query = query.where(TaskRun.queued_at < before)
    return query.order_by(TaskRun.queued_at.desc(), TaskRun.id.desc()).limit(limit).offset(offset)


def history(failed=False, limit=20):
    """The latest runs for `python run.py job history`, newest first."""
    return list(search(state="failed" if failed else "", limit=limit))


def job_names():
    """Every name the job filter offers: the scheduled jobs, then other tasks seen."""
    seen = {row[0] for row in TaskRun.select(TaskRun.job).distinct().tuples()}
    scheduled = [job.name for job in jobs.JOBS]
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
    """Each scheduled job as clinic.jobs.listing() gives it (schedule in words, last run, next
    five runs), with its counts and runtimes over the last week."""
    now = now or clock.now()
    stats = runtime_stats(now)
    empty = {"succeeded": 0, "failed": 0, "median": None, "p95": None}
    return [{**row, **stats.get(row["name"], empty)} for row in jobs.listing(now, runs=5)]


def scheduler_holder(now=None):
    """Which process holds the scheduler ("host pid N"): the holder of the scheduler lease
    (clinic.jobs), else the process that ran the last tick, else ""."""
    lease = jobs.scheduler_lease(now)
    if lease is not None:
        return lease[0]
    beat = JobState.get_or_none(JobState.name == HEARTBEAT)
    if beat is None or not beat.last_result.startswith("ticked by "):
        return ""
    return beat.last_result.removeprefix("ticked by ")


def last_tick():
    """When the scheduler last ticked (aware UTC), or None if it never has."""
    return JobState.started_at(HEARTBEAT)


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
    local = clock.local(instant)
    if local.date() == clock.local(now).date():
        return local.strftime("%H:%M")
    return local.strftime("%a %d %b, %H:%M")


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
    from clinic import tasks  # tasks imports this module

    job = jobs.get(name)
    task = tasks.run_job.s(job.name, priority=job.priority)
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
