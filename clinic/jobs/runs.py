"""The record of every background task: Huey emits a signal at each step of a task's life, in
the thread doing that step, and record() writes the step to the task's one TaskRun row there and
then, with one statement: an insert as it is queued, an update as it starts and as it ends.
Nothing waits in memory to be written, so whoever reads the rows next sees every step a task has
taken, and a process killed with SIGKILL loses none of them.

Where the signals fire, and so which connection a handler writes on (every handler uses
db.connection(): this thread's own if it has one open, else one opened for the write):
- ``enqueued`` fires in the thread that queues the task (a web request, a task, Huey's
  scheduler), before the task reaches the queue: its row exists before any worker can start it.
  When that thread is in a transaction, the row is written in a savepoint of it.
- ``executing`` fires in the worker before the pre_execute hook takes the task's connection
  (clinic.jobs.queue), ``complete`` and ``retrying`` after post_execute gave it back; the others
  while the task has it.
A handler that fails is logged and forgotten: recording must never break an enqueue or a task.

A task that runs again keeps its task id (Huey's retries; Retry re-queues the same id), so it
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
import os
import re
import socket
import sys
import traceback as tb

from huey import signals as S
from peewee import Case

from clinic import clock, db
from clinic.models import JobState, TaskRun
from huey_config import huey

log = logging.getLogger("clinic.jobs.runs")

HOLDER = f"{socket.gethostname()} pid {os.getpid()}"  # this process, as health reports it
HEARTBEAT = "scheduler"  # the JobState row the scheduler's tick keeps fresh
TICK = "scheduler_tick"  # the Huey task that ticks (clinic.jobs.scheduler)
ERROR_CHARS = 1000
TRACEBACK_CHARS = 20_000  # the end of a traceback says most; the start is cut
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


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
