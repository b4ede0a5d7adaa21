"""The jobs monitor's table: every background task as the admin's jobs page shows it.

A frozen copy of the model as it was, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class TaskRun(Model):
        task_id = CharField(unique=True, max_length=64)
        job = CharField(max_length=80)
        task = CharField(max_length=200)
        summary = CharField(max_length=300, default='')
        call = TextField(null=True)
        priority = IntegerField(null=True)
        progress_id = CharField(max_length=64, default='')
        state = CharField(max_length=12, default='queued')
        queued_at = DateTimeField(index=True)
        started_at = DateTimeField(null=True, index=True)
        finished_at = DateTimeField(null=True)
        runtime = FloatField(null=True)
        attempt = IntegerField(default=0)
        error = TextField(default='')
        traceback = TextField(default='')
        class Meta:
            database = db
            table_name = 'task_run'
            indexes = ((('job', 'queued_at'), False), (('state', 'queued_at'), False))
    db.create_tables([TaskRun])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('task_run'))
