"""Visit types: kinds of visit with their own length (a 60-minute first consultation, a 10-minute
injection), each offered by the doctors linked to it.

A doctor's own slot length stays the default visit: booking without a visit type takes one slot.
A visit type's starts are still on the doctor's slot grid; the visit must fit, whole, inside one
of the doctor's working ranges (clinic/slots.py).
"""

from datetime import datetime, time

from clinic import clock
from clinic.db import database
from clinic.errors import Invalid, NotFound, check
from clinic.i18n import _
from clinic.models import Doctor, User, VisitType, VisitTypeDoctor

MIN_MINUTES = 5
MAX_MINUTES = 8 * 60
MAX_NAME = 100


def longest_range(doctor):
    """The doctor's longest working range in minutes, over the week (0 for no hours)."""
    longest = 0
    for ranges in doctor.working_hours.values():
        for start_text, end_text in ranges:
            day = datetime(2000, 1, 3)
            start = datetime.combine(day, time.fromisoformat(start_text))
            end = datetime.combine(day, time.fromisoformat(end_text))
            longest = max(longest, int((end - start).total_seconds() // 60))
    return longest


def create(name, minutes, doctor_ids, now=None):
    """Store a visit type offered by ``doctor_ids``; returns it. Invalid naming the field (name,
    minutes, doctor_ids) otherwise: among others a visit longer than a doctor's working day,
    which could never be booked."""
    errors = {}
    name = " ".join(str(name or "").split())
    if not name:
        errors["name"] = _("Enter a name, such as First consultation.")
    elif len(name) > MAX_NAME:
        errors["name"] = _("Keep the name under %(count)s characters.") % {"count": MAX_NAME}
    if isinstance(minutes, str) and minutes.strip().isdigit():
        minutes = int(minutes.strip())
    if isinstance(minutes, bool) or not isinstance(minutes, int) \
            or not MIN_MINUTES <= minutes <= MAX_MINUTES:
        errors["minutes"] = (_("Enter a length from %(least)s to %(most)s minutes.")
                              % {"least": MIN_MINUTES, "most": MAX_MINUTES})
        minutes = None
    doctors = _doctors(doctor_ids, errors)
    if minutes and doctors:
        too_short = [d.user.name for d in doctors if longest_range(d) < minutes]
        if too_short:
            errors["minutes"] = (f"A {minutes}-minute visit is longer than the working day of "
                                 + ", ".join(too_short) + ": it could never be booked.")
    check(errors)
    with database.atomic():
        visit_type = VisitType.create(name=name, minutes=minutes, created_at=now or clock.now())
        VisitTypeDoctor.insert_many(
            [{"visit_type": visit_type.id, "doctor": d.user_id} for d in doctors]).execute()
    return visit_type


def _doctors(doctor_ids, errors):
    if not isinstance(doctor_ids, list | tuple) or not doctor_ids:
        errors["doctor_ids"] = _("Choose at least one doctor.")
        return []
    ids = set()
    for raw in doctor_ids:
        if isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 18:
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 2**63 - 1:
            errors["doctor_ids"] = _("Expected a list of doctors' ids.")
            return []
        ids.add(raw)
    found = list(Doctor.select(Doctor, User).join(User).where(Doctor.user.in_(sorted(ids))))
    if len(found) != len(ids):
        missing = sorted(ids - {d.user_id for d in found})
        errors["doctor_ids"] = (_("No such doctor: %(ids)s.")
                                 % {"ids": ", ".join(map(str, missing))})
        return []
    return found


def doctor_ids(visit_type):
    return [link.doctor_id for link in
            VisitTypeDoctor.select(VisitTypeDoctor.doctor)
            .where(VisitTypeDoctor.visit_type == visit_type.id)
            .order_by(VisitTypeDoctor.doctor)]


def listing():
    return list(VisitType.select().order_by(VisitType.minutes, VisitType.name))


def for_doctor(doctor_id):
    """The visit types the doctor offers, shortest first."""
    return list(VisitType.select().join(VisitTypeDoctor)
                .where(VisitTypeDoctor.doctor == doctor_id)
                .order_by(VisitType.minutes, VisitType.name))


def offered(doctor_id, visit_type_id):
    """The visit type ``visit_type_id`` if the doctor offers it; Invalid otherwise. None (or "")
    is the doctor's default visit: returns None."""
    if visit_type_id in (None, ""):
        return None
    if isinstance(visit_type_id, str) and visit_type_id.strip().isdigit() \
            and len(visit_type_id.strip()) <= 18:
        visit_type_id = int(visit_type_id.strip())
    message = _("This doctor does not offer that kind of visit.")
    if isinstance(visit_type_id, bool) or not isinstance(visit_type_id, int):
        raise Invalid("visit_type_id must be a visit type's id", {"visit_type_id": message})
    visit_type = (VisitType.select().join(VisitTypeDoctor)
                  .where(VisitType.id == visit_type_id, VisitTypeDoctor.doctor == doctor_id)
                  .first())
    if visit_type is None:
        raise Invalid(message, {"visit_type_id": message})
    return visit_type


def delete(visit_type_id):
    visit_type = VisitType.get_or_none(VisitType.id == visit_type_id)
    if visit_type is None:
        raise NotFound(_("No such visit type."))
    visit_type.delete_instance(recursive=True)


def as_dict(visit_type):
    return {"id": visit_type.id, "name": visit_type.name, "minutes": visit_type.minutes,
            "doctor_ids": doctor_ids(visit_type)}
