"""The jobs monitor: every task run recorded from Huey's signals (through the real in-process
consumer, or by draining the queue with huey.dequeue() + huey.execute()), Retry and Revoke, the
scheduler's heartbeat and the banner, per-job runtimes, pruning, and `job history`."""

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from huey import signals as S

from clinic import db, server
from clinic.errors import Conflict, Invalid
from clinic.jobs import heartbeats, monitor, queue, runs, scheduler
from clinic.jobs.queue import NORMAL
from clinic.jobs.scheduler import Job
from clinic.models import JobState, TaskRecord, TaskRun
from clinic.server import Process, prepare
from huey_config import huey
from tests import backends
from tests.conftest import TZ
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent

calls = []


@huey.task()
def remember_ids(ids):
    calls.append(ids)


@huey.task()
def fails_once(ids):
    """Fails the first time it runs, succeeds after: what a passing SMTP outage looks like."""
    calls.append(ids)
    if len(calls) == 1:
        raise RuntimeError("the SMTP server is on fire")


@huey.task()
def reports_progress(task_id, month_year):
    calls.append(task_id)


@huey.task(retries=1)
def fails_once_with_a_retry(ids):
    calls.append(ids)
    if len(calls) == 1:
        raise RuntimeError("connection refused")


def local(*args):
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


@pytest.fixture(autouse=True)
def forget_calls():
    calls.clear()


def run_of(result_or_id):
    return TaskRun.get(TaskRun.task_id == getattr(result_or_id, "id", result_or_id))


def add_run(job, state="succeeded", runtime=1.0, queued_at=None, **fields):
    """A recorded run, as the signals would have left it."""
    queued_at = queued_at or datetime.now(UTC)
    return TaskRun.create(task_id=f"{job}-{TaskRun.select().count()}", job=job,
                          task="clinic.jobs.scheduler.run_job", state=state, runtime=runtime,
                          queued_at=queued_at, started_at=queued_at,
                          finished_at=queued_at + timedelta(seconds=runtime or 0), **fields)


# -- recording ------------------------------------------------------------------------------------


def test_a_queued_task_is_recorded_as_queued(app):
    result = remember_ids([12, 13])
    run = run_of(result)
    assert (run.state, run.job, run.summary) == ("queued", "remember_ids", "ids=[12, 13]")
    assert run.task == "tests.test_monitor.remember_ids"
    assert run.started_at is None and run.attempt == 0


def test_the_real_consumer_records_a_run_from_start_to_success(consumer, finished):
    result = remember_ids([12, 13])
    finished(result.id, S.SIGNAL_COMPLETE)
    run = run_of(result)
    assert calls == [[12, 13]]
    assert (run.state, run.attempt, run.error) == ("succeeded", 1, "")
    assert run.queued_at <= run.started_at <= run.finished_at
    assert run.runtime == pytest.approx((run.finished_at - run.started_at).total_seconds())


def test_a_failure_is_recorded_with_its_error_and_retry_runs_it_to_success(consumer, finished):
    result = fails_once([7])
    finished(result.id, S.SIGNAL_ERROR)
    run = run_of(result)
    assert run.state == "failed" and run.finished_at is not None
    assert run.error == "RuntimeError: the SMTP server is on fire"
    assert "Traceback" in run.traceback and "in fails_once" in run.traceback

    assert monitor.retry(run.task_id) == run.task_id
    finished(run.task_id, S.SIGNAL_COMPLETE)
    run = run_of(result)
    assert calls == [[7], [7]]
    assert (run.state, run.attempt) == ("succeeded", 2)
    assert run.error.startswith("RuntimeError")  # why a retry was needed stays on the row


def test_hueys_own_retries_keep_one_row_and_count_attempts(app, drain):
    result = fails_once_with_a_retry([3])
    huey.execute(huey.dequeue())
    assert run_of(result).state == "retrying"
    drain()
    run = run_of(result)
    assert (run.state, run.attempt) == ("succeeded", 2)
    assert TaskRun.select().count() == 1


def test_retry_is_only_for_a_failed_task_and_only_once(app, drain):
    result = fails_once([1])
    drain()
    monitor.retry(result.id)
    with pytest.raises(Conflict, match="its state is queued"):
        monitor.retry(result.id)
    assert huey.pending_count() == 1
    drain()
    assert run_of(result).state == "succeeded"


def test_retry_refuses_a_task_whose_arguments_could_not_be_kept(app, drain):
    result = fails_once(datetime(2026, 1, 1))  # not JSON
    drain()
    assert run_of(result).call is None
    with pytest.raises(Conflict, match="arguments were not kept"):
        monitor.retry(result.id)


def test_a_revoked_waiting_task_does_not_run(app, drain):
    result = remember_ids([5])
    monitor.revoke(result.id)
    assert run_of(result).state == "revoked"
    drain()
    assert calls == []
    run = run_of(result)
    assert run.state == "revoked" and run.started_at is None
    with pytest.raises(Conflict, match="its state is revoked"):
        monitor.revoke(result.id)


def test_a_task_that_ran_cannot_be_revoked(app, drain):
    result = remember_ids([5])
    drain()
    with pytest.raises(Conflict, match="Only a waiting task can be revoked; its state is succ"):
        monitor.revoke(result.id)


def test_a_recording_failure_never_breaks_the_task(app, caplog, drain):
    db.database.execute_sql("DROP TABLE task_run")
    remember_ids([9])
    drain()
    assert calls == [[9]]
    assert "could not record" in caplog.text


# -- written where the run happens -----------------------------------------------------------------


def test_a_task_queued_from_a_thread_without_a_connection_is_recorded(app):
    """The queued signal fires in whichever thread queues (a web request, a task, Huey's
    scheduler): one with no connection open has one for the write, and none left after."""
    seen = {}

    def queue_it():
        seen["open before"] = not db.database.is_closed()
        seen["id"] = remember_ids([11]).id
        seen["open after"] = not db.database.is_closed()

    thread = threading.Thread(target=queue_it)
    thread.start()
    thread.join(10)
    assert (seen["open before"], seen["open after"]) == (False, False)
    assert run_of(seen["id"]).state == "queued"


def test_a_record_that_fails_in_the_callers_transaction_leaves_it_usable(app, caplog):
    """The caller's transaction goes on (on PostgreSQL a failed statement outside a savepoint
    would abort all of it): here the id is longer than the row's column allows."""
    task = remember_ids.s([12])
    task.id = "x" * 65
    with db.database.atomic():
        huey.enqueue(task)
        JobState.create(name="written after", last_result="kept")
    assert JobState.get_by_id("written after").last_result == "kept"
    if db.is_postgres():
        assert "could not record" in caplog.text



KILLED_AFTER_A_TASK = """
import os, signal
from clinic import settings
from clinic.mail import delivery
from clinic.jobs import scheduler
from clinic.server import prepare
from huey_config import huey
prepare(settings.load())
result = delivery.send_messages([0])  # no such message: nothing to send
huey.execute(huey.dequeue())
print(result.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_process_killed_right_after_a_task_has_left_its_whole_record(app, clinic_settings):
    env = {**os.environ, **backends.environ(clinic_settings)}
    done = subprocess.run([sys.executable, "-c", KILLED_AFTER_A_TASK], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    run = run_of(done.stdout.strip())
    assert (run.state, run.attempt, run.job) == ("succeeded", 1, "send_messages")
    assert run.queued_at <= run.started_at <= run.finished_at and run.runtime is not None


def test_in_immediate_mode_a_task_is_recorded_at_once_in_the_callers_transaction(app):
    huey.immediate = True
    try:
        with db.database.atomic() as transaction:
            remember_ids([6])
            run = TaskRun.get()
            assert (run.state, run.attempt) == ("succeeded", 1)
            transaction.rollback()
    finally:
        huey.immediate = False
    assert calls == [[6]]
    assert TaskRun.select().count() == 0  # the record was part of the rolled-back transaction


@pytest.fixture
def run_process(clinic_settings, restore_signals):
    """``run_process(drive, app=None, **changes)`` runs a jobs-only Process (the settings with
    ``changes``) in this thread until ``drive(lines)``, run in a thread of its own with the
    lines the process prints so far, stops it; returns those lines. Python's signal handlers
    are put back after the test."""

    def run(drive, app=None, **changes):
        app = app or prepare(clinic_settings)
        lines = []
        driver = threading.Thread(target=drive, args=(lines,))
        driver.start()
        try:
            Process(clinic_settings.replace(port=0, **changes), web=False, out=lines.append,
                    app=app).run()
        finally:
            driver.join(30)
        return lines

    return run


def test_a_stopping_process_has_written_its_last_records_when_it_ends(clinic_settings,
                                                                       finished, run_process):
    result = {}

    def drive(lines):
        result["task"] = remember_ids([31])
        finished(result["task"].id, S.SIGNAL_COMPLETE)
        os.kill(os.getpid(), signal.SIGTERM)

    lines = run_process(drive)
    assert lines[-1] == "clinic stopped"
    with db.database.connection_context():
        run = TaskRun.get(TaskRun.task_id == result["task"].id)
    assert (run.state, run.attempt) == ("succeeded", 1)


# -- runs whose process is gone --------------------------------------------------------------------


def dead_pid():
    """The pid of a process that has ended (and was waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_records_which_process_runs_it(consumer, finished):
    result = remember_ids([5])
    finished(result.id, S.SIGNAL_COMPLETE)
    assert run_of(result).worker == f"{runs.HOST} pid {os.getpid()}"


def test_runs_left_running_by_a_killed_process_of_this_machine_are_interrupted(app,
                                                                              monkeypatch):
    here = runs.HOST
    killed = add_run("report", state="running", runtime=None, worker=f"{here} pid {dead_pid()}")
    alive = add_run("export", state="running", runtime=None, worker=f"{here} pid {os.getppid()}")
    elsewhere = add_run("backup", state="running", runtime=None, worker="db-2 pid 4242")
    unknown = add_run("stats", state="running", runtime=None)  # recorded before runs said who
    # This process's pid, but not one of its tasks: a process before it had the same pid.
    before = add_run("cleanup", state="running", runtime=None, worker=f"{here} pid {os.getpid()}")
    mine = add_run("send", state="running", runtime=None, worker=f"{here} pid {os.getpid()}")
    monkeypatch.setitem(runs.running, mine.task_id, datetime.now(UTC))  # runs here
    assert heartbeats.interrupt_orphans() == 2
    assert heartbeats.interrupt_orphans() == 0  # once
    states = {run.job: (run.state, run.error) for run in TaskRun.select()}
    assert states["report"] == states["cleanup"] == ("interrupted", heartbeats.ORPHANED)
    assert {states[run.job][0] for run in (alive, elsewhere, unknown, mine)} == {"running"}
    assert TaskRun.get_by_id(killed.id).finished_at is not None
    assert TaskRun.get_by_id(before.id).state == "interrupted"


def test_an_interrupted_orphan_can_be_retried_and_runs(app, drain):
    result = remember_ids([8])
    (TaskRun.update(state="running", worker=f"{runs.HOST} pid {dead_pid()}")
     .where(TaskRun.task_id == result.id).execute())  # as a killed worker left it
    drain()  # the killed worker had taken it from the queue: run it once here, as it did
    TaskRun.update(state="running").where(TaskRun.task_id == result.id).execute()
    calls.clear()
    assert heartbeats.interrupt_orphans() == 1
    assert run_of(result).state == "interrupted"
    monitor.retry(result.id)
    drain()
    assert calls == [[8]]
    assert run_of(result).state == "succeeded"


@pytest.fixture
def looks(app, monkeypatch):
    """heartbeats.interrupt_lost() at ``base`` plus the given minutes, with no earlier looks."""
    monkeypatch.setattr(heartbeats, "looks", heartbeats.Looks())
    base = datetime.now(UTC)
    return lambda minutes: heartbeats.interrupt_lost(base + timedelta(minutes=minutes))


def test_a_run_whose_task_left_the_queue_is_interrupted_at_the_second_look(looks, drain):
    later = remember_ids.schedule(args=([3],), delay=3600)
    huey.add_schedule(huey.dequeue())  # not due: a worker puts it in the schedule
    lost = remember_ids([1])
    waiting = remember_ids([2])
    huey.storage.flush_queue()  # the queue's storage emptied: 1 and 2 gone...
    huey.enqueue(waiting.task)  # ...and 2 back (a task is its message: same id)
    young = add_run("young", state="queued", queued_at=datetime.now(UTC) + timedelta(minutes=5))
    assert looks(5) == 0  # not queued for LOST_AFTER yet
    assert looks(11) == 0  # the first look that finds it missing
    assert looks(12) == 0  # not CONFIRM_AFTER later yet
    assert looks(13) == 1
    assert (run_of(lost).state, run_of(lost).error) == ("interrupted", heartbeats.LOST)
    assert {run_of(r).state for r in (waiting, later)} == {"queued"}
    assert TaskRun.get_by_id(young.id).state == "queued"
    assert looks(14) == 0  # once
    monitor.retry(lost.id)  # and Retry runs it
    drain()
    assert [1] in calls
    assert run_of(lost).state == "succeeded"


def test_a_task_taken_between_two_looks_is_not_lost(looks):
    taken = remember_ids([4])
    task = huey.dequeue()  # a worker has it, and has not said "running" yet
    assert task.id == taken.id
    gone = add_run("gone", state="queued", queued_at=datetime.now(UTC))  # lost, for contrast
    assert looks(11) == 0
    assert set(heartbeats.looks.missing) == {taken.id, gone.task_id}
    huey.execute(task)
    assert looks(12) == 0
    assert set(heartbeats.looks.missing) == {gone.task_id}  # found again: forgotten
    assert looks(13) == 1
    assert run_of(taken).state == "succeeded"
    assert TaskRun.get_by_id(gone.id).state == "interrupted"


def test_looks_far_apart_do_not_make_a_task_lost(looks):
    """The tick may run in another process for a while: a task missing at this process's look
    and again at its next, ten minutes later, may have been in the queue all along."""
    gone = add_run("gone", state="queued", queued_at=datetime.now(UTC))
    assert looks(11) == 0
    assert looks(21) == 0  # the chain starts again
    assert looks(22) == 0
    assert looks(23) == 1
    assert TaskRun.get_by_id(gone.id).state == "interrupted"


def test_a_task_a_process_says_it_runs_is_not_lost(looks, monkeypatch):
    """Its "running" was never written (the record failed), but the process running it says
    so in its heartbeat, or it runs here."""
    there = add_run("there", state="queued", queued_at=datetime.now(UTC))
    here = add_run("here", state="queued", queued_at=datetime.now(UTC))
    JobState.create(name=heartbeats.beat_name("db-2 pid 7"), last_started_at=datetime.now(UTC),
                    last_result=f"db-2 pid 7\n{there.task_id}")
    monkeypatch.setitem(runs.running, here.task_id, datetime.now(UTC))
    for minutes in (11, 12, 13, 14):
        assert looks(minutes) == 0
    assert {TaskRun.get_by_id(run.id).state for run in (there, here)} == {"queued"}


def test_a_heartbeat_lists_the_tasks_its_process_runs(app, monkeypatch):
    monkeypatch.setattr(runs, "running", dict.fromkeys(["b-task", "a-task"],
                                                          datetime.now(UTC)))
    heartbeats.beat()
    row = JobState.get(JobState.name == heartbeats.beat_name(runs.process_name()))
    assert row.last_result == f"{runs.process_name()}\na-task\nb-task"


def test_a_task_of_a_name_this_process_does_not_know_is_still_in_the_queue(looks, monkeypatch):
    forgotten = huey.task(name="forgotten_here")(remember_ids.func)
    queued = forgotten([5])
    forgotten.unregister()  # as a process of an older version, which never had this task
    for minutes in (11, 12, 13):
        assert looks(minutes) == 0
    assert run_of(queued).state == "queued"


def test_a_starting_process_interrupts_the_runs_its_killed_predecessor_left(clinic_settings,
                                                                           monkeypatch,
                                                                           run_process):
    app = prepare(clinic_settings)
    with db.database.connection_context():
        killed = add_run("report", state="running", runtime=None,
                         worker=f"{runs.HOST} pid {dead_pid()}")
    beats = []
    # The process says it still runs tasks at each health check once BEAT_EVERY has passed.
    monkeypatch.setattr(server, "HEALTH_CHECK_INTERVAL", 0.01)
    monkeypatch.setattr(heartbeats, "BEAT_EVERY", timedelta(0))

    def last_beat():
        row = JobState.get_or_none(JobState.name == heartbeats.beat_name(runs.process_name()))
        return row and row.last_started_at

    def drive(lines):
        until(lambda: any("worker is running" in line for line in lines))
        with db.database.connection_context():
            beats.append(beating())
            first = last_beat()
            beats.append(until(lambda: (last_beat() or first) > first))
        os.kill(os.getpid(), signal.SIGTERM)

    run_process(drive, app=app)
    with db.database.connection_context():
        assert TaskRun.get_by_id(killed.id).state == "interrupted"
        # It said it runs tasks while it ran, and took that back as it stopped.
        assert beats == [[runs.process_name()], True]
        assert beating() == []


_hold = threading.Event()


@huey.task()
def held():
    assert _hold.wait(30)


def stop_while_held(run_process, shutdown_timeout, during_stop=lambda: None):
    """Run a jobs-only Process, start held(), stop the process while it runs, call
    ``during_stop()`` in the driver once the stop has begun; returns the held task's id."""
    ids = []
    _hold.clear()

    def drive(lines):
        until(lambda: any("worker is running" in line for line in lines))
        ids.append(held().id)
        with db.database.connection_context():
            assert until(lambda: run_of(ids[0]).state == "running")
            os.kill(os.getpid(), signal.SIGTERM)
            until(lambda: any("received" in line for line in lines))
            during_stop()

    run_process(drive, shutdown_timeout=shutdown_timeout)
    return ids[0]


def test_a_task_still_running_when_the_stop_gives_up_is_marked_interrupted(clinic_settings,
                                                                           run_process):
    task_id = stop_while_held(run_process, timedelta(seconds=0.2))
    try:
        with db.database.connection_context():
            run = run_of(task_id)
            assert (run.state, run.error) == ("interrupted",
                                              "The clinic stopped while this task was running.")
            assert beating() == []
    finally:
        _hold.set()


def test_a_process_goes_on_beating_while_its_workers_finish(clinic_settings, monkeypatch,
                                                            run_process):
    """A graceful stop waits for running tasks: until they end, the process still says it runs
    them, or another machine would mark them interrupted while they run."""
    monkeypatch.setattr(server, "HEALTH_CHECK_INTERVAL", 0.01)
    monkeypatch.setattr(heartbeats, "BEAT_EVERY", timedelta(0))
    moved = []

    def last_beat():
        row = JobState.get_or_none(JobState.name == heartbeats.beat_name(runs.process_name()))
        return row and row.last_started_at

    def during_stop():
        first = last_beat()
        moved.append(until(lambda: (last_beat() or first) > first))
        _hold.set()

    task_id = stop_while_held(run_process, timedelta(seconds=30), during_stop)
    assert moved == [True]
    with db.database.connection_context():
        assert run_of(task_id).state == "succeeded"
        assert beating() == []


def test_a_failed_health_check_does_not_stop_the_heartbeat(clinic_settings, monkeypatch,
                                                           run_process):
    """Without beats, another machine would take this process's runs for orphans."""
    monkeypatch.setattr(server, "HEALTH_CHECK_INTERVAL", 0.01)
    monkeypatch.setattr(heartbeats, "BEAT_EVERY", timedelta(0))
    failed = []

    def failing_check(consumer):
        failed.append(True)
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(queue.ClinicConsumer, "check_worker_health", failing_check)
    moved = []

    def last_beat():
        row = JobState.get_or_none(JobState.name == heartbeats.beat_name(runs.process_name()))
        return row and row.last_started_at

    def drive(lines):
        until(lambda: any("worker is running" in line for line in lines))
        with db.database.connection_context():
            assert until(lambda: len(failed) >= 2)
            first = last_beat()
            moved.append(until(lambda: (last_beat() or first) > first))
        os.kill(os.getpid(), signal.SIGTERM)

    run_process(drive)
    assert moved == [True]


def beating():
    """The processes that say they run tasks (heartbeats.beat), as "host pid N"."""
    return [row.last_result.split("\n")[0] for row in
            JobState.select().where(JobState.name.startswith(heartbeats.BEAT_PREFIX))]


def test_runs_of_another_machine_are_interrupted_once_its_process_is_silent(app, monkeypatch):
    monkeypatch.setattr(heartbeats, "watched", {})
    now = datetime.now(UTC)
    # Its clock is an hour behind ours: only whether its beat moves counts, not its stamp.
    their_clock = now - timedelta(hours=1)

    def beat_as(worker, at):
        (JobState.insert(name=heartbeats.beat_name(worker), last_started_at=at, last_result=worker)
         .on_conflict(conflict_target=[JobState.name],
                      update={JobState.last_started_at: at}).execute())

    def remote(pid, beats=True):
        worker = f"db-2.clinic.example pid {pid}"
        if beats:
            beat_as(worker, their_clock)
        return add_run(f"job-{pid}", state="running", runtime=None, worker=worker), worker

    (silent, _), (beating, beating_worker) = remote(101), remote(102)
    unknown, _ = remote(103, beats=False)  # no heartbeat: stopped, or a version before them
    assert heartbeats.interrupt_orphans(now) == 0  # first seen now: not silent for long yet
    beat_as(beating_worker, their_clock + timedelta(minutes=3))
    assert heartbeats.interrupt_orphans(now + timedelta(minutes=3)) == 0  # its beat moved
    assert heartbeats.interrupt_orphans(now + heartbeats.GONE_AFTER + timedelta(seconds=1)) == 1
    assert (TaskRun.get_by_id(silent.id).state, TaskRun.get_by_id(silent.id).error) == (
        "interrupted", heartbeats.ORPHANED)
    assert {TaskRun.get_by_id(run.id).state for run in (beating, unknown)} == {"running"}
    # Silent since its last beat, seen at +3 minutes: gone five minutes after that.
    assert heartbeats.interrupt_orphans(now + timedelta(minutes=8, seconds=1)) == 1
    assert TaskRun.get_by_id(beating.id).state == "interrupted"
    assert TaskRun.get_by_id(unknown.id).state == "running"


def test_a_heartbeat_names_this_process_whatever_the_length_of_its_host_name(app, monkeypatch,
                                                                             drain):
    monkeypatch.setattr(runs, "HOST", "a-very-long-host-name." * 5 + "clinic.example")
    result = remember_ids([9])
    drain()
    assert run_of(result).worker == runs.process_name()  # fits the column (PostgreSQL checks)
    assert heartbeats.interrupt_orphans() == 0  # and is known as this process's
    cut = runs.host_name()
    monkeypatch.setattr(runs, "HOST", runs.HOST + "-2")  # alike for 124 characters
    assert runs.host_name() != cut and len(cut) == len(runs.host_name()) == 80
    now = datetime.now(UTC)
    heartbeats.beat(now)
    heartbeats.beat(now + timedelta(minutes=1))  # the same row, later
    assert beating() == [runs.process_name()]
    assert JobState.get(JobState.name.startswith(heartbeats.BEAT_PREFIX)).last_started_at == (
        now + timedelta(minutes=1))
    heartbeats.stop_beating()
    assert beating() == []


def test_heartbeats_a_day_old_are_deleted_and_nothing_else(app):
    now = datetime.now(UTC)
    for n, age in enumerate([heartbeats.BEATS_KEPT + timedelta(minutes=1), timedelta(hours=23)]):
        JobState.create(name=heartbeats.beat_name(f"old pid {n}"), last_started_at=now - age,
                        last_result=f"old pid {n}")
    JobState.create(name=runs.HEARTBEAT, last_started_at=now - timedelta(days=3))
    heartbeats.interrupt_orphans(now)
    assert beating() == ["old pid 1"]
    assert JobState.get_or_none(JobState.name == runs.HEARTBEAT) is not None


# -- what a run says about itself -----------------------------------------------------------------


def test_a_scheduled_job_is_named_by_its_job_and_shows_only_ids_and_names(app):
    scheduler.run_job("daily-reminders", "2026-11-10T07:00:00+00:00")
    run = TaskRun.get()
    assert run.job == "daily-reminders"
    assert run.summary == "name=daily-reminders, due_at=2026-11-10T07:00:00+00:00"


def test_text_that_could_be_a_patients_details_is_not_shown():
    task = remember_ids.s("Alice Adams, alice@example.com")
    assert runs.summarize(task) == "ids=<text, 30 characters>"
    assert runs.summarize(remember_ids.s(list(range(1, 13)))) == (
        "ids=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, … 12 in all]")
    assert runs.summarize(remember_ids.s({"email": "a@b"})) == "ids=<1 entries>"


def test_a_task_that_reports_progress_is_linked_to_its_record(app):
    record = TaskRecord.create(task_id="abc123", name="monthly-reports", state="PROGRESS",
                               current=2, total=5)
    result = reports_progress("abc123", "2026-10")
    run = run_of(result)
    assert run.progress_id == "abc123"
    assert monitor.progress_of(run) == record


# -- the scheduler's heartbeat and the banner -----------------------------------------------------


def tick_at(instant):
    with scheduler.registry(), time_machine.travel(instant, tick=False):
        huey.execute(scheduler.scheduler_tick.s())


def test_the_scheduler_tick_is_a_heartbeat_not_a_row(app):
    tick_at(local(2026, 11, 10, 10, 42))
    assert monitor.last_tick() == local(2026, 11, 10, 10, 42)
    assert JobState.get_by_id("scheduler").last_result == f"ticked by {runs.HOLDER}"
    assert TaskRun.select().count() == 0


def test_banner_when_the_scheduler_has_not_ticked_for_three_minutes(app):
    tick_at(local(2026, 11, 10, 10, 42))
    assert monitor.banner(local(2026, 11, 10, 10, 45)) == (
        "Background jobs are not running since 10:42.")
    assert monitor.banner(local(2026, 11, 10, 10, 43)) is None
    assert "since Tue 10 Nov, 10:42" in monitor.banner(local(2026, 11, 11, 9))


def test_banner_when_tasks_wait_and_none_starts(app):
    with time_machine.travel(local(2026, 11, 10, 10, 0), tick=False):
        remember_ids([1])
    assert monitor.banner(local(2026, 11, 10, 10, 1)) is None
    assert monitor.banner(local(2026, 11, 10, 10, 3)) == (
        "Background jobs are not running: tasks have been waiting since 10:00 and none has "
        "started.")
    add_run("busy", state="running", queued_at=local(2026, 11, 10, 10, 2))
    assert monitor.banner(local(2026, 11, 10, 10, 3)) is None  # a worker is busy, not gone


def test_no_banner_when_nothing_waits_in_the_queue(app):
    with time_machine.travel(local(2026, 11, 10, 10, 0), tick=False):
        remember_ids([1])
    huey.flush()  # the row says queued, but the queue is empty: the task was lost, not stuck
    assert monitor.banner(local(2026, 11, 10, 10, 5)) is None


# -- runtimes -------------------------------------------------------------------------------------


def test_counts_median_and_95th_percentile_over_the_last_seven_days(app):
    now = local(2026, 11, 10, 12)
    for seconds in range(1, 21):  # 1 .. 20 s
        add_run("daily-reminders", runtime=float(seconds), queued_at=now - timedelta(hours=seconds))
    add_run("daily-reminders", "failed", runtime=500.0, queued_at=now - timedelta(days=1))
    add_run("daily-reminders", "failed", runtime=1.0, queued_at=now - timedelta(days=2))
    add_run("daily-reminders", runtime=900.0, queued_at=now - timedelta(days=8))  # too old
    add_run("daily-reminders", "running", runtime=None, queued_at=now)
    stats = monitor.runtime_stats(now)["daily-reminders"]
    assert stats == {"succeeded": 20, "failed": 2, "median": 10.5, "p95": 19.0}


def test_percentile_is_the_nearest_rank():
    assert monitor.percentile([5.0], 95) == 5.0
    assert monitor.percentile([1, 2, 3, 4], 50) == 2
    assert monitor.percentile(range(1, 101), 95) == 95
    assert monitor.percentile([], 95) is None


def test_runtimes_read_as_people_read_them():
    assert monitor.format_runtime(0.4213) == "0.42 s"
    assert monitor.format_runtime(12.4) == "12 s"
    assert monitor.format_runtime(185) == "3 min 5 s"
    assert monitor.format_runtime(3725) == "1 h 2 min"
    assert monitor.format_runtime(None) == "—"


# -- finding runs ---------------------------------------------------------------------------------


def test_search_filters_by_job_state_and_clinic_days(app):
    late = add_run("no-shows", queued_at=local(2026, 11, 9, 23, 30))  # 22:30 UTC on the 9th
    early = add_run("no-shows", "failed", queued_at=local(2026, 11, 10, 0, 30))  # 23:30 UTC 9th
    other = add_run("cleanup", queued_at=local(2026, 11, 10, 12))
    assert list(monitor.search()) == [other, early, late]
    assert list(monitor.search(job="no-shows")) == [early, late]
    assert list(monitor.search(state="failed")) == [early]
    assert list(monitor.search(day_from="2026-11-10")) == [other, early]
    assert list(monitor.search(day_to="2026-11-09")) == [late]
    assert list(monitor.search(day_from="2026-11-10", day_to="2026-11-10", job="cleanup")) == [
        other]


def test_search_says_what_is_wrong_with_a_filter(app):
    with pytest.raises(Invalid) as caught:
        monitor.search(state="exploded", day_from="10/11/2026", day_to="")
    assert caught.value.fields == {"state": "Choose a state from the list.",
                                   "from": "Enter a date as YYYY-MM-DD."}
    with pytest.raises(Invalid) as caught:
        monitor.search(day_from="2026-11-10", day_to="2026-11-09")
    assert caught.value.fields == {"to": "The last day comes before the first."}


def test_prune_deletes_runs_older_than_thirty_days(app):
    now = local(2026, 11, 10, 12)
    old = [add_run("no-shows", queued_at=now - timedelta(days=31, minutes=i)) for i in range(7)]
    kept = add_run("no-shows", queued_at=now - timedelta(days=29))
    assert monitor.prune(now, batch=3) == len(old)
    assert list(TaskRun.select()) == [kept]


# -- run now --------------------------------------------------------------------------------------


def test_run_now_queues_the_job_with_its_priority_and_it_runs(app, drain):
    ran = []
    job = Job("test-job", "test_job_at", "08:00", lambda now: ran.append(now) or {"sent": 2},
              NORMAL, "A job for tests.")
    with scheduler.registry(job):
        task_id = monitor.run_now("test-job")
        [task] = huey.pending()
        assert (task.id, task.name, task.priority) == (task_id, "run_job", NORMAL)
        drain()
    assert len(ran) == 1
    assert run_of(task_id).job == "test-job" and run_of(task_id).state == "succeeded"
    assert JobState.get_by_id("test-job").last_result == "sent 2"


# -- the command line -----------------------------------------------------------------------------


def test_job_history_failed_prints_the_failed_run(app, clinic_settings, drain):
    with time_machine.travel(local(2026, 11, 10, 9, 15), tick=False):
        fails_once([4])
        drain()
    remember_ids([5])
    drain()
    env = {**os.environ, **backends.environ(clinic_settings)}
    out = subprocess.run([sys.executable, "run.py", "job", "history", "--failed"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    [line] = out.splitlines()
    assert line.startswith("2026-11-10 09:15:00 CET  fails_once")
    assert " failed " in line and line.endswith("RuntimeError: the SMTP server is on fire")
    everything = subprocess.run([sys.executable, "run.py", "job", "history", "--limit", "5"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                                check=True).stdout
    assert len(everything.splitlines()) == 2 and "remember_ids" in everything.splitlines()[0]
