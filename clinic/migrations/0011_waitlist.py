"""The waitlist: patients waiting for a freed slot with a doctor, and the offers that hold a
freed slot for one of them (one live hold per doctor and start, by a partial unique index).

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

    class WaitlistEntry(Model):
        patient = ForeignKeyField(User, on_delete='CASCADE')
        doctor = ForeignKeyField(User, on_delete='CASCADE')
        from_day = DateField()
        to_day = DateField()
        status = CharField(max_length=10, default='waiting')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'waitlist_entry'
            indexes = ((('doctor', 'status', 'created_at'), False),)

    class WaitlistOffer(Model):
        entry = ForeignKeyField(WaitlistEntry, on_delete='CASCADE')
        doctor = ForeignKeyField(User, on_delete='CASCADE')
        start = DateTimeField()
        end = DateTimeField()
        status = CharField(max_length=10, default='held')
        expires_at = DateTimeField()
        freed_by = ForeignKeyField(Appointment, null=True, on_delete='SET NULL')
        booked = ForeignKeyField(Appointment, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'waitlist_offer'
            indexes = ((('entry', 'start'), True), (('status', 'expires_at'), False))

    db.create_tables([WaitlistEntry, WaitlistOffer])
    # One holder per slot: the database settles a race for a hold.
    db.execute_sql(
        'CREATE UNIQUE INDEX "waitlist_offer_slot_held" ON "waitlist_offer" '
        '("doctor_id", "start") WHERE status = \'held\''
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_table('waitlist_offer'))
    migrator.migrate(migrator.drop_table('waitlist_entry'))
