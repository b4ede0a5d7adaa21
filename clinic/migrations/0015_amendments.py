"""Records that can be corrected, marks that can be undone: amendments of a completed visit's
record (the earlier text, who and when), the time of a record's latest amendment, and what a
no-show was before its mark (so the doctor can undo it, and the no-shows job leaves it alone).
The new columns are nullable, so that rows written by plain SQL (bench/generate.py) need not
name them.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = 'user'

    class Appointment(Model):
        class Meta:
            database = db
            table_name = 'appointment'

    class Amendment(Model):
        appointment = ForeignKeyField(Appointment, on_delete='RESTRICT')
        author = ForeignKeyField(User, null=True, on_delete='SET NULL')
        author_name = CharField(max_length=200, default='')
        at = DateTimeField()
        before = TextField(default='{}')
        after = TextField(default='{}')
        reason = TextField(default='')
        class Meta:
            database = db
            table_name = 'amendment'
            indexes = ((('appointment', 'at'), False),)

    db.create_tables([Amendment])
    migrator.migrate(
        migrator.add_column('appointment', 'prior_status', CharField(max_length=10, null=True)),
        migrator.add_column('appointment', 'no_show_undone_at', DateTimeField(null=True)),
        migrator.add_column('treatment', 'amended_at', DateTimeField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column('treatment', 'amended_at'),
                     migrator.drop_column('appointment', 'no_show_undone_at'),
                     migrator.drop_column('appointment', 'prior_status'))
    migrator.migrate(migrator.drop_table('amendment'))
