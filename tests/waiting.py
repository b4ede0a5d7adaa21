"""Waiting for something another thread or process does: a worker picking up a task, a child
process writing a line. Time in the clinic's own code is controlled by passing datetimes; this is
only for real concurrency, which has no datetime to pass."""

import threading


def until(condition, timeout=10, every=0.01, what=None):
    """Look at ``condition()`` every ``every`` seconds until it is truthy, and return it. After
    ``timeout`` seconds, return its last value, or with ``what``, fail saying what never came."""
    pause = threading.Event()
    for _ in range(max(1, int(timeout / every))):
        result = condition()
        if result:
            return result
        pause.wait(every)
    result = condition()
    if not result and what:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return result
