"""Huey names a task by the module that declares it. The outbox's two tasks moved beside the
delivery they run (clinic/mail/delivery.py), so the runs on record take the new names: Retry
finds their task.
"""
from peewee import *  # noqa: F403

RENAMED = {
    'clinic.mail.outbox.send_messages': 'clinic.mail.delivery.send_messages',
    'clinic.mail.outbox.send_due_messages': 'clinic.mail.delivery.send_due_messages',
}


def _rename(db, names):
    runs = Table('task_run', ('id', 'task')).bind(db)
    for old, new in names.items():
        runs.update(task=new).where(runs.task == old).execute()


def up(migrator, db):
    _rename(db, RENAMED)


def down(migrator, db):
    _rename(db, {new: old for old, new in RENAMED.items()})
