"""Benchmark tasks on the clinic's own Huey (declared like the clinic's own tasks, so they run on
the real in-process consumer with its hooks and the jobs monitor), and stock SqliteHuey beside it
for context."""

import threading
import time

from huey import SqliteHuey

from clinic.jobs.queue import URGENT
from huey_config import huey

STARTS = []  # pickup latencies in seconds (perf_counter is shared: same process)
_done = threading.Condition()
_count = 0


def started(n, timeout=30):
    """Wait until ``n`` stamps have been recorded; returns whether they were."""
    with _done:
        return _done.wait_for(lambda: len(STARTS) >= n, timeout)


def ran(n, timeout=120):
    """Wait until ``n`` no-op tasks have run in all."""
    with _done:
        return _done.wait_for(lambda: _count >= n, timeout)


def reset():
    global _count
    with _done:
        STARTS.clear()
        _count = 0


def _stamp(sent):
    with _done:
        STARTS.append(time.perf_counter() - sent)
        _done.notify_all()


def _noop():
    global _count
    with _done:
        _count += 1
        if _count % 100 == 0:
            _done.notify_all()
    return None


# The clinic's queue: a confirmation's priority, Huey's defaults otherwise.
bench_stamp = huey.task(priority=URGENT, name="bench.stamp")(_stamp)
bench_noop = huey.task(name="bench.noop")(_noop)


def stock(path):
    """Stock SqliteHuey (no wake-up, SQLite's default synchronous=FULL) with the same tasks."""
    plain = SqliteHuey("bench-stock", filename=str(path))
    return plain, plain.task(name="bench.stamp")(_stamp), plain.task(name="bench.noop")(_noop)


def flush_noops():
    with _done:
        _done.notify_all()
