"""Process heartbeats, and runs left behind: each process that runs tasks keeps a JobState row of
its own, so that runs left "running" by a process that is gone, and runs whose task left the
queue without running, can be marked interrupted, with Retry.
"""

import hashlib
import logging
import os
import threading
from datetime import timedelta

from clinic import clock
from clinic.jobs import runs
from clinic.models import JobState, TaskRun
from huey_config import huey

log = logging.getLogger("clinic.jobs.heartbeats")


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
BEAT_PREFIX = "worker "
watched = {}  # beat row name -> (its last_started_at, when this process first saw that value)


def beat_name(worker):
    """The JobState row of the process ``worker`` ("host pid N"): names are 60 characters at
    most, and a host's name can be longer."""
    return BEAT_PREFIX + hashlib.sha256(worker.encode()).hexdigest()[:32]


def beat(now=None):
    """Say that this process still runs tasks (as a process that runs jobs starts, and every
    BEAT_EVERY after): so that another machine can tell its runs from those of a process that
    is gone. The row holds "host pid N" and, a line each, the ids of the tasks it runs."""
    worker = runs.process_name()
    runs.set_state(beat_name(worker), last_started_at=now or clock.now(),
                   last_result="\n".join([worker, *sorted(runs.running.copy())]))


def stop_beating():
    """This process runs no more tasks: its workers have stopped, and the runs of any task
    still running then were marked interrupted (queue.ClinicConsumer.stop)."""
    JobState.delete().where(JobState.name == beat_name(runs.process_name())).execute()


def interrupt_orphans(now=None):
    """Mark interrupted the runs left "running" by a process that is gone: a process killed
    mid-task (SIGKILL, the machine losing power) sends no signal, and its runs would show as
    running for ever, with no Retry. A process of this machine is gone when its pid is; one of
    another machine when it has not said it runs (beat()) for GONE_AFTER, as watched from here.
    Called as a process that runs jobs starts, and by the scheduler's tick every minute.
    Returns how many it marked."""
    now = now or clock.now()
    beats, stale = {}, False
    for name, last in (JobState.select(JobState.name, JobState.last_started_at)
                       .where(JobState.name.startswith(BEAT_PREFIX)).tuples()):
        stale = stale or now - last > BEATS_KEPT
        seen = watched.get(name)
        if seen is None or seen[0] != last:
            watched[name] = seen = (last, now)
        beats[name] = seen[1]  # unchanged since then
    for name in list(watched):
        if name not in beats:
            del watched[name]
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
        JobState.delete().where(JobState.name.startswith(BEAT_PREFIX),
                                JobState.last_started_at < now - BEATS_KEPT).execute()
    return len(orphans)


def _gone(worker, task_id, beats, now):
    host, _, pid = worker.rpartition(" pid ")
    if not host or not pid.isdigit():
        return False  # recorded before runs said who ran them
    if host != runs.host_name():
        # Another machine's: gone when its process's beat has not changed for GONE_AFTER. No
        # row at all: a process of a version before beats, or one whose workers stopped (its
        # runs were marked then); either way not known to be gone.
        unchanged_since = beats.get(beat_name(worker))
        return unchanged_since is not None and now - unchanged_since > GONE_AFTER
    pid = int(pid)
    if pid == os.getpid():  # this process, or one before it that had the same pid
        return task_id not in runs.running
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


class Looks:
    """This process's looks for lost tasks: when it last looked, and since when each task has
    been missing at every look, without a break."""

    def __init__(self):
        self.last = None
        self.missing = {}  # task id -> when the looks began to find it missing
        self.lock = threading.Lock()


looks = Looks()


def interrupt_lost(now=None):
    """Mark interrupted the runs that wait for a task no longer in the queue: recorded "queued"
    for LOST_AFTER, their task neither scheduled nor waiting nor running in a process that says
    so (beat()), at every look of this process for CONFIRM_AFTER. One look is not enough: a
    worker takes a task from the queue a moment before its run says "running", and the
    scheduler moves a task from its schedule to the queue. Looks more than CONFIRM_AFTER apart
    do not chain (the tick may have run in other processes meanwhile). Called by the scheduler's
    tick every minute. Returns how many it marked."""
    now = now or clock.now()
    with looks.lock:
        if looks.last is None or not timedelta(0) <= now - looks.last <= CONFIRM_AFTER:
            looks.missing.clear()
        looks.last = now
        old = (TaskRun.select(TaskRun.task_id)
               .where(TaskRun.state == "queued", TaskRun.queued_at < now - LOST_AFTER))
        if not old.exists():  # nearly always: the queue is not read
            looks.missing.clear()
            return 0
        # Where a task can be, then the runs: a run still queued after its task was nowhere.
        present = _queued_ids() | _running_ids()
        absent = {task_id for task_id, in old.tuples()} - present
        for task_id in list(looks.missing):
            if task_id not in absent:
                del looks.missing[task_id]
        lost = [task_id for task_id in absent
                if now - looks.missing.setdefault(task_id, now) >= CONFIRM_AFTER]
        for lo in range(0, len(lost), 500):
            (TaskRun.update(state="interrupted", finished_at=now, runtime=None, error=LOST)
             .where(TaskRun.task_id.in_(lost[lo:lo + 500]), TaskRun.state == "queued")
             .execute())
        for task_id in lost:
            del looks.missing[task_id]
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
    ids = set(runs.running.copy())
    for (held,) in (JobState.select(JobState.last_result)
                    .where(JobState.name.startswith(BEAT_PREFIX)).tuples()):
        ids.update(held.split("\n")[1:])
    return ids
