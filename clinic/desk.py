"""The front desk's day sheet: for one clinic-local day, every doctor who works that day with
their visits (the patient's name and the status) and their free times.

Four queries whatever the number of doctors: the active doctors, the day's appointments across
all of them (by the (status, start) index), the day's time off and its waitlist holds; the free
times come from clinic/slots.py's grid in Python. The sheet shows people and times only, never
a medical record.
"""

from dataclasses import dataclass, field

from clinic import clock, people, slots, waitlist
from clinic.models import APPOINTMENT_STATUSES, Appointment, User

# What the sheet lists: everything but cancelled visits, named so the index seeks per status.
SHOWN = tuple(status for status in APPOINTMENT_STATUSES if status != "cancelled")


@dataclass
class Column:
    doctor: object  # the Doctor profile, with .user
    visits: list = field(default_factory=list)  # day_visits() rows, by start
    free: list = field(default_factory=list)  # free starts (UTC), ascending


def day_visits(day):
    """The appointments (not cancelled) starting on the clinic-local ``day``, by start, as
    named tuples (id, doctor_id, patient_id, start, end, status, patient_name, patient_email):
    one query for every doctor, and no model objects to build for hundreds of rows."""
    lo, hi = clock.day_bounds(day)
    return (Appointment
            .select(Appointment.id, Appointment.doctor.alias("doctor_id"),
                    Appointment.patient.alias("patient_id"), Appointment.start,
                    Appointment.end, Appointment.status, User.name.alias("patient_name"),
                    User.email.alias("patient_email"))
            .join(User, on=(Appointment.patient == User.id))
            .where(Appointment.status.in_(SHOWN), Appointment.start >= lo,
                   Appointment.start < hi)
            .order_by(Appointment.start, Appointment.id)
            .namedtuples())


def day_sheet(day, now=None):
    """The columns of ``day``: one per active doctor who works that day or has visits on it,
    ordered like the doctors' list."""
    now = now or clock.now()
    by_doctor = {}
    for visit in day_visits(day):
        by_doctor.setdefault(visit.doctor_id, []).append(visit)
    lo, hi = clock.day_bounds(day)
    away = slots.away_everyone(lo, hi + slots.LONGEST_VISIT)
    held = waitlist.held_everywhere(lo, hi + slots.LONGEST_VISIT)
    columns = []
    for doctor in people.doctors():
        visits = by_doctor.get(doctor.user_id, [])
        taken = [(v.start, v.end) for v in visits] + held.get(doctor.user_id, [])
        closed = away.get(doctor.user_id, []) + away.get(None, [])
        free = slots.open_starts(doctor, day, taken, now, closed)
        if visits or free or slots.grid(doctor, day):
            columns.append(Column(doctor, visits, free))
    return columns
