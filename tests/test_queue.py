"""The queue: Huey in this process, with idle workers woken by enqueue() instead of polling,
and its storage chosen by CLINIC_QUEUE_URL."""

import threading

import pytest
from huey.constants import EmptyData

from clinic import settings
from clinic.jobs import queue
from clinic.server import make_consumer
from huey_config import huey
from tests import backends
from tests.waiting import until

_ran = threading.Event()


@huey.task()
def _note():
    _ran.set()


@pytest.fixture
def consumer(app, clinic_settings, restore_signals):
    """The real consumer in threads, as run.py starts it, but with idle workers backing off to
    a minute between polls: only the wake-up can make a task start quickly."""
    worker_pool = make_consumer(clinic_settings, periodic=False, initial_delay=60.0,
                                max_delay=60.0)
    worker_pool.start()
    yield worker_pool
    worker_pool.stop(graceful=True)


def _all_asleep(consumer, backend):
    """Until every worker has found the queue empty and waits for its minute on the wake-up
    (SQLite; Redis's and PostgreSQL's workers wait inside dequeue() instead)."""
    if backend == backends.SQLITE:
        assert until(lambda: huey.wakeup.waiting == consumer.workers)


def test_an_idle_worker_is_woken_by_enqueue(consumer, backend):
    _ran.clear()
    _all_asleep(consumer, backend)
    _note()
    assert _ran.wait(10), "the task waited for a poll instead of waking a worker"


def test_stopping_wakes_sleeping_workers_at_once(consumer, backend):
    _all_asleep(consumer, backend)
    consumer.stop(graceful=True)
    assert not any(t.is_alive() for _, t in consumer.worker_threads)


def test_wakeup_counts_its_waiters():
    wakeup = queue.Wakeup()
    waiter = threading.Thread(target=wakeup.wait, args=(wakeup.generation, 30))
    waiter.start()
    assert until(lambda: wakeup.waiting == 1)
    wakeup.notify()
    waiter.join(10)
    assert not waiter.is_alive() and wakeup.waiting == 0


def test_wakeup_is_not_lost_between_looking_and_waiting():
    wakeup = queue.Wakeup()
    seen = wakeup.generation
    wakeup.notify()  # lands after the look, before the wait
    assert wakeup.wait(seen, timeout=0) is True


def test_each_backend_gets_the_storage_its_url_names(app, backend):
    expected = {"sqlite": "SqliteStorage", "postgres-redis": "PriorityRedisStorage",
                "postgres": "LockedPostgresStorage"}[backend]
    assert type(huey.storage).__name__ == expected


@pytest.mark.sqlite_only("the SQLite queue's own file and pragmas")
def test_sqlite_queue_lives_in_its_own_file_with_full_sync(clinic_settings):
    storage = queue.storage_for(clinic_settings.queue_url)
    assert storage.filename.endswith("queue.db")
    assert storage.conn.execute("pragma synchronous").fetchone()[0] == 2  # FULL
    assert storage.conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_unknown_queue_url_is_refused():
    with pytest.raises(ValueError):
        queue.storage_for("amqp://localhost")


def test_queues_with_different_names_share_a_server_but_not_their_tasks(app, clinic_settings):
    other = queue.storage_for(clinic_settings.queue_url, "otherclinic")
    try:
        other.enqueue(b"someone else's task")
        assert huey.pending_count() == 0
        assert other.queue_size() == 1
    finally:
        other.flush_all()


@pytest.mark.parametrize("name", ["Clinic", "clinic-2", "", "x" * 41])
def test_a_queue_name_that_would_not_survive_every_backend_is_refused(tmp_path, name):
    with pytest.raises(settings.SettingsError, match="CLINIC_QUEUE_NAME"):
        settings.load({"CLINIC_QUEUE_NAME": name}, data_dir=str(tmp_path))


def test_sqlite_queue_hands_out_tasks_by_priority_then_oldest_first(tmp_path):
    storage = queue.storage_for(f"sqlite:///{tmp_path / 'queue.db'}")
    for data, priority in ((b"report", queue.NORMAL), (b"first", queue.URGENT),
                           (b"cleanup", queue.HOUSEKEEPING), (b"second", queue.URGENT)):
        storage.enqueue(data, priority)
    assert storage.queue_size() == 4
    assert [bytes(storage.dequeue()) for _ in range(4)] == [b"first", b"second", b"report",
                                                            b"cleanup"]
    assert storage.dequeue() is None


def test_sqlite_queue_gives_each_task_to_one_taker(tmp_path):
    storage = queue.storage_for(f"sqlite:///{tmp_path / 'queue.db'}")
    for i in range(200):
        storage.enqueue(str(i).encode(), 0)
    taken, lock = [], threading.Lock()

    def take():
        while (data := storage.dequeue()) is not None:
            with lock:
                taken.append(bytes(data))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken, key=int) == [str(i).encode() for i in range(200)]


def test_sqlite_queue_pops_a_key_once(tmp_path):
    storage = queue.storage_for(f"sqlite:///{tmp_path / 'queue.db'}")
    storage.put_data("r:task", b"revoked")
    assert storage.peek_many(["r:task", "r:other"]) == {"r:task": b"revoked"}
    assert bytes(storage.pop_data("r:task")) == b"revoked"
    assert storage.pop_data("r:task") is EmptyData
    assert storage.peek_many(["r:task"]) == {}


def test_a_revoked_task_is_not_run(app, drain):
    _ran.clear()
    result = _note()
    result.revoke()
    drain()
    assert not _ran.is_set()
