"""The jobs monitor: what a scheduled job's run did ("sent 3, skipped 1"), and whether it found
nothing to do, so the jobs page can hide the minute-by-minute runs that did nothing.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('task_run', 'result', CharField(max_length=300, default='')),
        migrator.add_column('task_run', 'idle', BooleanField(default=False)),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column('task_run', 'idle'),
                     migrator.drop_column('task_run', 'result'))
