"""The clinic's tables. Rules that govern the data live in the domain modules named after it
(appointments.py, people.py, outbox.py, ...); this module only says what is stored.

Instants are UTCDateTimeField (aware UTC in Python, naive UTC in the database). The schema is
created and upgraded by the numbered files in clinic/migrations/, never by create_tables() at
run time; tests/test_migrations.py checks the two agree.
"""

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    CharField,
    DateField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    make_snake_case,
)

from clinic.clock import now
from clinic.db import JSONField, UTCDateTimeField, database

ROLES = ("patient", "doctor", "admin", "desk")  # desk: the front desk, no medical records
APPOINTMENT_STATUSES = ("booked", "confirmed", "arrived", "completed", "cancelled", "no_show")
ACTIVE_STATUSES = ("booked", "confirmed")  # still going to happen
# "arrived": checked in at the desk, waiting to be seen; it keeps its slot taken.
BUSY_STATUSES = (*ACTIVE_STATUSES, "arrived")  # the patient is expected, or there
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed", "skipped")
CHANNELS = ("email", "sms")  # how a message goes out
CHANNEL_CHOICES = ("email", "sms", "both")  # what a patient may choose
# What the SMS gateway last said of a message it took (its status callbacks).
DELIVERY_STATES = ("", "queued", "sending", "sent", "delivered", "undelivered", "failed")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def table_name(model):
    """The table of ``model``: its class name in snake case (DailyStat: ``daily_stat``)."""
    return make_snake_case(model.__name__)


class BaseModel(Model):
    class Meta:
        database = database
        table_function = table_name
        legacy_table_names = False  # index names begin with table_name() too


class User(BaseModel):
    id = AutoField()
    # Stored lower-cased; None for a patient registered at the desk without an address.
    email = CharField(max_length=254, unique=True, null=True)
    name = CharField(max_length=200)
    role = CharField(max_length=10, choices=[(r, r) for r in ROLES])
    password_hash = CharField(max_length=200)
    active = BooleanField(default=True)
    created_at = UTCDateTimeField(default=now)
    # A code of CLINIC_LANGUAGES for their pages and every message they get; "": not chosen.
    language = CharField(max_length=10, default="")

    def __str__(self):
        return self.name


class Doctor(BaseModel):
    """A doctor's practice details; its id is the user's id."""

    user = ForeignKeyField(User, primary_key=True, backref="doctor_profile", on_delete="CASCADE")
    specialization = CharField(max_length=100, index=True)
    slot_minutes = IntegerField(default=30)
    # {"mon": [["09:00", "13:00"], ["14:00", "17:00"]], ...} in clinic-local wall time.
    working_hours = JSONField(default=dict)


class Patient(BaseModel):
    """A patient's personal details; its id is the user's id."""

    user = ForeignKeyField(User, primary_key=True, backref="patient_profile", on_delete="CASCADE")
    date_of_birth = DateField(null=True)
    phone = CharField(max_length=40, default="")
    channel = CharField(max_length=5, default="email")  # CHANNEL_CHOICES


class Appointment(BaseModel):
    id = AutoField()
    # Both point at users (their profiles share the user's id): appointment.doctor.name works
    # without a join through the profile.
    patient = ForeignKeyField(User, backref="appointments", on_delete="RESTRICT")
    doctor = ForeignKeyField(User, backref="doctor_appointments", on_delete="RESTRICT")
    start = UTCDateTimeField()
    end = UTCDateTimeField()
    reason = TextField(default="")
    status = CharField(max_length=10, default="booked")
    archived = BooleanField(default=False)
    created_at = UTCDateTimeField(default=now)
    updated_at = UTCDateTimeField(default=now)
    # booked or confirmed: what a no-show was before its mark, so the doctor can undo the mark.
    prior_status = CharField(max_length=10, null=True)
    no_show_undone_at = UTCDateTimeField(null=True)  # the no-shows job marks it no more

    class Meta:
        indexes = (
            (("status", "start"), False),
            (("doctor", "start"), False),
            (("patient", "start"), False),
        )

    @classmethod
    def with_people(cls):
        """Appointments with their patient and doctor users (``.patient``, ``.doctor``) and the
        doctor's practice details (``.doctor_profile``) in one query."""
        patient_user = User.alias("patient_user")
        doctor_user = User.alias("doctor_user")
        return (cls
                .select(cls, patient_user, doctor_user, Doctor)
                .join(patient_user, on=(cls.patient == patient_user.id), attr="patient")
                .switch(cls)
                .join(doctor_user, on=(cls.doctor == doctor_user.id), attr="doctor")
                .switch(cls)
                .join(Doctor, on=(Doctor.user == cls.doctor), attr="doctor_profile"))


# One live appointment per doctor and start: the database, not Python, settles a race for a slot.
Appointment.add_index(
    Appointment.index(
        Appointment.doctor, Appointment.start, unique=True,
        where=(SQL("status <> 'cancelled'")), name="appointment_slot_taken",
    )
)


class Treatment(BaseModel):
    appointment = ForeignKeyField(Appointment, primary_key=True, backref="treatment_rows",
                                  on_delete="RESTRICT")
    visit_type = CharField(max_length=100)
    symptoms = TextField(default="")
    diagnosis = TextField(default="")
    treatment = TextField(default="")
    prescription = TextField(default="")
    notes = TextField(default="")
    created_at = UTCDateTimeField(default=now)
    amended_at = UTCDateTimeField(null=True)  # the latest Amendment's time


class Session(BaseModel):
    """A sign-in: a browser cookie (kind 'web') or an API bearer token (kind 'api').
    Only the SHA-256 of the token is kept."""

    token_hash = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    kind = CharField(max_length=3, default="web")
    created_at = UTCDateTimeField(default=now)
    last_seen_at = UTCDateTimeField(default=now)
    expires_at = UTCDateTimeField(index=True)
    ip = CharField(max_length=64, default="")


class LoginAttempt(BaseModel):
    email = CharField(max_length=254)
    ip = CharField(max_length=64)
    at = UTCDateTimeField(default=now)
    success = BooleanField(default=False)

    class Meta:
        indexes = ((("email", "at"), False), (("ip", "at"), False))


class Message(BaseModel):
    """The outbox: every email and SMS is a row here before anything tries to send it."""

    key = CharField(max_length=200, unique=True)  # makes a second run harmless
    kind = CharField(max_length=40)
    recipient = CharField(max_length=254)
    user = ForeignKeyField(User, null=True, backref="messages", on_delete="SET NULL")
    appointment = ForeignKeyField(Appointment, null=True, backref="messages",
                                  on_delete="SET NULL")
    subject = CharField(max_length=300)
    text_body = TextField(default="")
    html_body = TextField(default="")
    attachments = JSONField(default=list)  # [{"filename", "content_type", "path"|"text"}]
    message_id = CharField(max_length=200)
    status = CharField(max_length=10, default="pending")
    attempts = IntegerField(default=0)
    last_error = TextField(default="")
    priority = IntegerField(default=0)  # higher goes first
    due_at = UTCDateTimeField(default=now)  # not before
    claimed_at = UTCDateTimeField(null=True)
    sent_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=now)
    updated_at = UTCDateTimeField(default=now)
    # An SMS's recipient is an E.164 phone and its text_body the text; subject and html are "".
    channel = CharField(max_length=5, default="email")  # CHANNELS
    segments = IntegerField(default=0)  # an SMS's parts, as counted by clinic/mail/sms_text.py
    gateway_id = CharField(max_length=64, default="", index=True)  # the gateway's message SID
    delivery = CharField(max_length=12, default="")  # DELIVERY_STATES
    price = CharField(max_length=20, default="")  # what the gateway charged, if it said
    price_unit = CharField(max_length=3, default="")

    class Meta:
        indexes = ((("status", "due_at"), False), (("kind", "created_at"), False),
                   (("claimed_at",), False))  # the rate limit counts the last minute's claims


class TaskRecord(BaseModel):
    """What a background task did: state and progress for GET /api/tasks/<id>."""

    task_id = CharField(max_length=64, unique=True)
    name = CharField(max_length=80)
    user = ForeignKeyField(User, null=True, backref="tasks", on_delete="SET NULL")
    state = CharField(max_length=10, default="PENDING")
    current = IntegerField(default=0)
    total = IntegerField(default=0)
    status = TextField(default="")
    result = JSONField(null=True)
    created_at = UTCDateTimeField(default=now, index=True)
    updated_at = UTCDateTimeField(default=now)


class MonthlyReport(BaseModel):
    doctor = ForeignKeyField(User, backref="reports", on_delete="CASCADE")
    month = CharField(max_length=7)  # YYYY-MM
    totals = JSONField(default=dict)
    message = ForeignKeyField(Message, null=True, on_delete="SET NULL")
    created_at = UTCDateTimeField(default=now)

    class Meta:
        indexes = ((("doctor", "month"), True),)


class Export(BaseModel):
    patient = ForeignKeyField(User, backref="exports", on_delete="CASCADE")
    task_id = CharField(max_length=64, unique=True)
    filename = CharField(max_length=200, default="")
    rows = IntegerField(default=0)
    created_at = UTCDateTimeField(default=now)
    expires_at = UTCDateTimeField(index=True)
    deleted = BooleanField(default=False)


class Review(BaseModel):
    appointment = ForeignKeyField(Appointment, unique=True, backref="reviews",
                                  on_delete="CASCADE")
    patient = ForeignKeyField(User, backref="reviews_given", on_delete="CASCADE")
    doctor = ForeignKeyField(User, backref="reviews", on_delete="CASCADE")
    rating = IntegerField()
    comment = TextField(default="")
    created_at = UTCDateTimeField(default=now)


class DoctorRating(BaseModel):
    """Each doctor's rating, kept up to date as reviews arrive."""

    doctor = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
    count = IntegerField(default=0)
    average = FloatField(default=0.0)
    stars_1 = IntegerField(default=0)
    stars_2 = IntegerField(default=0)
    stars_3 = IntegerField(default=0)
    stars_4 = IntegerField(default=0)
    stars_5 = IntegerField(default=0)


class DailyStat(BaseModel):
    day = DateField(unique=True)  # clinic-local date
    booked = IntegerField(default=0)
    confirmed = IntegerField(default=0)
    completed = IntegerField(default=0)
    cancelled = IntegerField(default=0)
    no_show = IntegerField(default=0)
    new_patients = IntegerField(default=0)
    reviews = IntegerField(default=0)
    emails_sent = IntegerField(default=0)
    emails_failed = IntegerField(default=0)
    sms_sent = IntegerField(default=0)
    sms_failed = IntegerField(default=0)
    computed_at = UTCDateTimeField(default=now)


class JobState(BaseModel):
    """When each scheduled job last fell due and ran; the scheduler claims a due time here
    with a conditional UPDATE, so a job fires once per due time whatever the number of ticks."""

    name = CharField(max_length=60, primary_key=True)
    last_due_at = UTCDateTimeField(null=True)
    last_started_at = UTCDateTimeField(null=True)
    last_finished_at = UTCDateTimeField(null=True)
    last_result = TextField(default="")

    @classmethod
    def started_at(cls, name):
        """``last_started_at`` of the row ``name``, or None."""
        return cls.select(cls.last_started_at).where(cls.name == name).scalar()


# What the jobs page shows of a background task (clinic.jobs.runs records it).
TASK_RUN_STATES = ("queued", "running", "succeeded", "failed", "retrying", "revoked", "expired",
                   "interrupted", "cancelled")


class TaskRun(BaseModel):
    """One background task as the jobs page shows it, written from Huey's signals. A task that
    runs again (Huey's retries, Retry on the jobs page) keeps its row: ``attempt`` counts its
    runs, and the state, times and runtime are those of the latest one."""

    task_id = CharField(max_length=64, unique=True)  # Huey's task id
    job = CharField(max_length=80)  # the scheduled job's name for run_job, else the task's name
    task = CharField(max_length=200)  # Huey's registry name, e.g. "clinic.jobs.scheduler.run_job"
    summary = CharField(max_length=300, default="")  # the arguments, ids only
    call = JSONField(null=True)  # {"args": [...], "kwargs": {...}} to run it again
    priority = IntegerField(null=True)
    progress_id = CharField(max_length=64, default="")  # its TaskRecord, if it reports progress
    state = CharField(max_length=12, default="queued")
    queued_at = UTCDateTimeField(default=now, index=True)
    started_at = UTCDateTimeField(null=True, index=True)
    finished_at = UTCDateTimeField(null=True)
    runtime = FloatField(null=True)  # seconds
    attempt = IntegerField(default=0)
    error = TextField(default="")
    traceback = TextField(default="")
    worker = CharField(max_length=100, default="")  # "host pid N" of the process that ran it
    result = CharField(max_length=300, default="")  # a scheduled job's result: "sent 3, failed 0"
    idle = BooleanField(default=False)  # it found nothing to do (every count in its result is 0)

    class Meta:
        indexes = ((("job", "queued_at"), False), (("state", "queued_at"), False))


AUDIT_OUTCOMES = ("allowed", "refused")


class AuditEntry(BaseModel):
    """One view or export of a patient's medical history, or one access refused (clinic/audit.py).
    Only ever added: triggers made by migration 0003 make the database refuse any UPDATE or
    DELETE. Plain ids, not foreign keys: the log keeps naming people whatever happens to them,
    and a name as it was at the time."""

    at = UTCDateTimeField(default=now, index=True)
    user_id = IntegerField(null=True)  # who; None for nobody signed in
    user_name = CharField(max_length=200, default="")
    role = CharField(max_length=10, default="")
    patient_id = IntegerField(null=True)  # whose record, when known
    patient_name = CharField(max_length=200, default="")
    action = CharField(max_length=40)  # "view history", "export history", ...
    outcome = CharField(max_length=10)  # allowed | refused
    reason = CharField(max_length=300, default="")  # why it was refused
    address = CharField(max_length=64, default="")  # the client's IP address
    path = CharField(max_length=300, default="")  # the request, e.g. "GET /doctor/patients/7"

    class Meta:
        indexes = ((("patient_id", "at"), False), (("user_id", "at"), False))


ANNOUNCEMENT_STATES = ("queued", "writing", "written", "failed")
OPT_OUT_KINDS = ("reminders", "reviews", "announcements")


class Announcement(BaseModel):
    """A message from the clinic to a group of patients (clinic/announcements.py). Each
    recipient's email is an outbox row with the key ``announcement:<id>:<user id>``."""

    author = ForeignKeyField(User, null=True, backref="announcements", on_delete="SET NULL")
    subject = CharField(max_length=200)
    text = TextField()
    # {"type": "all"} | {"type": "doctor", "doctor_id": 3}
    # | {"type": "appointments", "from": "2026-03-01", "to": "2026-03-31"}
    audience = JSONField()
    state = CharField(max_length=10, default="queued")  # ANNOUNCEMENT_STATES
    recipients = IntegerField(default=0)  # patients in the audience
    queued = IntegerField(default=0)  # outbox rows written for sending
    skipped = IntegerField(default=0)  # patients who opted out of announcements
    task_id = CharField(max_length=64, default="")  # the latest run's progress record
    error = TextField(default="")
    created_at = UTCDateTimeField(default=now, index=True)
    updated_at = UTCDateTimeField(default=now)
    finished_at = UTCDateTimeField(null=True)


class OptOut(BaseModel):
    """A patient who does not want one kind of optional email (clinic/preferences.py)."""

    user = ForeignKeyField(User, backref="opt_outs", on_delete="CASCADE")
    kind = CharField(max_length=20)  # OPT_OUT_KINDS
    via = CharField(max_length=10, default="page")  # page | link (the one-click link)
    created_at = UTCDateTimeField(default=now)

    class Meta:
        indexes = ((("user", "kind"), True),)


class AccountToken(BaseModel):
    """A link emailed to let its holder act once without signing in: a password reset
    (purpose 'reset') or the confirmation of a new email address ('email'), see
    clinic/accounts.py. Only the token's SHA-256 is kept."""

    user = ForeignKeyField(User, backref="account_tokens", on_delete="CASCADE")
    purpose = CharField(max_length=10)
    token_hash = CharField(max_length=64, unique=True)
    new_email = CharField(max_length=254, default="")  # for 'email'
    created_at = UTCDateTimeField(default=now)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)


class Totp(BaseModel):
    """A user's authenticator (RFC 6238). The secret must be kept to check codes; it never goes
    into a log or the audit. Off until ``enabled_at``, set when the first code is confirmed."""

    user = ForeignKeyField(User, primary_key=True, backref="totp_rows", on_delete="CASCADE")
    secret = CharField(max_length=64)
    enabled_at = UTCDateTimeField(null=True)
    last_step = IntegerField(default=0)  # the newest time step accepted: a code works once
    created_at = UTCDateTimeField(default=now)


class RecoveryCode(BaseModel):
    """A single-use code that stands in for a TOTP code; only its SHA-256 is kept."""

    user = ForeignKeyField(User, backref="recovery_codes", on_delete="CASCADE")
    code_hash = CharField(max_length=64, unique=True)
    used_at = UTCDateTimeField(null=True)


class ClinicSettings(BaseModel):
    """What the admin saved on the Clinic page: one row (id 1). A CLINIC_ variable that is set
    wins over its column (clinic/details.py); an empty column means "not set here"."""

    name = CharField(max_length=200, default="")
    address = CharField(max_length=300, default="")
    phone = CharField(max_length=20, default="")  # E.164
    timezone = CharField(max_length=64, default="")  # IANA name
    website = CharField(max_length=300, default="")
    # Saved once by an admin: until then an admin's sign-in lands on the Clinic page.
    timezone_confirmed = BooleanField(default=False)
    updated_at = UTCDateTimeField(null=True)
    updated_by = ForeignKeyField(User, null=True, on_delete="SET NULL")


WAITLIST_STATUSES = ("waiting", "booked", "left")
OFFER_STATUSES = ("held", "claimed", "expired")


class WaitlistEntry(BaseModel):
    """A patient waiting for a freed slot with a doctor on a clinic-local day from ``from_day``
    to ``to_day`` (both included); clinic/waitlist.py holds the rules."""

    patient = ForeignKeyField(User, backref="waitlist_entries", on_delete="CASCADE")
    doctor = ForeignKeyField(User, backref="waitlisted", on_delete="CASCADE")
    from_day = DateField()
    to_day = DateField()
    status = CharField(max_length=10, default="waiting")  # WAITLIST_STATUSES
    created_at = UTCDateTimeField(default=now)
    updated_at = UTCDateTimeField(default=now)

    class Meta:
        indexes = ((("doctor", "status", "created_at"), False),)


class WaitlistOffer(BaseModel):
    """A freed slot offered to one entry, held for it until ``expires_at``. At most one offer
    per (doctor, start) is ``held`` (the partial unique index below), and an entry is offered
    a start once."""

    entry = ForeignKeyField(WaitlistEntry, backref="offers", on_delete="CASCADE")
    doctor = ForeignKeyField(User, backref="waitlist_offers", on_delete="CASCADE")
    start = UTCDateTimeField()
    end = UTCDateTimeField()
    status = CharField(max_length=10, default="held")  # OFFER_STATUSES
    expires_at = UTCDateTimeField()
    # The appointment whose cancellation or move freed the slot, and the one the claim booked.
    freed_by = ForeignKeyField(Appointment, null=True, backref="waitlist_offers",
                               on_delete="SET NULL")
    booked = ForeignKeyField(Appointment, null=True, backref="waitlist_claims",
                             on_delete="SET NULL")
    created_at = UTCDateTimeField(default=now)
    updated_at = UTCDateTimeField(default=now)

    class Meta:
        indexes = ((("entry", "start"), True), (("status", "expires_at"), False))


# One holder per slot: the database refuses a second live hold on the same doctor and start.
WaitlistOffer.add_index(
    WaitlistOffer.index(
        WaitlistOffer.doctor, WaitlistOffer.start, unique=True,
        where=(SQL("status = 'held'")), name="waitlist_offer_slot_held",
    )
)


CANCELLATION_STATES = ("queued", "running", "done", "failed")


class Cancellation(BaseModel):
    """Appointments the clinic cancels at once, each patient told why (clinic/cancellations.py):
    the visits in a doctor's time off, a deactivated doctor's bookings. The list is kept so a
    run that stopped half-way can be run again."""

    reason = CharField(max_length=300)
    appointment_ids = JSONField(default=list)
    author = ForeignKeyField(User, null=True, backref="cancellations", on_delete="SET NULL")
    state = CharField(max_length=10, default="queued")  # CANCELLATION_STATES
    task_id = CharField(max_length=64, default="")  # the latest run's progress record
    cancelled = IntegerField(default=0)  # cancelled by this batch (and told)
    skipped = IntegerField(default=0)  # cancelled or over already, left alone
    error = TextField(default="")
    created_at = UTCDateTimeField(default=now)
    finished_at = UTCDateTimeField(null=True)


TIME_OFF_STATES = ("requested", "approved", "declined")


class TimeOff(BaseModel):
    """A doctor away (``doctor``), or the whole clinic closed (``doctor`` None: a holiday), from
    ``start`` to ``end``. Only approved time off blocks slots; a doctor's own request waits for an
    admin."""

    doctor = ForeignKeyField(User, null=True, backref="time_off", on_delete="CASCADE")
    start = UTCDateTimeField()
    end = UTCDateTimeField()
    reason = CharField(max_length=200, default="")
    status = CharField(max_length=10, default="approved")  # TIME_OFF_STATES
    requested_by = ForeignKeyField(User, null=True, backref="time_off_requests",
                                   on_delete="SET NULL")
    cancellation = ForeignKeyField(Cancellation, null=True, on_delete="SET NULL")
    created_at = UTCDateTimeField(default=now)

    class Meta:
        indexes = ((("status", "start"), False), (("doctor", "start"), False))


class VisitType(BaseModel):
    """A kind of visit with its own length (a 60-minute first consultation, a 10-minute
    injection), offered by the doctors linked to it."""

    name = CharField(max_length=100)
    minutes = IntegerField()
    created_at = UTCDateTimeField(default=now)


class VisitTypeDoctor(BaseModel):
    visit_type = ForeignKeyField(VisitType, backref="doctor_links", on_delete="CASCADE")
    doctor = ForeignKeyField(User, backref="visit_type_links", on_delete="CASCADE")

    class Meta:
        indexes = ((("visit_type", "doctor"), True),)


class Amendment(BaseModel):
    """One correction of a completed visit's record (clinic/records.py): the Treatment row holds
    the text in force, and each amendment keeps what the changed fields said before and after,
    who changed them (and their name then) and when. Only ever added."""

    appointment = ForeignKeyField(Appointment, backref="amendments", on_delete="RESTRICT")
    author = ForeignKeyField(User, null=True, on_delete="SET NULL")
    author_name = CharField(max_length=200, default="")
    at = UTCDateTimeField(default=now)
    before = JSONField(default=dict)  # {field: the earlier text} of the changed fields
    after = JSONField(default=dict)  # {field: the new text}
    reason = TextField(default="")

    class Meta:
        indexes = ((("appointment", "at"), False),)


class SmsOptOut(BaseModel):
    """A phone number that replied STOP (clinic/mail/sms.py): no SMS goes to it until it replies
    START. By number, not by patient: the number's owner said it, whoever's account holds it."""

    phone = CharField(max_length=40, unique=True)  # E.164
    keyword = CharField(max_length=20, default="STOP")
    created_at = UTCDateTimeField(default=now)


MODELS = [
    User, Doctor, Patient, Appointment, Treatment, Session, LoginAttempt, Message, TaskRecord,
    MonthlyReport, Export, Review, DoctorRating, DailyStat, JobState,
    TaskRun,
    AuditEntry,
    Announcement, OptOut,
    AccountToken, Totp, RecoveryCode,
    ClinicSettings,
    WaitlistEntry, WaitlistOffer,
    Cancellation, TimeOff, VisitType, VisitTypeDoctor,
    Amendment,
    SmsOptOut,
]
