"""The clinic's first schema: people, appointments, treatments, sign-ins, the outbox, jobs.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class User(Model):
        email = CharField(unique=True, max_length=254)
        name = CharField(max_length=200)
        role = CharField(max_length=10)
        password_hash = CharField(max_length=200)
        active = BooleanField(default=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'user'
    db.create_tables([User])

    class Patient(Model):
        user = ForeignKeyField(User, primary_key=True, on_delete='CASCADE')
        date_of_birth = DateField(null=True)
        phone = CharField(max_length=40, default='')
        class Meta:
            database = db
            table_name = 'patient'
    db.create_tables([Patient])

    class Doctor(Model):
        user = ForeignKeyField(User, primary_key=True, on_delete='CASCADE')
        specialization = CharField(index=True, max_length=100)
        slot_minutes = IntegerField(default=30)
        working_hours = TextField(default='{}')
        class Meta:
            database = db
            table_name = 'doctor'
    db.create_tables([Doctor])

    class Appointment(Model):
        patient = ForeignKeyField(User, on_delete='RESTRICT')
        doctor = ForeignKeyField(User, on_delete='RESTRICT')
        start = DateTimeField()
        end = DateTimeField()
        reason = TextField(default='')
        status = CharField(max_length=10, default='booked')
        archived = BooleanField(default=False)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'appointment'
            indexes = ((('status', 'start'), False), (('doctor', 'start'), False), (('patient', 'start'), False))
    db.create_tables([Appointment])
    # One live appointment per doctor and start: the database settles a race for a slot.
    db.execute_sql(
        'CREATE UNIQUE INDEX "appointment_slot_taken" ON "appointment" ("doctor_id", "start") '
        "WHERE status <> 'cancelled'"
    )

    class DailyStat(Model):
        day = DateField(unique=True)
        booked = IntegerField(default=0)
        confirmed = IntegerField(default=0)
        completed = IntegerField(default=0)
        cancelled = IntegerField(default=0)
        no_show = IntegerField(default=0)
        new_patients = IntegerField(default=0)
        reviews = IntegerField(default=0)
        emails_sent = IntegerField(default=0)
        emails_failed = IntegerField(default=0)
        computed_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'daily_stat'
    db.create_tables([DailyStat])

    class DoctorRating(Model):
        doctor = ForeignKeyField(User, primary_key=True, on_delete='CASCADE')
        count = IntegerField(default=0)
        average = FloatField(default=0.0)
        stars_1 = IntegerField(default=0)
        stars_2 = IntegerField(default=0)
        stars_3 = IntegerField(default=0)
        stars_4 = IntegerField(default=0)
        stars_5 = IntegerField(default=0)
        class Meta:
            database = db
            table_name = 'doctor_rating'
    db.create_tables([DoctorRating])

    class Export(Model):
        patient = ForeignKeyField(User, on_delete='CASCADE')
        task_id = CharField(unique=True, max_length=64)
        filename = CharField(max_length=200, default='')
        rows = IntegerField(default=0)
        created_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        deleted = BooleanField(default=False)
        class Meta:
            database = db
            table_name = 'export'
    db.create_tables([Export])

    class JobState(Model):
        name = CharField(primary_key=True, max_length=60)
        last_due_at = DateTimeField(null=True)
        last_started_at = DateTimeField(null=True)
        last_finished_at = DateTimeField(null=True)
        last_result = TextField(default='')
        class Meta:
            database = db
            table_name = 'job_state'
    db.create_tables([JobState])

    class LoginAttempt(Model):
        email = CharField(max_length=254)
        ip = CharField(max_length=64)
        at = DateTimeField()
        success = BooleanField(default=False)
        class Meta:
            database = db
            table_name = 'login_attempt'
            indexes = ((('email', 'at'), False), (('ip', 'at'), False))
    db.create_tables([LoginAttempt])

    class Message(Model):
        key = CharField(unique=True, max_length=200)
        kind = CharField(max_length=40)
        recipient = CharField(max_length=254)
        user = ForeignKeyField(User, null=True, on_delete='SET NULL')
        appointment = ForeignKeyField(Appointment, null=True, on_delete='SET NULL')
        subject = CharField(max_length=300)
        text_body = TextField(default='')
        html_body = TextField(default='')
        attachments = TextField(default='[]')
        message_id = CharField(max_length=200)
        status = CharField(max_length=10, default='pending')
        attempts = IntegerField(default=0)
        last_error = TextField(default='')
        priority = IntegerField(default=0)
        due_at = DateTimeField()
        claimed_at = DateTimeField(null=True)
        sent_at = DateTimeField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'message'
            indexes = ((('status', 'due_at'), False), (('kind', 'created_at'), False))
    db.create_tables([Message])

    class MonthlyReport(Model):
        doctor = ForeignKeyField(User, on_delete='CASCADE')
        month = CharField(max_length=7)
        totals = TextField(default='{}')
        message = ForeignKeyField(Message, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'monthly_report'
            indexes = ((('doctor', 'month'), True),)
    db.create_tables([MonthlyReport])

    class Review(Model):
        appointment = ForeignKeyField(Appointment, unique=True, on_delete='CASCADE')
        patient = ForeignKeyField(User, on_delete='CASCADE')
        doctor = ForeignKeyField(User, on_delete='CASCADE')
        rating = IntegerField()
        comment = TextField(default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'review'
    db.create_tables([Review])

    class Session(Model):
        token_hash = CharField(unique=True, max_length=64)
        user = ForeignKeyField(User, on_delete='CASCADE')
        kind = CharField(max_length=3, default='web')
        created_at = DateTimeField()
        last_seen_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        ip = CharField(max_length=64, default='')
        class Meta:
            database = db
            table_name = 'session'
    db.create_tables([Session])

    class TaskRecord(Model):
        task_id = CharField(unique=True, max_length=64)
        name = CharField(max_length=80)
        user = ForeignKeyField(User, null=True, on_delete='SET NULL')
        state = CharField(max_length=10, default='PENDING')
        current = IntegerField(default=0)
        total = IntegerField(default=0)
        status = TextField(default='')
        result = TextField(null=True)
        created_at = DateTimeField(index=True)
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'task_record'
    db.create_tables([TaskRecord])

    class Treatment(Model):
        appointment = ForeignKeyField(Appointment, primary_key=True, on_delete='RESTRICT')
        visit_type = CharField(max_length=100)
        symptoms = TextField(default='')
        diagnosis = TextField(default='')
        treatment = TextField(default='')
        prescription = TextField(default='')
        notes = TextField(default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'treatment'
    db.create_tables([Treatment])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('treatment'))
    migrator.migrate(migrator.drop_table('task_record'))
    migrator.migrate(migrator.drop_table('session'))
    migrator.migrate(migrator.drop_table('review'))
    migrator.migrate(migrator.drop_table('monthly_report'))
    migrator.migrate(migrator.drop_table('message'))
    migrator.migrate(migrator.drop_table('login_attempt'))
    migrator.migrate(migrator.drop_table('job_state'))
    migrator.migrate(migrator.drop_table('export'))
    migrator.migrate(migrator.drop_table('doctor_rating'))
    migrator.migrate(migrator.drop_table('daily_stat'))
    migrator.migrate(migrator.drop_table('appointment'))
    migrator.migrate(migrator.drop_table('doctor'))
    migrator.migrate(migrator.drop_table('patient'))
    migrator.migrate(migrator.drop_table('user'))
