"""One scheduler among many workers: the scheduler lease (scheduler.hold_scheduler). Every worker
may run with the scheduler on; one holds the lease and enqueues the periodic tick, the
others stand by and take over when it stops or dies; health names the holder."""

import threading
from datetime import timedelta

import pytest

from clinic import clock, health
from clinic.jobs import queue, runs, scheduler
from huey_config import huey
from tests.test_outbox import in_threads

ME, OTHER = "here pid 1", "there pid 2"


def test_the_first_scheduler_takes_the_lease_and_the_second_stands_by(app):
    now = clock.now()
    assert scheduler.hold_scheduler(ME, now)
    assert not scheduler.hold_scheduler(OTHER, now + timedelta(seconds=1))
    assert scheduler.hold_scheduler(ME, now + timedelta(seconds=60))  # renewed at its next check
    assert not scheduler.hold_scheduler(OTHER, now + timedelta(seconds=120))
    assert scheduler.scheduler_lease(now + timedelta(seconds=120))[0] == ME


def test_a_holder_that_stops_renewing_is_replaced_once_the_lease_lapses(app):
    now = clock.now()
    assert scheduler.hold_scheduler(ME, now)
    assert not scheduler.hold_scheduler(OTHER, now + scheduler.LEASE_FOR - timedelta(seconds=1))
    assert scheduler.hold_scheduler(OTHER, now + scheduler.LEASE_FOR)
    assert not scheduler.hold_scheduler(ME, now + scheduler.LEASE_FOR + timedelta(seconds=1))


def test_a_clean_stop_hands_the_lease_over_at_once(app):
    now = clock.now()
    assert scheduler.hold_scheduler(ME, now)
    scheduler.release_scheduler(OTHER)  # only the holder can release it
    assert not scheduler.hold_scheduler(OTHER, now)
    scheduler.release_scheduler(ME)
    assert scheduler.scheduler_lease(now) is None
    assert scheduler.hold_scheduler(OTHER, now)


def test_of_schedulers_starting_together_exactly_one_holds_the_lease(app):
    now = clock.now()
    names = iter(f"host pid {n}" for n in range(8))
    lock = threading.Lock()

    def start():
        with lock:
            name = next(names)
        return name, scheduler.hold_scheduler(name, now)

    results = in_threads(8, start)
    holders = [name for name, held in results if held]
    assert len(holders) == 1
    assert scheduler.scheduler_lease(now)[0] == holders[0]


@pytest.mark.parametrize("held", [True, False])
def test_only_the_lease_holder_enqueues_the_periodic_tick(app, held):
    import clinic.jobs.scheduler  # noqa: F401  (registers scheduler_tick)

    # Made as the consumer makes its scheduler (at start, and again should it die).
    consumer = huey.create_consumer(lease=lambda: held, workers=1, worker_type="thread")
    scheduler = consumer.scheduler_class(huey=huey, stop_flag=consumer.stop_flag, interval=1,
                                         periodic=True)
    scheduler.enqueue_periodic_tasks(clock.now())
    assert [task.name for task in huey.pending()] == (["scheduler_tick"] if held else [])


def test_a_lease_that_cannot_be_renewed_skips_the_minute(app):
    def broken():
        raise RuntimeError("database away")

    scheduler = queue.LeasedScheduler(huey, threading.Event(), interval=1, periodic=True,
                                      lease=broken)
    scheduler.enqueue_periodic_tasks(clock.now())
    assert huey.pending_count() == 0


def test_health_names_the_process_holding_the_scheduler(app):
    now = clock.now()
    scheduler.hold_scheduler(OTHER, now)
    runs.set_state(runs.HEARTBEAT, last_started_at=now, last_finished_at=now,
                      last_result=f"ticked by {runs.HOLDER}")
    check = next(c for c in health.run(now) if c.name == "scheduler")
    assert check.ok and check.detail.startswith(f"held by {OTHER}, last ticked at ")
