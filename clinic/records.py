"""Medical records are amended, never overwritten: a correction of a completed visit's record
(its Treatment row) keeps what each changed field said before, who changed it and when (an
Amendment row), marks the record amended, and is audited. Only the visit's doctor amends.
"""

from clinic import appointments, audit, clock
from clinic.db import database, locked
from clinic.errors import Conflict, Forbidden, Invalid
from clinic.i18n import _
from clinic.models import Amendment, Treatment

FIELD_NAMES = {"visit_type": "Visit type", "symptoms": "Symptoms", "diagnosis": "Diagnosis",
               "treatment": "Treatment", "prescription": "Prescription", "notes": "Notes"}


def amend(appointment, doctor_user, fields, reason="", now=None, address="", path=""):
    """Change the record of the completed ``appointment`` to ``fields`` (a field left out keeps
    its text) and return the Amendment. Raises Forbidden for anyone but the visit's doctor,
    Conflict for a visit not completed, Invalid for bad text or when nothing changes.

    1. Check the new text as complete() does (visit type required, 10,000 characters each).
    2. In one transaction: lock and read the record as it is, write the Amendment with the old
       and new text of each changed field, update the record and its ``amended_at``, audit.
    """
    now = now or clock.now()
    if appointment.doctor_id != doctor_user.id:
        raise Forbidden(_("Only the visit's doctor can amend its record."))
    if appointment.status != "completed":
        raise Conflict(_("Only the record of a completed visit can be amended."))
    reason = (reason or "").strip()
    if len(reason) > 2000:
        raise Invalid(_("The reason is too long."), {"reason": _("Keep it under 2000 characters.")})
    with database.atomic():
        record = locked(Treatment.select().where(Treatment.appointment == appointment.id)).first()
        if record is None:
            raise Conflict(_("This visit has no record to amend."))
        current = {name: getattr(record, name) for name in appointments.TREATMENT_FIELDS}
        values = appointments.treatment_values({**current, **fields})
        changed = [name for name in appointments.TREATMENT_FIELDS
                   if values[name] != current[name]]
        if not changed:
            raise Invalid(_("Nothing was changed: the record already says this."))
        amendment = Amendment.create(
            appointment=appointment.id, author=doctor_user.id, author_name=doctor_user.name,
            at=now, before={name: current[name] for name in changed},
            after={name: values[name] for name in changed}, reason=reason)
        (Treatment.update(amended_at=now, **{name: values[name] for name in changed})
         .where(Treatment.appointment == appointment.id).execute())
        audit.record(doctor_user, "amend record", appointment.patient_id, address=address,
                     path=path, now=now)
    return amendment


def amendments_of(appointment_id):
    """The amendments of a visit's record, oldest first."""
    return list(Amendment.select().where(Amendment.appointment == appointment_id)
                .order_by(Amendment.at, Amendment.id))


def changes(amendment):
    """``[(label, before, after)]`` of an amendment, in the record's order."""
    return [(FIELD_NAMES[name], amendment.before.get(name, ""), amendment.after.get(name, ""))
            for name in appointments.TREATMENT_FIELDS if name in amendment.after]
