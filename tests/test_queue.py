"""The queue: Huey in this process, with idle workers woken by enqueue() instead of polling,
and its storage chosen by CLINIC_QUEUE_URL."""

import signal
import threading

import pytest
from huey.constants import EmptyData

from clinic import queue, settings
from clinic.server import make_consumer
from huey_config import huey
from tests import backends

_ran = threading.Event()


@huey.task()
def _note():
    _ran.set()


@pytest.fixture
def consumer(app, clinic_settings):
    """The real consumer in threads, as run.py starts it, but with idle workers backing off to
    a minute between polls: only the wake-up can make a task start quickly."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker_pool = make_consumer(clinic_settings, scheduler=False, initial_delay=60.0,
                                max_delay=60.0)
    worker_pool.start()
    yield worker_pool
    worker_pool.stop(graceful=True)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_an_idle_worker_is_woken_by_enqueue(consumer):
    _ran.clear()
    # Let every worker find the queue empty and go to sleep for its minute.
    threading.Event().wait(0.2)
    _note()
    assert _ran.wait(10), "the task waited for a poll instead of waking a worker"


def test_stopping_wakes_sleeping_workers_at_once(app, clinic_settings):
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker_pool = make_consumer(clinic_settings, scheduler=False, initial_delay=60.0,
                                max_delay=60.0, shutdown_timeout=10)
    worker_pool.start()
    try:
        threading.Event().wait(0.2)
        worker_pool.stop(graceful=True)
        assert not any(t.is_alive() for _, t in worker_pool.worker_threads)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


_turns = []  # ("start" or "end", name, thread ident), as the tasks below run
_hold = threading.Event()
_started = threading.Event()


@huey.task()
def _turn(name):
    _turns.append(("start", name, threading.get_ident()))
    _started.set()
    if name == "long":
        assert _hold.wait(30)
    _turns.append(("end", name, threading.get_ident()))


def _until(predicate, timeout=10):
    """Wait for ``predicate()`` to hold, looking every 10 ms; False after ``timeout`` s."""
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    return predicate()


@pytest.fixture
def turns(consumer, backend):
    _turns.clear()
    _hold.clear()
    _started.clear()
    if backend == backends.SQLITE:
        # Every worker asleep on the wake-up first: one still at its first look at the queue
        # would take the task without asking Turns.
        assert _until(lambda: len(huey.wakeup._cond._waiters) == consumer.workers)
    yield huey.turns
    _hold.set()  # never leave a worker held


@pytest.mark.sqlite_only("Redis's and PostgreSQL's queues wait inside dequeue(), where a worker "
                         "takes the task it is handed without asking Turns")
def test_a_worker_stands_back_while_another_runs_a_short_task(turns, monkeypatch):
    """One interpreter lock: a second worker would only take it from the first. While one task
    is younger than the stall, the other worker waits, and the first takes the next task."""
    monkeypatch.setattr(turns, "stall", 30.0)
    _turn("long")
    assert _started.wait(10)
    stood_back = turns.stood_back
    _turn("next")  # wakes the idle worker, which must stand back
    assert _until(lambda: turns.stood_back > stood_back), "the idle worker took the task"
    assert [event[:2] for event in _turns] == [("start", "long")]
    _hold.set()
    assert _until(lambda: len(_turns) == 4)
    assert [event[:2] for event in _turns] == [("start", "long"), ("end", "long"),
                                               ("start", "next"), ("end", "next")]
    assert len({ident for _, _, ident in _turns}) == 1  # both on the first worker


def test_a_task_running_past_the_stall_lets_another_worker_take_the_next(turns, monkeypatch):
    monkeypatch.setattr(turns, "stall", 0.05)
    _turn("long")
    assert _started.wait(10)
    _turn("next")
    assert _until(lambda: ("end", "next") in [event[:2] for event in _turns]), \
        "the next task waited for the long one"
    assert [event[:2] for event in _turns] == [("start", "long"), ("start", "next"),
                                               ("end", "next")]
    assert _until(lambda: turns.running() == 1)  # the long one, still held (once next's ends)
    _hold.set()
    assert _until(lambda: turns.running() == 0)


def test_turns_wait_for_the_youngest_other_task_only():
    turns = queue.Turns(stall=30.0)
    assert turns.wait() == 0
    turns.begin()  # this thread's own task does not hold it back
    assert turns.wait() == 0
    other = threading.Thread(target=turns.begin)
    other.start()
    other.join()
    assert 29 < turns.wait() <= 30
    turns.stall = 0
    assert turns.wait() == 0
    turns.end()
    assert turns.running() == 1


def test_a_task_run_within_a_task_leaves_the_outer_one_counted():
    turns = queue.Turns(stall=30.0)
    turns.begin()
    turns.begin()  # the outer task runs another in this thread (huey.execute)
    turns.end()
    assert turns.running() == 1
    turns.end()
    assert turns.running() == 0


def test_wakeup_is_not_lost_between_looking_and_waiting():
    wakeup = queue.Wakeup()
    seen = wakeup.generation
    wakeup.notify()  # lands after the look, before the wait
    assert wakeup.wait(seen, timeout=0) is True


def test_each_backend_gets_the_storage_its_url_names(app, backend):
    expected = {"sqlite": "ClinicSqliteStorage", "postgres-redis": "PriorityRedisStorage",
                "postgres": "LockedPostgresStorage"}[backend]
    assert type(huey.storage).__name__ == expected


@pytest.mark.sqlite_only("the SQLite queue's own file and pragmas")
def test_sqlite_queue_lives_in_its_own_file_with_normal_sync(clinic_settings):
    storage = queue.storage_for(clinic_settings.queue_url)
    assert storage.filename.endswith("queue.db")
    assert storage.conn.execute("pragma synchronous").fetchone()[0] == 1  # NORMAL
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


@pytest.mark.sqlite_only("the SQLite queue's own statements")
def test_a_no_op_task_costs_the_sqlite_queue_four_statements(app):
    """Enqueue, dequeue, the revoke check and looking for a revoke flag to clear: one statement
    each (stock SqliteStorage ran twelve), each its own transaction, two of them writes."""
    _ran.clear()
    statements = []
    huey.storage.conn.set_trace_callback(statements.append)
    try:
        _note()
        huey.execute(huey.dequeue())
    finally:
        huey.storage.conn.set_trace_callback(None)
    assert _ran.is_set()
    assert [sql.split()[0].lower() for sql in statements] == ["insert", "delete", "select",
                                                             "select"]


def test_a_revoked_task_is_not_run(app):
    _ran.clear()
    result = _note()
    result.revoke()
    huey.execute(huey.dequeue())
    assert not _ran.is_set()
