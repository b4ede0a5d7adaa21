"""The waitlist's JSON API: join, list, leave and claim the slot held for an entry
(clinic/waitlist.py). Patients act for themselves; the desk and admins for any patient."""

import bottle
from bottle import request, response

from clinic import appointments, clock, listings, waitlist
from clinic.errors import Forbidden, Invalid, check
from clinic.i18n import _
from clinic.models import WaitlistEntry
from clinic.web import api_input
from clinic.web.decorators import api
from clinic.web.inputs import json_body
from clinic.web.openapi import doc, query_param
from clinic.web.sessions import current_user

routes = bottle.Bottle()

STAFF = ("desk", "admin")


def entry_shape(entry, offer=None):
    """An entry as the API shows one, with the offer it holds now (or null)."""
    return {
        "id": entry.id, "doctor_id": entry.doctor_id, "doctor_name": entry.doctor.name,
        "patient_id": entry.patient_id, "from": entry.from_day.isoformat(),
        "to": entry.to_day.isoformat(), "status": entry.status,
        "created_at": clock.local(entry.created_at).isoformat(),
        "offer": None if offer is None else {
            "id": offer.id, "start": clock.local(offer.start).isoformat(),
            "end": clock.local(offer.end).isoformat(), "status": offer.status,
            "expires_at": clock.local(offer.expires_at).isoformat()},
    }


def _shown(entry_id):
    entry = waitlist.entry_for(current_user(), entry_id)
    return entry_shape(entry, waitlist.live_offer(entry.id))


@routes.post("/api/waitlist")
@api("patient", "desk", "admin")
@doc("Join a doctor's waitlist for a range of days", body="WaitlistJoin",
     returns="WaitlistEntry", ok=201, errors=(404, 409),
     description="When a slot with the doctor on one of these clinic-local days frees up, the "
                 "first patient in line is emailed an offer and the slot is held for them for "
                 "CLINIC_WAITLIST_HOLD. A patient joins for themselves; the desk and admins "
                 "must send patient_id. 400 for a reversed or past range, 404 for an unknown "
                 "doctor or patient, 409 when the patient waits for the doctor on some of "
                 "these days already.")
def join_waitlist():
    user = current_user()
    data = json_body()
    errors = {}
    doctor_id = api_input.body_id(data, "doctor_id", errors)
    if user.role in STAFF:
        patient_id = api_input.body_id(data, "patient_id", errors)
    elif data.get("patient_id") not in (None, user.id):
        raise Forbidden(_("Patients join for themselves: leave out patient_id."))
    else:
        patient_id = user.id
    check(errors)
    entry = waitlist.join(patient_id, doctor_id, data.get("from"), data.get("to"))
    response.status = 201
    return _shown(entry.id)


@routes.get("/api/waitlist")
@api("patient", "desk", "admin")
@doc("Waitlist entries: a patient's own; every one (or one patient's) for the desk and admins",
     returns="WaitlistList", errors=(400,),
     query=[query_param("patient_id", {"type": "integer", "minimum": 1},
                        "Desk and admins: only this patient's entries."),
            query_param("status", {"type": "string", "enum": ["waiting", "booked", "left"]},
                        "Only entries with this status.")],
     description="Oldest first: the order of the line.")
def list_waitlist():
    query = waitlist.visible_to(current_user())
    raw = request.query.get("patient_id", "")
    if raw:
        query = query.where(WaitlistEntry.patient == api_input.query_int(
            "patient_id", None, 1, api_input.MAX_ID))
    status = request.query.get("status", "")
    if status:
        if status not in ("waiting", "booked", "left"):
            raise Invalid("status must be waiting, booked or left.",
                          {"status": "Choose waiting, booked or left."})
        query = query.where(WaitlistEntry.status == status)
    entries = list(query.order_by(WaitlistEntry.created_at, WaitlistEntry.id).limit(500))
    return {"entries": [entry_shape(e, waitlist.live_offer(e.id)) for e in entries]}


@routes.get("/api/waitlist/<entry_id>")
@api("patient", "desk", "admin")
@doc("One waitlist entry with the offer it holds now", returns="WaitlistEntry")
def waitlist_detail(entry_id):
    return _shown(api_input.path_id(entry_id, "waitlist entry"))


@routes.delete("/api/waitlist/<entry_id>")
@api("patient", "desk", "admin")
@doc("Leave the waitlist", returns="WaitlistEntry", errors=(409,),
     description="A slot held for the entry is offered to the next in line at once. 409 when "
                 "the entry has left or booked already.")
def leave_waitlist(entry_id):
    entry = waitlist.entry_for(current_user(), api_input.path_id(entry_id, "waitlist entry"))
    waitlist.leave(entry)
    return _shown(entry.id)


@routes.post("/api/waitlist/<entry_id>/claim")
@api("patient", "desk", "admin")
@doc("Book the slot held for this waitlist entry", returns="Appointment", ok=201,
     errors=(409,),
     description="409 when no slot is held for the entry, its hold has run out (the slot went "
                 "to the next in line), or the patient has a visit at that time; nothing is "
                 "booked then. 404 for another patient's entry.")
def claim_waitlist(entry_id):
    entry = waitlist.entry_for(current_user(), api_input.path_id(entry_id, "waitlist entry"))
    appointment = waitlist.claim(entry)
    response.status = 201
    return listings.as_dict(appointments.appointment_for(current_user(), appointment.id))
