"""What a background task is doing, for ``GET /api/tasks/<task_id>`` and the progress bars.

A record is made (PENDING) before the task is queued, so the page that started it can show it at
once; the task moves it to PROGRESS with current/total, then SUCCESS with a result or FAILURE
with a reason. Only the user who started a task, or an admin, may read it.
"""

import uuid

from clinic import clock
from clinic.errors import NoAccess, NotFound
from clinic.i18n import _
from clinic.models import Export, TaskRecord

STATES = ("PENDING", "PROGRESS", "SUCCESS", "FAILURE")


def create(name, user=None, total=0, status="Waiting to start", task_id=None):
    """A new PENDING record; returns it. ``user`` is who started the task (None: the system)."""
    now = clock.now()
    return TaskRecord.create(task_id=task_id or uuid.uuid4().hex, name=name, user=user,
                             state="PENDING", total=total, status=status, created_at=now,
                             updated_at=now)


def _update(task_id, **fields):
    fields["updated_at"] = clock.now()
    TaskRecord.update(**fields).where(TaskRecord.task_id == task_id).execute()


def step(task_id, current, total=None, status=None):
    """Report progress: ``current`` of ``total`` done."""
    fields = {"state": "PROGRESS", "current": current}
    if total is not None:
        fields["total"] = total
    if status is not None:
        fields["status"] = status
    _update(task_id, **fields)


def succeed(task_id, result=None, status="Done"):
    record = TaskRecord.get_or_none(TaskRecord.task_id == task_id)
    total = record.total if record is not None else 0
    _update(task_id, state="SUCCESS", status=status, result=result,
            current=max(total, record.current if record is not None else 0))


def fail(task_id, reason):
    _update(task_id, state="FAILURE", status=str(reason)[:500])


def for_user(user, task_id):
    """The record if ``user`` started it or is an admin; NotFound otherwise (ids of other
    people's tasks are not to be probed)."""
    record = TaskRecord.get_or_none(TaskRecord.task_id == str(task_id)[:64])
    if record is None:
        raise NotFound(_("No such task."))
    if user.role != "admin" and record.user_id != user.id:
        # Someone else's history export is a medical record: the refusal goes into the audit.
        if Export.select().where(Export.task_id == record.task_id).exists():
            raise NoAccess(_("No such task."), "export", record.task_id)
        raise NotFound(_("No such task."))
    return record


def as_dict(record):
    return {
        "task_id": record.task_id,
        "name": record.name,
        "state": record.state,
        "current": record.current,
        "total": record.total,
        "status": record.status,
        "result": record.result,
    }
