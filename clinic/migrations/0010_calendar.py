"""The real calendar: time off and clinic closures, visit types of their own length, the batches
of appointments the clinic cancels at once, and (PostgreSQL) an exclusion constraint that refuses
two live appointments of one doctor that overlap, whatever their starts.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403
from peewee import PostgresqlDatabase


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = 'user'

    class Cancellation(Model):
        reason = CharField(max_length=300)
        appointment_ids = TextField(default='[]')
        author = ForeignKeyField(User, null=True, on_delete='SET NULL')
        state = CharField(max_length=10, default='queued')
        task_id = CharField(max_length=64, default='')
        cancelled = IntegerField(default=0)
        skipped = IntegerField(default=0)
        error = TextField(default='')
        created_at = DateTimeField()
        finished_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'cancellation'

    class TimeOff(Model):
        doctor = ForeignKeyField(User, null=True, on_delete='CASCADE')
        start = DateTimeField()
        end = DateTimeField()
        reason = CharField(max_length=200, default='')
        status = CharField(max_length=10, default='approved')
        requested_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        cancellation = ForeignKeyField(Cancellation, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'time_off'
            indexes = ((('status', 'start'), False), (('doctor', 'start'), False))

    class VisitType(Model):
        name = CharField(max_length=100)
        minutes = IntegerField()
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'visit_type'

    class VisitTypeDoctor(Model):
        visit_type = ForeignKeyField(VisitType, on_delete='CASCADE')
        doctor = ForeignKeyField(User, on_delete='CASCADE')
        class Meta:
            database = db
            table_name = 'visit_type_doctor'
            indexes = ((('visit_type', 'doctor'), True),)

    db.create_tables([Cancellation, TimeOff, VisitType, VisitTypeDoctor])
    if isinstance(db, PostgresqlDatabase):
        # Times are naive UTC (timestamp without time zone): tsrange. Half-open [start, end), so
        # a visit may begin the minute the one before it ends.
        db.execute_sql('CREATE EXTENSION IF NOT EXISTS btree_gist')
        db.execute_sql(
            'ALTER TABLE "appointment" ADD CONSTRAINT "appointment_no_overlap" EXCLUDE USING gist '
            '("doctor_id" WITH =, tsrange("start", "end", \'[)\') WITH &&) '
            "WHERE (status <> 'cancelled')")


def down(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql('ALTER TABLE "appointment" DROP CONSTRAINT IF EXISTS "appointment_no_overlap"')
    for table in ('visit_type_doctor', 'visit_type', 'time_off', 'cancellation'):
        migrator.migrate(migrator.drop_table(table))
