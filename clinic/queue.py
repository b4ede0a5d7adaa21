"""The job queue: one Huey object whose storage follows CLINIC_QUEUE_URL.

The Huey object is made at import (tasks register on it with decorators), before settings are
known; ``configure()`` then gives it the storage the settings name: SQLite in its own file by
default, PriorityRedisStorage for redis:// (plain Redis storage rejects priorities), or
PostgresStorage for postgresql:// (whose processes take turns to create its tables), with the
queue named by CLINIC_QUEUE_NAME.

With several processes, Huey's scheduler runs in every worker that may schedule, but enqueues
the periodic tasks only while its process holds the scheduler lease (clinic.jobs): one process
schedules at a time, and another takes over when it stops.

Two changes to stock SqliteHuey, both measured (see DESIGN.md and bench/):
- Idle workers are woken by enqueue() instead of polling. SqliteHuey's workers sleep between
  polls, backing off up to ``max_delay``, so a confirmation could wait a second before anyone
  looked. Here ``enqueue()`` notifies a condition the workers wait on, so a task queued by this
  process starts within a millisecond or two, and idle workers use no CPU. Tasks queued by other
  processes are still found by polling (or by Redis/PostgreSQL's blocking reads).
- The queue's SQLite connection uses synchronous=NORMAL (WAL): still crash-safe for the
  database, without an fsync per enqueue and dequeue.
"""

import logging
import threading
import time
from pathlib import Path

from huey import Huey
from huey.constants import EmptyData
from huey.consumer import Consumer, Scheduler, Worker
from huey.storage import MemoryStorage, PostgresStorage, SqliteStorage

# Task priorities: higher runs first. Confirmations and reminders before reports and exports,
# bulk mail after those, housekeeping last.
URGENT = 100  # confirmations, cancellations, reminders
NORMAL = 50  # reports, exports, review requests
BULK = 10  # announcements
HOUSEKEEPING = 0  # statistics, clean-up

log = logging.getLogger("clinic.queue")


class Wakeup:
    """A generation counter with a condition: a worker notes the generation before it looks at
    the queue and, finding nothing, waits until the generation moves on, so an enqueue that
    lands between its look and its wait is never missed."""

    def __init__(self):
        self._cond = threading.Condition()
        self.generation = 0

    def notify(self, n=1):
        with self._cond:
            self.generation += 1
            self._cond.notify(n)

    def notify_all(self):
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen, timeout):
        with self._cond:
            return self._cond.wait_for(lambda: self.generation != seen, timeout)


class Turns:
    """Which of this process's threads are running a task, and since when: so that its workers
    take turns with short tasks and share out long ones.

    The workers share one interpreter lock. With a run of short tasks, a second worker adds
    nothing but hand-overs of that lock (every SQLite call lets it go), measured at a quarter
    fewer tasks a second with two workers than with one. So a worker looks at the queue only
    when no other has been running its task for less than ``stall``; otherwise it waits until
    that task is ``stall`` old, and looks again. A task that runs longer (a delivery to a slow
    mail server, a report) has the next one taken by another worker ``stall`` later, as many
    at once as there are workers; an idle worker is woken by enqueue() as before.

    Redis's and PostgreSQL's queues wait for a task inside dequeue(): a worker already waiting
    there takes the one it is handed. Turns holds back only a worker about to look again."""

    def __init__(self, stall=0.05):
        self.stall = stall
        self._since = {}  # thread ident -> time.monotonic() when its task began
        self._depth = {}  # thread ident -> how many execute() calls it is in
        self._lock = threading.Lock()
        self.stood_back = 0  # how often a worker waited for another's short task

    def begin(self):
        me = threading.get_ident()
        with self._lock:
            self._depth[me] = self._depth.get(me, 0) + 1
            self._since.setdefault(me, time.monotonic())  # a task run within a task: the outer

    def end(self):
        me = threading.get_ident()
        with self._lock:
            self._depth[me] = self._depth.get(me, 1) - 1
            if self._depth[me] <= 0:
                del self._depth[me]
                self._since.pop(me, None)

    def stand_back(self):
        with self._lock:
            self.stood_back += 1

    def wait(self):
        """How long the calling thread should wait before looking at the queue: 0 when no
        other thread has run its task for less than ``stall``."""
        me = threading.get_ident()
        now = time.monotonic()
        with self._lock:
            youngest = max((since for ident, since in self._since.items() if ident != me),
                           default=None)
        return 0.0 if youngest is None else max(0.0, youngest + self.stall - now)

    def running(self):
        with self._lock:
            return len(self._since)


class WakeableWorker(Worker):
    def loop(self, now=None):
        # Not while another worker is on a short task (Turns): wait till it is no longer short,
        # or stopped, then look again. Waiting costs nothing; the one running keeps the lock.
        turns = self.huey.turns
        wait = turns.wait()
        if wait:
            turns.stand_back()
            self.stop_flag.wait(wait)
            return None
        self._seen = self.huey.wakeup.generation
        return super().loop(now)

    def sleep(self):
        if self.delay > self.max_delay:
            self.delay = self.max_delay
        if self.stop_flag.is_set() or self.huey.wakeup.wait(self._seen, self.delay):
            self.delay = self.default_delay
        else:
            self.delay *= self.backoff


class LeasedScheduler(Scheduler):
    """Huey's scheduler, enqueueing the periodic tasks only while ``lease()`` says this process
    holds the clinic's scheduler (clinic.jobs.hold_scheduler): with several workers running the
    scheduler, one enqueues and the others stand by."""

    lease = None

    def enqueue_periodic_tasks(self, now):
        try:
            held = self.lease is None or self.lease()
        except Exception:
            log.exception("could not renew the scheduler lease; skipping this minute")
            return
        if held:
            super().enqueue_periodic_tasks(now)


class ClinicConsumer(Consumer):
    worker_class = WakeableWorker
    scheduler_class = LeasedScheduler

    def __init__(self, huey, lease=None, release=None, signals=True, **options):
        self.lease, self.release = lease, release
        self.signals = signals  # False: the caller has its own handlers, set before start()
        super().__init__(huey, **options)

    def _set_signal_handlers(self):
        # Huey sets its handlers at the end of start(), after its workers have begun: a signal
        # in between found none and ended the process. A caller with its own sets them first.
        if self.signals:
            super()._set_signal_handlers()

    def _create_scheduler(self):
        scheduler = super()._create_scheduler()
        scheduler.lease = self.lease
        return scheduler

    def stop(self, graceful=False):
        self.stop_flag.set()
        self.huey.wakeup.notify_all()  # waiting workers see the stop at once
        if self.periodic and self.release is not None:
            try:
                self.release()
            except Exception:
                log.exception("could not release the scheduler lease; it lapses by itself")
        try:
            return super().stop(graceful=graceful)
        finally:
            # Tasks still running when the workers are given up on (the shutdown timeout has
            # passed): their runs are interrupted. Huey's own run() says so as it ends; the
            # clinic starts and stops its consumer itself.
            self.huey.notify_interrupted_tasks()


class ClinicSqliteStorage(SqliteStorage):
    """SqliteHuey's storage with synchronous=NORMAL and each step of a task's life one SQL
    statement instead of three to five.

    Stock SqliteStorage runs every write as BEGIN EXCLUSIVE, its statements, COMMIT, each call
    through a context manager, all behind one lock on one shared connection: a no-op task took
    12 calls into SQLite (enqueue 3, dequeue 5, clearing its revoke flag 4), and those, not the
    work, set the queue's pace. Here the connection is in autocommit mode (as Huey leaves it),
    where one statement is one transaction: the enqueue is one INSERT, the dequeue one DELETE
    ... RETURNING of the first task by priority, and clearing the revoke flag a SELECT (and a
    DELETE ... RETURNING in the rare case there is one). Each is as atomic as before, and the
    lock still keeps threads off the shared connection at the same time."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn

    def _one(self, sql, params):
        with self.lock:
            return self.conn.execute(sql, params).fetchone()

    def enqueue(self, data, priority=None):
        with self.lock:
            self.conn.execute("insert into task (queue, data, priority) values (?, ?, ?)",
                              (self.name, self.to_blob(data), priority or 0))

    def dequeue(self):
        row = self._one("delete from task where id = (select id from task where queue = ? "
                        "order by priority desc, id limit 1) returning data", (self.name,))
        return row[0] if row else None

    def peek_many(self, keys):
        with self.lock:
            return dict(self.conn.execute(
                f"select key, value from kv where queue = ? and key in "  # noqa: S608 (only ?s)
                f"({', '.join('?' * len(keys))})", (self.name, *keys)).fetchall())

    def pop_data(self, key):
        # Huey pops each task's revoke flag after the task runs; there almost never is one, and
        # looking costs no write transaction.
        with self.lock:
            params = (self.name, key)
            if self.conn.execute("select 1 from kv where queue = ? and key = ?",
                                 params).fetchone() is None:
                return EmptyData
            row = self.conn.execute("delete from kv where queue = ? and key = ? returning value",
                                    params).fetchone()
        return row[0] if row else EmptyData


QUEUE_TABLES_LOCK = 7_154_201_002  # PostgreSQL's advisory lock for making Huey's tables


class LockedPostgresStorage(PostgresStorage):
    """Huey's PostgreSQL storage, whose processes take turns to create its tables: CREATE TABLE
    IF NOT EXISTS fails when another session creates the same table at the same moment, as
    processes starting together do."""

    def initialize_schema(self):
        with self.db(commit=True, close=True) as cursor:  # one transaction
            cursor.execute("select pg_advisory_xact_lock(%s)", (QUEUE_TABLES_LOCK,))
            for sql in self.ddl:
                cursor.execute(sql)


class ClinicHuey(Huey):
    storage_class = MemoryStorage  # until configure() names the real one

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wakeup = Wakeup()
        self.turns = Turns()

    def enqueue(self, task):
        result = super().enqueue(task)
        self.wakeup.notify()
        return result

    def execute(self, task, timestamp=None):
        self.turns.begin()
        try:
            return super().execute(task, timestamp)
        finally:
            self.turns.end()

    def create_consumer(self, **options):
        return ClinicConsumer(self, **options)


def create_huey():
    return ClinicHuey("clinic", utc=True)


def storage_for(url, name="clinic"):
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return ClinicSqliteStorage(name, filename=str(path), timeout=10)
    if url.startswith("redis://"):
        from huey.storage import PriorityRedisStorage

        return PriorityRedisStorage(name, url=url)
    if url.startswith(("postgresql://", "postgres://")):
        return LockedPostgresStorage(name, dsn=url)
    if url == "memory://":
        return MemoryStorage(name)
    raise ValueError(f"unsupported queue URL: {url}")


def configure(url, name="clinic"):
    """Point the clinic's Huey at the queue ``name`` at ``url``; returns the Huey object."""
    from huey_config import huey

    old = huey.storage
    huey.storage = storage_for(url, name)
    if hasattr(old, "close"):
        old.close()
    return huey
