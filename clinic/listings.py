"""Reading appointments for the pages and the API: the lists each person sees, a day's
appointments, a patient's history, the admin's search, and the API's shape of one appointment.
Which appointments a user may see at all is appointments.visible_to()."""

from collections import namedtuple
from datetime import date

from peewee import fn

from clinic import appointments, clock
from clinic.errors import Invalid
from clinic.i18n import _
from clinic.models import (
    ACTIVE_STATUSES,
    APPOINTMENT_STATUSES,
    Appointment,
    Doctor,
    Treatment,
    User,
)


def upcoming(user, now=None, limit=200):
    """``user``'s appointments still to come (booked or confirmed), soonest first."""
    now = now or clock.now()
    return (appointments.visible_to(user)
            .where(Appointment.end > now, Appointment.status.in_(ACTIVE_STATUSES))
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
    lo, hi = clock.day_bounds(day)
    return (appointments.visible_to(user).where(Appointment.start >= lo, Appointment.start < hi)
            .order_by(Appointment.start))


def history(patient_id, doctor_id=None):
    """A patient's completed visits, newest first, each with its treatment as ``.record``."""
    query = (Appointment.with_people().switch(Appointment)
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
    # Rows from Appointment.with_people() carry both users; anything else costs a query or two.
    data["patient_name"] = appointment.patient.name
    data["doctor_name"] = appointment.doctor.name
    profile = getattr(appointment, "doctor_profile", None) or Doctor.get_by_id(
        appointment.doctor_id)
    data["specialization"] = profile.specialization
    return data


def of_patient(user, patient_id):
    """Every appointment of the patient that ``user`` may see (a doctor: their own with the
    patient), newest first."""
    return (appointments.visible_to(user).where(Appointment.patient == patient_id)
            .order_by(Appointment.start.desc()))


def search(query="", status="", doctor_id="", day="", limit=50, offset=0):
    """Appointments for the admin's list. ``query`` matches the patient's name or email,
    ``status`` is one of APPOINTMENT_STATUSES, ``day`` a clinic-local YYYY-MM-DD; empty means
    any. A day's list runs in time order, any other newest first. Raises Invalid on bad
    filters."""
    errors = {}
    result = Appointment.with_people()
    needle = (query or "").strip().lower()
    if needle:
        result = result.where(Appointment.patient.in_(
            User.select(User.id).where(fn.LOWER(User.name).contains(needle)
                                       | fn.LOWER(User.email).contains(needle))))
    if status:
        if status in APPOINTMENT_STATUSES:
            result = result.where(Appointment.status == status)
        else:
            errors["status"] = _("Choose a status from the list.")
    if doctor_id:
        try:
            result = result.where(Appointment.doctor == int(doctor_id))
        except ValueError:
            errors["doctor"] = _("Choose a doctor from the list.")
    order = Appointment.start.desc()
    if day:
        try:
            lo, hi = clock.day_bounds(date.fromisoformat(day.strip()))
            result = result.where(Appointment.start >= lo, Appointment.start < hi)
            order = Appointment.start
        except ValueError:
            errors["date"] = _("Enter the date as YYYY-MM-DD.")
    if errors:
        raise Invalid(next(iter(errors.values())) if len(errors) == 1
                      else "Please correct the highlighted filters.", errors)
    return result.order_by(order, Appointment.id).limit(limit).offset(offset)

