"""The job queue: one Huey object whose storage follows CLINIC_QUEUE_URL.

The Huey object is made at import (tasks register on it with decorators), before settings are
known; ``configure()`` then gives it the storage the settings name: SQLite in its own file by
default, PriorityRedisStorage for redis:// (plain Redis storage rejects priorities), or
PostgresStorage for postgresql:// (whose processes take turns to create its tables), with the
queue named by CLINIC_QUEUE_NAME.

With several processes, Huey's scheduler runs in every worker that may schedule, but enqueues
the periodic tasks only while its process holds the scheduler lease (clinic.jobs.scheduler): one
process schedules at a time, and another takes over when it stops.

Idle workers are woken by enqueue() instead of polling. SqliteHuey's workers sleep between polls,
backing off up to ``max_delay``, so a confirmation could wait a second before anyone looked.
Here ``enqueue()`` notifies a condition the workers wait on, so a task queued by this process
starts at once, and idle workers use no CPU. Tasks queued by other processes are still found by
polling (or by Redis/PostgreSQL's blocking reads).
"""

import functools
import logging
import threading
from pathlib import Path

from huey import Huey
from huey.consumer import Consumer, Scheduler, Worker
from huey.storage import MemoryStorage, PostgresStorage, SqliteStorage

from clinic import db

# Task priorities: higher runs first. Confirmations and reminders before reports and exports,
# bulk mail after those, housekeeping last.
URGENT = 100  # confirmations, cancellations, reminders
NORMAL = 50  # reports, exports, review requests
BULK = 10  # announcements
HOUSEKEEPING = 0  # statistics, clean-up

log = logging.getLogger("clinic.jobs.queue")


class Wakeup:
    """A generation counter with a condition: a worker notes the generation before it looks at
    the queue and, finding nothing, waits until the generation moves on, so an enqueue that
    lands between its look and its wait is never missed."""

    def __init__(self):
        self._cond = threading.Condition()
        self.generation = 0
        self.waiting = 0  # threads in wait() now

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
            self.waiting += 1
            try:
                return self._cond.wait_for(lambda: self.generation != seen, timeout)
            finally:
                self.waiting -= 1


class WakeableWorker(Worker):
    """Huey's worker, sleeping between polls on the Wakeup instead of the stop flag alone."""

    seen = 0  # the wake-up generation before this worker's last look at the queue

    def loop(self, now=None):
        self.seen = self.huey.wakeup.generation
        return super().loop(now)

    def sleep(self):
        if self.delay > self.max_delay:
            self.delay = self.max_delay
        if self.stop_flag.is_set() or self.huey.wakeup.wait(self.seen, self.delay):
            self.delay = self.default_delay
        else:
            self.delay *= self.backoff


class LeasedScheduler(Scheduler):
    """Huey's scheduler, enqueueing the periodic tasks only while ``lease()`` says this process
    holds the clinic's scheduler (scheduler.hold_scheduler): with several workers running the
    scheduler, one enqueues and the others stand by. No ``lease``: always held."""

    def __init__(self, *args, lease=None, **kwargs):
        self.lease = lease
        super().__init__(*args, **kwargs)

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

    def __init__(self, huey, lease=None, release=None, **options):
        self.release = release
        # Huey makes its scheduler from scheduler_class (at start, and again should it die):
        # this consumer's carries the lease.
        self.scheduler_class = functools.partial(LeasedScheduler, lease=lease)
        super().__init__(huey, **options)

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

    def enqueue(self, task):
        result = super().enqueue(task)
        self.wakeup.notify()
        return result

    def create_consumer(self, **options):
        return ClinicConsumer(self, **options)


def create_huey():
    """The clinic's Huey object, with a database connection for each task: a worker thread takes
    its connection as the task starts and gives it up after (db.acquire/release), so no
    transaction outlives the task, and a PostgreSQL connection goes back to the pool (one broken
    by one task, a server restart say, is not inherited by the next). When the caller already
    has one open (Huey's immediate mode runs tasks inline, maybe inside a transaction), it is
    left alone."""
    huey = ClinicHuey("clinic", utc=True)
    mine = threading.local()

    @huey.pre_execute()
    def open_connection(task):
        mine.here = db.acquire()

    @huey.post_execute()
    def close_connection(task, task_value, exc):
        if getattr(mine, "here", False):
            db.release()
        mine.here = False

    return huey


def storage_for(url, name="clinic"):
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # fsync=True: synchronous=FULL, each enqueue and dequeue on disk before it returns, so
        # a power cut loses no queued task and cannot damage the file. (The other public
        # choice, fsync=False, turns syncing off: faster, but the file may be corrupt after a
        # power cut; the outbox sweep would re-queue lost mail, not a damaged file.)
        return SqliteStorage(name, filename=str(path), timeout=10, fsync=True)
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
