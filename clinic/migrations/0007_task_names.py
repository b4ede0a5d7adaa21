"""Huey names a task by the module that declares it. The tasks moved from clinic/tasks.py to the
modules whose work they do, so the runs on record take the new names: Retry finds their task.
"""
from peewee import *  # noqa: F403

RENAMED = {
    'clinic.tasks.send_messages': 'clinic.mail.delivery.send_messages',
    'clinic.tasks.send_due_messages': 'clinic.mail.delivery.send_due_messages',
    'clinic.tasks.scheduler_tick': 'clinic.jobs.scheduler.scheduler_tick',
    'clinic.tasks.run_job': 'clinic.jobs.scheduler.run_job',
    'clinic.tasks.export_history': 'clinic.exports.export_history',
    'clinic.tasks.make_monthly_reports': 'clinic.reports.make_monthly_reports',
    'clinic.tasks.send_announcement': 'clinic.announcements.send_announcement',
}


def _rename(db, names):
    runs = Table('task_run', ('id', 'task')).bind(db)
    for old, new in names.items():
        runs.update(task=new).where(runs.task == old).execute()


def up(migrator, db):
    _rename(db, RENAMED)


def down(migrator, db):
    _rename(db, {new: old for old, new in RENAMED.items()})
