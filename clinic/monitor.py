"""The jobs monitor: every background task, recorded from Huey's signals into TaskRun, for the
admin's jobs page and `python run.py job history`; and the few things an admin can do about one
(run a job now, retry a failed task, revoke a waiting one).

Huey emits a signal at each step of a task's life (huey/api.py), in the thread doing that step: a
web request queueing a confirmation, a worker starting or finishing a task, the scheduler. The
handler writes nothing there: it notes the signal, the task and the instant (clock.now(), so
runtimes are those of the real start and finish) in this process's buffer and returns. One
writer thread per process applies what is buffered, in the order it came, in one transaction,
after letting a batch gather for a few milliseconds (at once when it is large or someone waits
in flush()). A task's path pays no database write and waits for no database lock; the rows are
a few milliseconds behind.

What that means for readers and for stopping:
- A page or command that reads TaskRun or the heartbeat calls flush() first: it waits until
  everything buffered before the call is written. The process flushes when it stops (clinic/
  server.py) and at exit.
- A process killed with SIGKILL (or the machine losing power) loses the last few milliseconds of
  these records (more only if the database was locked for longer: the writer waits for it):
  only the jobs page's account of them. The work itself is not lost
  with them: emails, appointments and reports are rows in the outbox and the tables, written by
  the tasks in their own transactions.
- In Huey's immediate mode (tasks run inline, maybe inside the caller's transaction) each signal
  is written at once in the caller's thread, in a savepoint of its transaction if it has one.
- Each process has its own writer. Within a process a task's rows follow its signals in order;
  across processes (a web process queues, a worker runs) the queueing may be written after the
  run: a late "queued" never undoes a run that started after it was queued.

A handler or a batch that fails is logged and forgotten: recording must never break a task. A
failed batch is retried task by task, so one bad record costs only its own task's.

A task that runs again keeps its task id (Huey's retries; Retry here re-queues the same id), so it
keeps its row: ``attempt`` counts its runs and the state is that of the latest. The last error
stays on the row after a later attempt succeeds: it tells why the retry was needed.

The scheduler's tick runs every minute: it is recorded as a heartbeat (the JobState row named
``scheduler``), which the banner reads, and as a TaskRun row only when it fails.
"""

import atexit
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import math
import operator
import os
import re
import socket
import statistics
import sys
import threading
import traceback as tb
from collections import defaultdict, namedtuple
from datetime import UTC, timedelta

from huey import signals as S
from huey.exceptions import HueyException

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
WRITE_EVERY = 0.005  # seconds: the writer waits this long for a batch to gather...
BATCH = 500  # ...unless this many events wait; also the rows in one statement
FLUSH_TIMEOUT = 10.0  # seconds; the database's own lock timeout


# -- recording ------------------------------------------------------------------------------------

# One signal as it happened: ``database`` is the one the models were bound to then, so that
# events of a database since replaced (tests make one per test) are dropped, not written to the
# next one.
Event = namedtuple("Event", "signal task args at database")


def event(signal, task, *args):
    """The signal as it happens now, for write()."""
    return Event(signal, task, args, clock.now(), db.database.obj)


# The tasks this process is running now, by id: the one account that is never behind (the rows
# are a few milliseconds behind), for telling this process's runs from those of a process that
# had the same pid before (interrupt_orphans).
_running_here = set()


def _record(signal, task, *args):
    try:
        if signal in (S.SIGNAL_ENQUEUED, S.SIGNAL_SCHEDULED) and task.name == TICK:
            return
        if signal == S.SIGNAL_EXECUTING:
            _running_here.add(task.id)
        elif signal in _ENDED:
            _running_here.discard(task.id)
        if huey.immediate:
            write([event(signal, task, *args)])
        else:
            _writer.add(event(signal, task, *args))
    except Exception:
        log.exception("could not record %s of task %s %s", signal, task.name, task.id)


class Writer:
    """The buffer the signal handlers append to, and the thread that writes it (started by the
    first event). Two conditions on one lock: the writer waits for work, flush() for the writer."""

    def __init__(self):
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._events = []
        self._added = self._written = self._waiting = 0
        self._thread = None

    def add(self, item):
        with self._lock:
            self._events.append(item)
            self._added += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clinic-monitor",
                                                daemon=True)
                self._thread.start()
            if len(self._events) in (1, BATCH):  # the writer waits for the first, or for many
                self._work.notify()

    def flush(self, timeout=FLUSH_TIMEOUT):
        """Wait until every event added before this call is written (or given up on); False
        if that took longer than ``timeout`` seconds."""
        with self._lock:
            target = self._added
            if self._written >= target:
                return True
            self._waiting += 1
            self._work.notify()
            try:
                return self._done.wait_for(lambda: self._written >= target, timeout)
            finally:
                self._waiting -= 1

    def _run(self):
        # The writer keeps one connection open, on the database the models are bound to; a
        # batch that fails closes it, so a broken connection is not used again.
        database = None
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._events)
                # Let the batch gather: a task's queueing, start and end are often one write,
                # made after its start rather than in the middle of it.
                self._work.wait_for(lambda: len(self._events) >= BATCH or self._waiting,
                                    WRITE_EVERY)
                events, self._events = self._events, []
            try:
                if database is not db.database.obj:
                    if database is not None:
                        _drop(database)
                    database = db.database.obj
                database.connect(reuse_if_open=True)
                if not write(events):
                    _drop(database)
            except Exception:
                log.exception("could not record %d task signals", len(events))
                if database is not None:
                    _drop(database)
            finally:
                with self._lock:
                    self._written += len(events)
                    self._done.notify_all()

    def _forget(self):
        """In a forked child: the parent's thread and lock are not ours."""
        self.__init__()


def _drop(database):
    """Close this thread's connection to ``database``, whatever state it is in."""
    try:
        database.close()
    except Exception:  # a transaction left open, a connection already gone: forget it
        database.dispose()


_writer = Writer()
os.register_at_fork(after_in_child=_writer._forget)


def flush(timeout=FLUSH_TIMEOUT):
    """Wait until this process's writer has written every task signal that came before the call;
    for whoever reads TaskRun or the heartbeat next. False if it took more than ``timeout`` s."""
    return _writer.flush(timeout)


atexit.register(flush)


@contextlib.contextmanager
def _transaction(database):
    """A transaction (a savepoint in the caller's) on this thread's connection to ``database``,
    opened (and closed after) if it has none. On the database object, not the proxy: a proxy
    pointed elsewhere meanwhile (tests) would end another database's transaction."""
    if database.is_closed():
        with database.connection_context(), database.atomic():
            yield
    else:
        with database.atomic():
            yield


def write(events):
    """Apply ``events`` in order in one transaction (a savepoint inside the caller's); if that
    fails, each task's events in a transaction of their own. Never raises: what cannot be
    written is logged, and the answer is False."""
    database = db.database.obj
    events = [e for e in events if e.database is database]
    if not events:
        return True
    try:
        with _transaction(database):
            _apply(events)
        return True
    except Exception:
        by_task = defaultdict(list)
        for e in events:
            by_task[e.task.id].append(e)
        if len(by_task) == 1:
            _failed_to_record(events)
            return False
        for task_events in by_task.values():
            try:
                with _transaction(database):
                    _apply(task_events)
            except Exception:
                _failed_to_record(task_events)
        return False


def _failed_to_record(events):
    task = events[0].task
    log.exception("could not record %s of task %s %s", ", ".join(e.signal for e in events),
                  task.name, task.id)


BATCH_LOCK = 7_154_201_003  # PostgreSQL's advisory lock: one process's batch at a time


class _Batch:
    """The TaskRun rows (as dicts) and the heartbeat that a batch's events change: read at once
    (locked on PostgreSQL; SQLite's IMMEDIATE transaction locks already), changed in memory in
    the order the signals came, written at the end: new rows in one statement, changed rows in
    another. The writes are plain SQL with many parameter rows: peewee builds its SQL once per
    statement, which cost more than the database's work for a batch of single-row updates."""

    def __init__(self, task_ids):
        self.rows = {}
        if db.is_postgres():
            # FOR UPDATE locks no row that does not exist yet: a web process's "queued" and a
            # worker's "succeeded" for a new task would both insert, and one be dropped.
            db.database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (BATCH_LOCK,))
        for chunk in _chunks(sorted(task_ids)):
            cursor = db.database.execute_sql(_select(len(chunk)), chunk)
            for values in cursor.fetchall():
                row = {field.name: field.python_value(value)
                       for field, value in zip(_SELECTED, values, strict=True)}
                self.rows[row["task_id"]] = {**row, "traceback": None}  # None: left as it is
        self.loaded = {key: dict(row) for key, row in self.rows.items()}
        self.beat = {}

    def write(self):
        new = [row for key, row in self.rows.items() if key not in self.loaded]
        changed = [row for key, row in self.rows.items()
                   if key in self.loaded and row != self.loaded[key]]
        cursor = db.database.cursor()
        if new:
            cursor.executemany(_sql(_INSERT), [_INSERTED(row) for row in new])
        if changed:
            cursor.executemany(_sql(_UPDATE), [_CHANGED(row) for row in changed])
        if self.beat:
            _set_state(HEARTBEAT, **self.beat)


def _quoted(field):
    return f'"{field.column_name}"'


_COLUMNS = [field for field in TaskRun._meta.sorted_fields if field.name != "id"]
_READ = [TaskRun.state, TaskRun.queued_at, TaskRun.started_at, TaskRun.finished_at,
         TaskRun.runtime, TaskRun.attempt, TaskRun.error, TaskRun.worker]
# Not read: the traceback (up to 20,000 characters), which is only ever replaced; None keeps it.
_CHANGING = _READ + [TaskRun.traceback]
_INSERT = (f'INSERT INTO "{TaskRun._meta.table_name}" '
           f'({", ".join(_quoted(f) for f in _COLUMNS)}) '
           f'VALUES ({", ".join("?" for _ in _COLUMNS)}) ON CONFLICT ("task_id") DO NOTHING')
_UPDATE = (f'UPDATE "{TaskRun._meta.table_name}" '
           f'SET {", ".join(f"{_quoted(f)} = ?" for f in _READ)}, '
           f'"traceback" = COALESCE(?, "traceback") WHERE "task_id" = ?')


def _sql(statement):
    return statement.replace("?", db.database.param)


_SELECTED = [TaskRun.task_id] + _READ


def _select(n):
    """The rows of ``n`` task ids (locked on PostgreSQL), as plain SQL: peewee took longer to
    build this query than SQLite to run it."""
    sql = (f'SELECT {", ".join(_quoted(f) for f in _SELECTED)} '
           f'FROM "{TaskRun._meta.table_name}" WHERE "task_id" IN ({", ".join("?" * n)})')
    return _sql(sql + (" FOR UPDATE" if db.is_postgres() else ""))


def _as_stored(fields):
    """A function from a row (a dict) to the parameters of ``fields``, as the database takes
    them. Instants are aware UTC here and stored naive (what UTCDateTimeField.db_value does);
    ``call`` is kept as its JSON text from the start (_call); the rest is stored as it is. Made
    once per statement: a batch turns thousands of rows into parameters, and asking each field
    how to convert each value cost more than writing them."""
    get = operator.itemgetter(*(field.name for field in fields))
    instants = [i for i, field in enumerate(fields) if isinstance(field, db.UTCDateTimeField)]

    def stored(row):
        values = list(get(row))
        for i in instants:
            if values[i] is not None:
                values[i] = values[i].astimezone(UTC).replace(tzinfo=None)
        return values

    return stored


_INSERTED = _as_stored(_COLUMNS)
_CHANGED = _as_stored(_CHANGING + [TaskRun.task_id])


def _chunks(items):
    return (items[i:i + BATCH] for i in range(0, len(items), BATCH))


def _apply(events):
    batch = _Batch({e.task.id for e in events})
    for e in events:
        _HANDLERS[e.signal](batch, e.task, e.at, *e.args)
    batch.write()


def _new(task, at, **fields):
    named = _named_arguments(task)
    return {"task_id": task.id, "job": job_name(task), "task": _registry_name(task),
            "summary": summarize(task, named), "call": _call(task), "priority": task.priority,
            "progress_id": _progress_id(task, named), "state": "queued", "queued_at": at,
            "started_at": None, "finished_at": None, "runtime": None, "attempt": 0, "error": "",
            "traceback": "", "worker": "", **fields}


def _queued(batch, task, at):
    run = batch.rows.get(task.id)
    if run is None:
        batch.rows[task.id] = _new(task, at, state="queued")
        return
    if run["queued_at"] > at:
        run["queued_at"] = at  # another process's worker wrote the row first
    # Nothing else: a "queued" never reopens a run that has started or ended. Coming after them
    # it is late news from another process (whose clock may differ from the worker's); the one
    # way to queue a run again, retry(), sets "queued" itself, and Huey's own retries say
    # "retrying".


def _started(batch, task, at):
    if task.name == TICK:
        batch.beat["last_started_at"] = at
        return
    run = batch.rows.get(task.id)
    if run is None:
        batch.rows[task.id] = _new(task, at, state="running", started_at=at, attempt=1,
                                   worker=_worker())
        return
    run.update(state="running", started_at=at, finished_at=None, runtime=None,
               attempt=run["attempt"] + 1, worker=_worker())


def _finished(batch, task, at, state, error=""):
    if task.name == TICK:
        batch.beat.update(last_finished_at=at, last_result=f"ticked by {HOLDER}"
                          if state == "succeeded" else _cut(f"{state}: {error}", 200))
        if state == "succeeded":
            return
    run = batch.rows.get(task.id)
    if run is None:
        run = batch.rows[task.id] = _new(task, at, state=state)
    run.update(state=state, finished_at=at, runtime=None)
    if run["started_at"] is not None and state not in ("revoked", "expired"):
        run["runtime"] = max(0.0, (at - run["started_at"]).total_seconds())
    if error:
        run["error"] = error


def _failed(batch, task, at, exc):
    _finished(batch, task, at, "failed", _describe(exc))
    batch.rows[task.id]["traceback"] = _traceback(exc)


def _retrying(batch, task, at):
    run = batch.rows.get(task.id)
    if run is None or run["state"] not in ("failed", "cancelled"):
        error = "The task asked to be run again."
    else:
        error = run["error"]
    if run is None:
        run = batch.rows[task.id] = _new(task, at, state="retrying")
    run.update(state="retrying", error=error)


def _finishing(state, error=""):
    return lambda batch, task, at: _finished(batch, task, at, state, error)


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
    S.SIGNAL_TIMEOUT: lambda batch, task, at: _finished(
        batch, task, at, "failed", f"Stopped: it ran longer than its {task.timeout} s time limit."),
    S.SIGNAL_RATE_LIMITED: _finishing(
        "failed", "Not run: too many runs of this task in a short time."),
}

huey.signal(*_HANDLERS)(_record)
_ENDED = set(_HANDLERS) - {S.SIGNAL_ENQUEUED, S.SIGNAL_SCHEDULED, S.SIGNAL_EXECUTING,
                           S.SIGNAL_RETRYING}
_HOST = socket.gethostname()


def _host():
    # As TaskRun.worker holds it (100 characters): a longer name is cut, with a digest of the
    # whole, so two long names alike at the start stay apart.
    if len(_HOST) <= 80:
        return _HOST
    return f"{_HOST[:70]}~{hashlib.sha256(_HOST.encode()).hexdigest()[:9]}"


def _worker():
    """This process, as a run records who ran it: "host pid N" (the pid asked anew: a forked
    child is another process)."""
    return f"{_host()} pid {os.getpid()}"


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
_BEAT = "worker "
_watched = {}  # beat row name -> (its last_started_at, when this process first saw that value)


def _beat_name(worker):
    # JobState names are 60 characters at most; a host's name can be longer.
    return _BEAT + hashlib.sha256(worker.encode()).hexdigest()[:32]


def beat(now=None):
    """Say that this process still runs tasks (as a process that runs jobs starts, and every
    BEAT_EVERY after): so that another machine can tell its runs from those of a process that
    is gone. The row holds "host pid N" and, a line each, the ids of the tasks it runs."""
    worker = _worker()
    _set_state(_beat_name(worker), last_started_at=now or clock.now(),
               last_result="\n".join([worker, *sorted(_running_here.copy())]))


def stop_beating():
    """This process runs no more tasks: its workers have stopped, and the runs of any task
    still running then were marked interrupted (queue.ClinicConsumer.stop)."""
    JobState.delete().where(JobState.name == _beat_name(_worker())).execute()


def interrupt_orphans(now=None):
    """Mark interrupted the runs left "running" by a process that is gone: a process killed
    mid-task (SIGKILL, the machine losing power) sends no signal, and its runs would show as
    running for ever, with no Retry. A process of this machine is gone when its pid is; one of
    another machine when it has not said it runs (beat()) for GONE_AFTER, as watched from here.
    Called as a process that runs jobs starts, and by the scheduler's tick every minute.
    Returns how many it marked."""
    flush()  # this process's own news first
    now = now or clock.now()
    beats, stale = {}, False
    for name, last in (JobState.select(JobState.name, JobState.last_started_at)
                       .where(JobState.name.startswith(_BEAT)).tuples()):
        stale = stale or now - last > BEATS_KEPT
        seen = _watched.get(name)
        if seen is None or seen[0] != last:
            _watched[name] = seen = (last, now)
        beats[name] = seen[1]  # unchanged since then
    for name in list(_watched):
        if name not in beats:
            del _watched[name]
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
        JobState.delete().where(JobState.name.startswith(_BEAT),
                                JobState.last_started_at < now - BEATS_KEPT).execute()
    return len(orphans)


def _gone(worker, task_id, beats, now):
    host, _, pid = worker.rpartition(" pid ")
    if not host or not pid.isdigit():
        return False  # recorded before runs said who ran them
    if host != _host():
        # Another machine's: gone when its process's beat has not changed for GONE_AFTER. No
        # row at all: a process of a version before beats, or one whose workers stopped (its
        # runs were marked then); either way not known to be gone.
        unchanged_since = beats.get(_beat_name(worker))
        return unchanged_since is not None and now - unchanged_since > GONE_AFTER
    pid = int(pid)
    if pid == os.getpid():  # this process, or one before it that had the same pid
        return task_id not in _running_here
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
_missing = {}  # task id -> when this process's looks began to find it missing, without a break
_last_look = None  # when this process last looked
_looking = threading.Lock()


def interrupt_lost(now=None):
    """Mark interrupted the runs that wait for a task no longer in the queue: recorded "queued"
    for LOST_AFTER, their task neither scheduled nor waiting nor running in a process that says
    so (beat()), at every look of this process for CONFIRM_AFTER. One look is not enough: a
    worker takes a task from the queue a moment before its run says "running", and the
    scheduler moves a task from its schedule to the queue. Looks more than CONFIRM_AFTER apart
    do not chain (the tick may have run in other processes meanwhile). Called by the scheduler's
    tick every minute. Returns how many it marked."""
    global _last_look
    flush()  # this process's own news first
    now = now or clock.now()
    with _looking:
        if _last_look is None or not timedelta(0) <= now - _last_look <= CONFIRM_AFTER:
            _missing.clear()
        _last_look = now
        old = (TaskRun.select(TaskRun.task_id)
               .where(TaskRun.state == "queued", TaskRun.queued_at < now - LOST_AFTER))
        if not old.exists():  # nearly always: the queue is not read
            _missing.clear()
            return 0
        # Where a task can be, then the runs: a run still queued after its task was nowhere.
        present = _queued_ids() | _running_ids()
        absent = {task_id for task_id, in old.tuples()} - present
        for task_id in list(_missing):
            if task_id not in absent:
                del _missing[task_id]
        lost = [task_id for task_id in absent
                if now - _missing.setdefault(task_id, now) >= CONFIRM_AFTER]
        for chunk in _chunks(lost):
            (TaskRun.update(state="interrupted", finished_at=now, runtime=None, error=LOST)
             .where(TaskRun.task_id.in_(chunk), TaskRun.state == "queued").execute())
        for task_id in lost:
            del _missing[task_id]
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
    ids = _running_here.copy()
    for (held,) in (JobState.select(JobState.last_result)
                    .where(JobState.name.startswith(_BEAT)).tuples()):
        ids.update(held.split("\n")[1:])
    return ids


def _set_state(name, **fields):
    """Write ``fields`` into the JobState row ``name``, made if there is none."""
    JobState.insert(name=name, **fields).on_conflict(
        conflict_target=[JobState.name],
        update={getattr(JobState, field): value for field, value in fields.items()}).execute()


# -- what a task is -------------------------------------------------------------------------------


def job_name(task):
    """The scheduled job's name for run_job, "scheduler" for the tick, else the task's name."""
    if task.name == "run_job":
        name = task.args[0] if task.args else task.kwargs.get("name")
        return _cut(str(name), 80)
    if task.name == TICK:
        return HEARTBEAT
    return _cut(task.name, 80)


def _registry_name(task):
    return _registry_name_of(type(task))


@functools.cache
def _registry_name_of(task_class):
    return huey._registry.task_to_string(task_class)


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
    """The arguments as JSON text (as JSONField stores it), so Retry can queue the task again;
    None when they are not JSON."""
    if not task.args and not task.kwargs:
        return _NO_ARGUMENTS
    try:
        return json.dumps({"args": list(task.args), "kwargs": dict(task.kwargs)},
                          separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return None


_NO_ARGUMENTS = '{"args":[],"kwargs":{}}'


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


# -- reading --------------------------------------------------------------------------------------


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


# The banner's look at the queue, on every admin page: plain SQL (clinic/db.py says why).
_OLDEST_QUEUED = (f'SELECT "queued_at" FROM "{TaskRun._meta.table_name}" WHERE "state" = ? '
                  f'ORDER BY "queued_at" LIMIT 1')
# A run whose task was lost (a process killed mid-task) stays queued, so admin pages can take this
# path on every view: plain SQL (17 us; peewee took 220 us to build and run this query).
_STARTED_SINCE = (f'SELECT 1 FROM "{TaskRun._meta.table_name}" WHERE "started_at" >= ? LIMIT 1')


def banner(now=None):
    """Why background jobs look stopped, in plain words, or None. Cheap enough for every admin
    page: one row by key, one indexed row, and the queue's length only when tasks wait."""
    try:
        flush()  # what this process's tasks did, written before it is read
        now = now or clock.now()
        ticked = last_tick()
        if ticked is not None and now - ticked > STALLED_AFTER:
            return f"Background jobs are not running since {_when(ticked, now)}."
        queued = db.select(_OLDEST_QUEUED, ("queued",), [TaskRun.queued_at])
        oldest = queued[0][0] if queued else None
        if oldest is None or now - oldest <= STALLED_AFTER:
            return None
        started_lately = db.select(_STARTED_SINCE, (TaskRun.started_at.db_value(
            now - STALLED_AFTER),))
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
        task_class = huey._registry.string_to_task(run.task)
    except HueyException:
        raise Conflict(f"This clinic has no task {run.task} any more.") from None
    claimed = (TaskRun.update(state="queued")
               .where(TaskRun.task_id == run.task_id, TaskRun.state == run.state).execute())
    if claimed != 1:
        raise Conflict("Someone else retried or changed this task a moment ago.")
    task = task_class(tuple(run.call["args"]), dict(run.call["kwargs"]), id=run.task_id,
                      priority=run.priority)
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
