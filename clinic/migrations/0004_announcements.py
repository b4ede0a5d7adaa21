"""Talking to patients: announcements, the patients' opt-outs of optional emails, and an index on
the outbox's claim times for the sending rate limit.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = 'user'

    class Announcement(Model):
        author = ForeignKeyField(User, null=True, on_delete='SET NULL')
        subject = CharField(max_length=200)
        text = TextField()
        audience = TextField()
        state = CharField(max_length=10, default='queued')
        recipients = IntegerField(default=0)
        queued = IntegerField(default=0)
        skipped = IntegerField(default=0)
        task_id = CharField(max_length=64, default='')
        error = TextField(default='')
        created_at = DateTimeField(index=True)
        updated_at = DateTimeField()
        finished_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'announcement'

    class OptOut(Model):
        user = ForeignKeyField(User, on_delete='CASCADE')
        kind = CharField(max_length=20)
        via = CharField(max_length=10, default='page')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'opt_out'
            indexes = ((('user', 'kind'), True),)

    db.create_tables([Announcement, OptOut])
    migrator.migrate(migrator.add_index('message', ('claimed_at',), False))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('message', 'message_claimed_at'))
    migrator.migrate(migrator.drop_table('opt_out'))
    migrator.migrate(migrator.drop_table('announcement'))
