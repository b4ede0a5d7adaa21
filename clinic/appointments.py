"""Appointments: the slot grid, booking, rescheduling, cancelling, completing, no-shows, and who
may see which appointment.

A slot is bookable when it is in the future, inside the doctor's working hours, on the doctor's
slot grid and free. The partial unique index ``appointment_slot_taken`` (doctor, start) over
every appointment that is not cancelled settles races in the database; the checks here give the
clear message before that.
"""

from collections import namedtuple
from datetime import UTC, date, datetime, time, timedelta

from peewee import IntegrityError, fn

from clinic import clock, settings
from clinic.db import database, locked
from clinic.errors import Conflict, Forbidden, Invalid, NoAccess, NotFound
from clinic.models import (
    ACTIVE_STATUSES,
    APPOINTMENT_STATUSES,
    WEEKDAYS,
    Appointment,
    Doctor,
    Patient,
    Treatment,
    User,
)

TREATMENT_FIELDS = ("visit_type", "symptoms", "diagnosis", "treatment", "prescription", "notes")
# No visit is this long: an overlap search starts this far before the time asked about, so the
# (doctor, start) / (patient, start) index reads a day of rows, not the whole history.
LONGEST_VISIT = timedelta(days=1)
SLOT_TAKEN = "This time was just taken by someone else. Please choose another slot."
ALREADY_YOURS = "You already booked this time: it is in your appointments."


def _taken(patient_id, doctor_id, start):
    """Why a slot cannot be booked: the patient's own booking (a second click), or another's."""
    own = Appointment.select().where(
        Appointment.patient == patient_id, Appointment.doctor == doctor_id,
        Appointment.start == start, Appointment.status.in_(ACTIVE_STATUSES))
    return ALREADY_YOURS if own.exists() else SLOT_TAKEN


def _wall_to_utc(day, hhmm, tz):
    """Clinic-local wall time on ``day`` as a UTC instant, or None when that wall time does not
    exist (the hour skipped when clocks go forward). An hour that happens twice (clocks go back)
    means its first occurrence."""
    hour, minute = map(int, hhmm.split(":")) if isinstance(hhmm, str) else (hhmm.hour,
                                                                             hhmm.minute)
    local = datetime.combine(day, time(hour, minute), tzinfo=tz)
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


def grid(doctor, day, tz=None):
    """Every slot start (UTC) of ``doctor``'s working hours on the clinic-local ``day``."""
    tz = tz or clock.zone()
    step = timedelta(minutes=doctor.slot_minutes)
    starts = []
    for start_text, end_text in doctor.working_hours.get(WEEKDAYS[day.weekday()], []):
        start = datetime.combine(day, time.fromisoformat(start_text))
        end = datetime.combine(day, time.fromisoformat(end_text))
        while start + step <= end:
            instant = _wall_to_utc(day, start.time(), tz)
            if instant is not None:
                starts.append(instant)
            start += step
    return sorted(set(starts))


def day_bounds(day, tz=None):
    """[start, end) of a clinic-local day as UTC instants (23 or 25 hours on DST days)."""
    tz = tz or clock.zone()
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def _busy(doctor_id, start, end, exclude=None):
    query = Appointment.select(Appointment.start, Appointment.end).where(
        Appointment.doctor == doctor_id, Appointment.status != "cancelled",
        Appointment.start > start - LONGEST_VISIT, Appointment.start < end,
        Appointment.end > start)
    if exclude is not None:
        query = query.where(Appointment.id != exclude)
    return [(row.start, row.end) for row in query]


def free_slots(doctor, day, now=None, exclude=None):
    """Bookable slot starts (UTC, ascending) for ``doctor`` on the clinic-local ``day``."""
    now = now or clock.now()
    horizon = now + settings.get().booking_horizon
    if not doctor.user.active:
        return []
    step = timedelta(minutes=doctor.slot_minutes)
    lo, hi = day_bounds(day)
    busy = _busy(doctor.user_id, lo, hi + step, exclude=exclude)
    return [s for s in grid(doctor, day) if now < s <= horizon
            and not any(b_start < s + step and b_end > s for b_start, b_end in busy)]


def parse_start(raw):
    """An ISO 8601 start with an offset (the API) or clinic-local wall time (the forms)."""
    try:
        value = datetime.fromisoformat((raw or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("start must be an ISO 8601 date and time, such as "
                      "2026-03-02T09:30:00+01:00", {"start": "Choose a valid time."}) from None
    return clock.to_utc(value)


def _check_bookable(doctor, start, now, exclude=None, patient_id=None):
    if doctor is None or not doctor.user.active:
        raise Invalid("This doctor is not taking bookings.",
                      {"doctor_id": "This doctor is not taking bookings."})
    if start <= now:
        raise Invalid("That time has already passed.", {"start": "Choose a time in the future."})
    if start > now + settings.get().booking_horizon:
        raise Invalid("That time is too far ahead to book.",
                      {"start": "Choose a time closer to today."})
    day = clock.local(start).date()
    if start not in grid(doctor, day):
        raise Invalid("The doctor does not see patients at that time.",
                      {"start": "Choose one of the offered times."})
    end = start + timedelta(minutes=doctor.slot_minutes)
    if _busy(doctor.user_id, start, end, exclude=exclude):
        raise Conflict(_taken(patient_id, doctor.user_id, start))
    return end


def _check_patient_free(patient_id, start, end, exclude=None):
    clash = Appointment.select().where(
        Appointment.patient == patient_id, Appointment.status.in_(ACTIVE_STATUSES),
        Appointment.start > start - LONGEST_VISIT, Appointment.start < end,
        Appointment.end > start)
    if exclude is not None:
        clash = clash.where(Appointment.id != exclude)
    if clash.exists():
        raise Conflict("You already have an appointment at that time.")


def _doctor(doctor_id):
    try:
        doctor_id = int(doctor_id)
    except (TypeError, ValueError):
        raise Invalid("doctor_id must be a doctor's id",
                      {"doctor_id": "Choose a doctor."}) from None
    doctor = locked(Doctor.select(Doctor, User).join(User).where(Doctor.user == doctor_id))
    return doctor.first()


def book(patient_id, doctor_id, start, reason="", now=None):
    """Book ``start`` (an aware datetime) with the doctor for the patient. Raises Invalid for a
    time that is not bookable, Conflict when the slot or the patient is taken."""
    now = now or clock.now()
    reason = (reason or "").strip()
    if len(reason) > 2000:
        raise Invalid("The reason is too long.", {"reason": "Keep it under 2000 characters."})
    try:
        with database.atomic():
            doctor = _doctor(doctor_id)
            end = _check_bookable(doctor, start, now, patient_id=patient_id)
            if locked(Patient.select().where(Patient.user == patient_id)).first() is None:
                raise Invalid("Only patients can book appointments.")
            _check_patient_free(patient_id, start, end)
            appointment = Appointment.create(
                patient=patient_id, doctor=doctor.user_id, start=start, end=end, reason=reason,
                status="booked", created_at=now, updated_at=now)
            _after_booking(appointment, "booked")
    except IntegrityError:
        raise Conflict(_taken(patient_id, doctor_id, start)) from None
    return appointment


def reschedule(appointment, start, user, now=None):
    """Move an appointment to a new free slot with the same doctor."""
    now = now or clock.now()
    _check_changeable(appointment, user, now)
    try:
        with database.atomic():
            doctor = _doctor(appointment.doctor_id)
            end = _check_bookable(doctor, start, now, exclude=appointment.id)
            _check_patient_free(appointment.patient_id, start, end, exclude=appointment.id)
            changed = (Appointment.update(start=start, end=end, status="booked", updated_at=now)
                       .where(Appointment.id == appointment.id,
                              Appointment.status.in_(ACTIVE_STATUSES))
                       .execute())
            if not changed:
                raise Conflict("This appointment can no longer be changed.")
            appointment = Appointment.get_by_id(appointment.id)
            _after_booking(appointment, "rescheduled")
    except IntegrityError:
        raise Conflict(SLOT_TAKEN) from None
    return appointment


def _check_changeable(appointment, user, now):
    if appointment.status not in ACTIVE_STATUSES:
        raise Conflict(f"This appointment is {appointment.status.replace('_', ' ')} and can no "
                       "longer be changed.")
    if user is not None and user.role == "patient":
        cutoff = appointment.start - settings.get().cancel_cutoff
        if now > cutoff:
            hours = settings.get().cancel_cutoff.total_seconds() / 3600
            raise Conflict(f"Appointments can be changed online until {hours:g} hours before "
                           "they start. Please call the clinic.")
    elif appointment.start <= now and (user is None or user.role != "admin"):
        raise Conflict("This appointment has already started.")


def can_change(appointment, user, now=None):
    try:
        _check_changeable(appointment, user, now or clock.now())
    except Conflict:
        return False
    return True


def cancel(appointment, user, now=None):
    """Cancel a booked or confirmed appointment (patients until the cutoff)."""
    now = now or clock.now()
    _check_changeable(appointment, user, now)
    with database.atomic():
        changed = (Appointment.update(status="cancelled", updated_at=now)
                   .where(Appointment.id == appointment.id,
                          Appointment.status.in_(ACTIVE_STATUSES))
                   .execute())
        if not changed:
            raise Conflict("This appointment can no longer be cancelled.")
        appointment = Appointment.get_by_id(appointment.id)
        _after_cancel(appointment)
    return appointment


def confirm(appointment, now=None):
    now = now or clock.now()
    if appointment.status == "confirmed":
        return appointment
    changed = (Appointment.update(status="confirmed", updated_at=now)
               .where(Appointment.id == appointment.id, Appointment.status == "booked",
                      Appointment.start > now)
               .execute())
    if not changed:
        raise Conflict("This appointment can no longer be confirmed.")
    return Appointment.get_by_id(appointment.id)


# A doctor may complete a visit the no-show job marked: the patient came, and the doctor writes
# the treatment up after the grace period (CLINIC_NO_SHOW_AFTER) has passed.
COMPLETABLE = (*ACTIVE_STATUSES, "no_show")


def complete(appointment, doctor_user, fields, now=None):
    """Record the treatment and complete the visit: the doctor's own, from its day on."""
    now = now or clock.now()
    if appointment.doctor_id != doctor_user.id:
        raise Forbidden("Only the appointment's doctor can complete it.")
    if appointment.status not in COMPLETABLE:
        raise Conflict(f"This appointment is {appointment.status.replace('_', ' ')}.")
    if clock.local(now).date() < clock.local(appointment.start).date():
        raise Conflict("A visit can be completed from its day on.")
    values = {name: str(fields.get(name) or "").strip() for name in TREATMENT_FIELDS}
    errors = {}
    if not values["visit_type"]:
        errors["visit_type"] = "Enter the type of visit."
    for name, value in values.items():
        if len(value) > 10_000:
            errors[name] = "This is too long."
    if errors:
        raise Invalid(next(iter(errors.values())) if len(errors) == 1
                      else "Please correct the highlighted fields.", errors)
    with database.atomic():
        changed = (Appointment.update(status="completed", updated_at=now)
                   .where(Appointment.id == appointment.id,
                          Appointment.status.in_(COMPLETABLE))
                   .execute())
        if not changed:
            raise Conflict("This appointment was changed meanwhile; reload the page.")
        Treatment.create(appointment=appointment.id, created_at=now, **values)
    return Appointment.get_by_id(appointment.id)


def mark_no_show(appointment, user, now=None):
    now = now or clock.now()
    if user.role == "doctor" and appointment.doctor_id != user.id:
        raise Forbidden("Only the appointment's doctor can mark it.")
    if appointment.status not in ACTIVE_STATUSES:
        raise Conflict(f"This appointment is {appointment.status.replace('_', ' ')}.")
    if appointment.start > now:
        raise Conflict("A visit can be marked as missed only after it was due to start.")
    changed = (Appointment.update(status="no_show", updated_at=now)
               .where(Appointment.id == appointment.id,
                      Appointment.status.in_(ACTIVE_STATUSES))
               .execute())
    if not changed:
        raise Conflict("This appointment was changed meanwhile; reload the page.")
    return Appointment.get_by_id(appointment.id)


def mark_no_shows(now=None):
    """The no-shows job (every 15 minutes): every visit still booked or confirmed longer than
    CLINIC_NO_SHOW_AFTER (1 h) past its start becomes a no-show. One conditional UPDATE, served
    by the (status, start) index: a visit completed or cancelled a moment before is left alone,
    and two runs at once mark each visit once. Returns ``{"marked": n}``."""
    now = now or clock.now()
    marked = (Appointment.update(status="no_show", updated_at=now)
              .where(Appointment.status.in_(ACTIVE_STATUSES),
                     Appointment.start < now - settings.get().no_show_after)
              .execute())
    return {"marked": marked}


def _after_booking(appointment, event):
    """Called inside the booking transaction: the confirmation email (clinic/notices.py)."""
    from clinic.mail import notices  # notices reads this module

    notices.booked(appointment, event)


def _after_cancel(appointment):
    """Called inside the cancelling transaction: the cancellation email."""
    from clinic.mail import notices

    notices.cancelled(appointment)


# -- reading ------------------------------------------------------------------------------------


def with_people():
    """Appointments with their patient and doctor users (``.patient``, ``.doctor``) and the
    doctor's practice details (``.doctor_profile``) in one query."""
    PatientUser = User.alias("patient_user")
    DoctorUser = User.alias("doctor_user")
    return (Appointment
            .select(Appointment, PatientUser, DoctorUser, Doctor)
            .join(PatientUser, on=(Appointment.patient == PatientUser.id), attr="patient")
            .switch(Appointment)
            .join(DoctorUser, on=(Appointment.doctor == DoctorUser.id), attr="doctor")
            .switch(Appointment)
            .join(Doctor, on=(Doctor.user == Appointment.doctor), attr="doctor_profile"))


def visible_to(user):
    """Every appointment ``user`` may see."""
    query = with_people()
    if user.role == "patient":
        return query.where(Appointment.patient == user.id)
    if user.role == "doctor":
        return query.where(Appointment.doctor == user.id)
    return query


def appointment_for(user, appointment_id):
    """The appointment with this id if ``user`` may see it, else NotFound (never Forbidden:
    another patient's appointment ids are not to be probed)."""
    try:
        appointment_id = int(appointment_id)
    except (TypeError, ValueError):
        raise NotFound("No such appointment.") from None
    appointment = visible_to(user).where(Appointment.id == appointment_id).first()
    if appointment is None:
        raise NoAccess("No such appointment.", "appointment", appointment_id)
    return appointment


def upcoming(user, now=None, limit=200):
    """``user``'s appointments still to come (booked or confirmed), soonest first."""
    now = now or clock.now()
    return (visible_to(user).where(Appointment.end > now, Appointment.status.in_(ACTIVE_STATUSES))
            .order_by(Appointment.start).limit(limit))


# One line of a patient's list of appointments: the appointment and whom it is with.
Listed = namedtuple("Listed", "id start end status reason doctor_name specialization")


def patient_lists(patient_id, now=None, limit=200):
    """The patient's own page: ``(upcoming, past)``, upcoming booked or confirmed visits
    soonest first, then everything else (past, cancelled, no-shows) latest first, as Listed."""
    now = now or clock.now()
    mine = (Appointment
            .select(Appointment.id, Appointment.start, Appointment.end, Appointment.status,
                    Appointment.reason, User.name, Doctor.specialization)
            .join(User, on=(User.id == Appointment.doctor))
            .join(Doctor, on=(Doctor.user == Appointment.doctor))
            .where(Appointment.patient == patient_id))
    ahead = (Appointment.end > now) & Appointment.status.in_(ACTIVE_STATUSES)
    upcoming = mine.where(ahead).order_by(Appointment.start).limit(limit)
    past = mine.where(~ahead).order_by(Appointment.start.desc()).limit(limit)
    return [Listed(*row) for row in upcoming.tuples()], [Listed(*row) for row in past.tuples()]


def on_day(user, day):
    lo, hi = day_bounds(day)
    return (visible_to(user).where(Appointment.start >= lo, Appointment.start < hi)
            .order_by(Appointment.start))


def history(patient_id, doctor_id=None):
    """A patient's completed visits, newest first, each with its treatment as ``.record``."""
    query = (with_people().switch(Appointment)
             .join(Treatment, on=(Treatment.appointment == Appointment.id), attr="record")
             .select_extend(Treatment)
             .where(Appointment.patient == patient_id, Appointment.status == "completed")
             .order_by(Appointment.start.desc()))
    if doctor_id is not None:
        query = query.where(Appointment.doctor == doctor_id)
    return query


def treatment_of(appointment):
    return Treatment.get_or_none(Treatment.appointment == appointment.id)


def as_dict(appointment):
    """The API's shape of an appointment; times ISO 8601 in the clinic's zone."""
    data = {
        "id": appointment.id,
        "status": appointment.status,
        "start": clock.local(appointment.start).isoformat(),
        "end": clock.local(appointment.end).isoformat(),
        "reason": appointment.reason,
        "doctor_id": appointment.doctor_id,
        "patient_id": appointment.patient_id,
    }
    # Rows from with_people() carry both users; anything else costs a query or two.
    data["patient_name"] = appointment.patient.name
    data["doctor_name"] = appointment.doctor.name
    profile = getattr(appointment, "doctor_profile", None) or Doctor.get_by_id(
        appointment.doctor_id)
    data["specialization"] = profile.specialization
    return data


def parse_day(raw, default=None):
    if not raw:
        return default or clock.local().date()
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise Invalid("date must be YYYY-MM-DD",
                      {"date": "Enter the date as YYYY-MM-DD."}) from None


# -- for the doctor's and the admin's pages -------------------------------------------------------


def can_complete(appointment, now=None):
    """Whether complete() would take this appointment now: the pages offer the form only then."""
    now = now or clock.now()
    return (appointment.status in COMPLETABLE
            and clock.local(now).date() >= clock.local(appointment.start).date())


def can_mark_no_show(appointment, now=None):
    now = now or clock.now()
    return appointment.status in ACTIVE_STATUSES and appointment.start <= now


def of_patient(user, patient_id):
    """Every appointment of the patient that ``user`` may see (a doctor: their own with the
    patient), newest first."""
    return (visible_to(user).where(Appointment.patient == patient_id)
            .order_by(Appointment.start.desc()))


def search(query="", status="", doctor_id="", day="", limit=50, offset=0):
    """Appointments for the admin's list. ``query`` matches the patient's name or email,
    ``status`` is one of APPOINTMENT_STATUSES, ``day`` a clinic-local YYYY-MM-DD; empty means
    any. A day's list runs in time order, any other newest first. Raises Invalid on bad
    filters."""
    errors = {}
    result = with_people()
    needle = (query or "").strip().lower()
    if needle:
        result = result.where(Appointment.patient.in_(
            User.select(User.id).where(fn.LOWER(User.name).contains(needle)
                                       | fn.LOWER(User.email).contains(needle))))
    if status:
        if status in APPOINTMENT_STATUSES:
            result = result.where(Appointment.status == status)
        else:
            errors["status"] = "Choose a status from the list."
    if doctor_id:
        try:
            result = result.where(Appointment.doctor == int(doctor_id))
        except ValueError:
            errors["doctor"] = "Choose a doctor from the list."
    order = Appointment.start.desc()
    if day:
        try:
            lo, hi = day_bounds(date.fromisoformat(day.strip()))
            result = result.where(Appointment.start >= lo, Appointment.start < hi)
            order = Appointment.start
        except ValueError:
            errors["date"] = "Enter the date as YYYY-MM-DD."
    if errors:
        raise Invalid(next(iter(errors.values())) if len(errors) == 1
                      else "Please correct the highlighted filters.", errors)
    return result.order_by(order, Appointment.id).limit(limit).offset(offset)


# -- for the patient's pages ----------------------------------------------------------------------


def bookable_doctor(doctor_id):
    """The profile (with ``.user``) of an active doctor patients may book, or NotFound."""
    try:
        doctor_id = int(doctor_id)
    except (TypeError, ValueError):
        raise NotFound("No such doctor.") from None
    doctor = (Doctor.select(Doctor, User).join(User)
              .where(Doctor.user == doctor_id, User.active).first())
    if doctor is None:
        raise NotFound("No such doctor.")
    return doctor


def check_changeable(appointment, user, now=None):
    """Raise Conflict saying why ``user`` may no longer cancel or move the appointment, so a page
    can say so before offering a form that would fail."""
    _check_changeable(appointment, user, now or clock.now())
