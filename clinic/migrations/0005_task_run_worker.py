"""The jobs monitor: which process ran each task ("host pid N"), so that a run left "running" by a
process that is gone (killed, or the machine restarted) can be marked interrupted, and retried.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    migrator.migrate(migrator.add_column('task_run', 'worker',
                                         CharField(max_length=100, default='')))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('task_run', 'worker'))
