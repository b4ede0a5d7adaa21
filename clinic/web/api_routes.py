"""The JSON API under /api/: bearer tokens, JSON errors ``{"error": ...}`` with 4xx, lists
wrapped in an object with a plural key. Described by /api/openapi.json, which covers the admin's
routes (api_admin) and the accounts' (api_accounts) too.

This module: signing in, doctors and their free slots, appointments, a patient's history, a
patient's export and a task's progress. A route checks the types of what it was sent
(clinic/web/api_input.py), then calls one domain function.
"""

import bottle
from bottle import request, response

from clinic import (
    appointments,
    audit,
    auth,
    clock,
    exports,
    listings,
    people,
    records,
    settings,
    slots,
    visit_types,
)
from clinic.errors import Forbidden, Invalid, NotFound, check
from clinic.i18n import _
from clinic.jobs import progress
from clinic.mail import sms
from clinic.models import APPOINTMENT_STATUSES, Appointment, Doctor
from clinic.web import api_accounts, api_input
from clinic.web.decorators import ANYONE_SIGNED_IN, api, json_error
from clinic.web.inputs import json_body
from clinic.web.openapi import doc, document, query_param
from clinic.web.sessions import client_ip, current_user, origin, sign_out

routes = bottle.Bottle()

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_OFFSET = 1_000_000


# -- shapes ---------------------------------------------------------------------------------------


def user_shape(user):
    """A user as the API shows one (api_admin too)."""
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role}


def doctor_shape(doctor):
    """A doctor as the API shows one (api_admin too)."""
    return {"id": doctor.user_id, "name": doctor.user.name,
            "specialization": doctor.specialization, "slot_minutes": doctor.slot_minutes}


def patient_shape(patient, stopped=None):
    """A patient (the Patient profile, with .user) as the API shows one (api_desk too): who
    they are and how to reach them. ``stopped``: the numbers that replied STOP, when the caller
    looked them up for many patients at once (sms.opted_out)."""
    if stopped is None:
        stopped = sms.opted_out([sms.e164(patient.phone)])
    return {"id": patient.user_id, "name": patient.user.name, "email": patient.user.email,
            "phone": patient.phone,
            "date_of_birth": patient.date_of_birth and patient.date_of_birth.isoformat(),
            "channel": patient.channel, "language": patient.user.language or None,
            "sms_opted_out": bool(patient.phone) and sms.e164(patient.phone) in stopped}


def patient_shapes(patients):
    """patient_shape for many patients, with one query for their SMS opt-outs."""
    patients = list(patients)
    stopped = sms.opted_out([sms.e164(p.phone) for p in patients])
    return [patient_shape(p, stopped) for p in patients]


def _visible(appointment_id):
    appointment_id = api_input.path_id(appointment_id, "appointment")
    return appointments.appointment_for(current_user(), appointment_id)


def _shown(appointment, treatment=False):
    """An appointment as the API shows it, read again with its people."""
    appointment = appointments.appointment_for(current_user(), appointment.id)
    data = listings.as_dict(appointment)
    if treatment:
        record = listings.treatment_of(appointment)
        data["treatment"] = None if record is None else {
            **{name: getattr(record, name) for name in appointments.TREATMENT_FIELDS},
            "amended_at": _instant(record.amended_at)}
        data["amendments"] = [] if record is None else [
            {"at": _instant(a.at), "author_id": a.author_id, "author_name": a.author_name,
             "reason": a.reason, "before": a.before, "after": a.after}
            for a in records.amendments_of(appointment.id)]
    return data


def _instant(value):
    return None if value is None else clock.local(value).isoformat()


# -- signing in -----------------------------------------------------------------------------------


@routes.post("/api/login")
@api()
@doc("Sign in and get a bearer token", body="Credentials", returns="Token",
     errors={401: "The email or password is not right, or `totp_required`: two-factor "
                  "sign-in is on and `totp` was missing or wrong.",
             403: "`enrolment_required`: the role must use two-factor sign-in; set it up "
                  "with the `enrolment_token`.", 429: None},
     description="Five failed sign-ins for one email (twenty from one address) within 15 "
                 "minutes lock further tries for a while: 429 with Retry-After.")
def login():
    errors = {}
    data = api_input.texts(json_body(), ("email", "password"), errors)
    check(errors)
    try:
        user = auth.authenticate(data["email"], data["password"], client_ip())
    except auth.Throttled as exc:
        return api_input.throttled(exc, "Too many failed sign-ins.")
    if user is None:
        return json_error(401, "The email or password is not right.")
    if (refused := api_accounts.second_factor(user)) is not None:  # two-factor sign-in
        return refused
    token = auth.start_session(user, "api", ip=client_ip())
    return {"token": token, "token_type": "Bearer", "user": user_shape(user)}


@routes.post("/api/logout")
@api(*ANYONE_SIGNED_IN)
@doc("Sign out: the token (or the browser's session) stops working", returns="SignedOut")
def logout():
    if request.environ.get("clinic.auth") == "bearer":
        auth.end_session(request.get_header("Authorization", "")[7:].strip())
    else:
        sign_out()
    return {"signed_out": True}


@routes.post("/api/register")
@api()
@doc("Register as a patient", body="Registration", returns="User", ok=201,
     description="Does not sign in: call POST /api/login next.")
def register():
    errors = {}
    data = api_input.texts(json_body(), ("email", "password", "name", "date_of_birth", "phone"),
                           errors)
    check(errors)
    user = people.register_patient(**data)
    response.status = 201
    return user_shape(user)


# -- doctors and their free slots (public: they reveal no patient data) ---------------------------


@routes.get("/api/doctors")
@api()
@doc("Active doctors", returns="DoctorList",
     query=[query_param("specialization", {"type": "string"},
                        "Only doctors of this specialization (case-insensitive).")])
def doctor_list():
    specialization = request.query.getunicode("specialization", default="")
    return {"doctors": [doctor_shape(d) for d in people.doctors(specialization)]}


@routes.get("/api/doctors/<doctor_id>/slots")
@api()
@doc("A doctor's free slots on a day", returns="Slots", errors=(400,),
     query=[query_param("date", {"type": "string", "format": "date"},
                        "The clinic-local day, YYYY-MM-DD.", required=True),
            query_param("visit_type", {"type": "integer", "minimum": 1},
                        "A visit type the doctor offers (GET /api/doctors/{doctor_id}/"
                        "visit-types): only starts where the whole visit fits.")],
     description="Starts a patient may book now: in the future, within the booking horizon, "
                 "on the doctor's grid, clear of other visits and of time off. 404 for an "
                 "unknown or inactive doctor.")
def doctor_slots(doctor_id):
    doctor = people.doctors().where(Doctor.user == api_input.path_id(doctor_id, "doctor")).first()
    if doctor is None:
        raise NotFound(_("No such doctor."))
    day = api_input.day(request.query.get("date"))
    visit_type = visit_types.offered(doctor.user_id, request.query.get("visit_type") or None)
    minutes = visit_type.minutes if visit_type else None
    user = current_user()  # a slot held for a patient on the waitlist is free to them
    starts = slots.free_slots(doctor, day, minutes=minutes,
                              patient_id=user.id if user else None)
    return {"date": day.isoformat(), "slot_minutes": doctor.slot_minutes,
            "minutes": minutes or doctor.slot_minutes,
            "slots": [clock.local(start).isoformat() for start in starts]}


# -- appointments ---------------------------------------------------------------------------------


@routes.get("/api/appointments")
@api(*ANYONE_SIGNED_IN)
@doc("Appointments: a patient's own, a doctor's own, every one for an admin or the desk",
     returns="AppointmentList", errors=(400,),
     query=[query_param("status", {"type": "string", "enum": list(APPOINTMENT_STATUSES)},
                        "Only appointments with this status."),
            query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                                  "default": PAGE_SIZE}, "How many to return."),
            query_param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                                   "default": 0}, "How many to skip.")],
     description="Newest start first. Page with limit and offset.")
def appointment_list():
    status = request.query.get("status", "")
    if status and status not in APPOINTMENT_STATUSES:
        message = "status must be one of " + ", ".join(APPOINTMENT_STATUSES) + "."
        raise Invalid(message, {"status": message})
    limit = api_input.query_int("limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = api_input.query_int("offset", 0, 0, MAX_OFFSET)
    query = appointments.visible_to(current_user())
    if status:
        query = query.where(Appointment.status == status)
    rows = (query.order_by(Appointment.start.desc(), Appointment.id.desc())
            .limit(limit).offset(offset))
    return {"appointments": [listings.as_dict(a) for a in rows], "limit": limit,
            "offset": offset}


@routes.get("/api/appointments/<appointment_id>")
@api(*ANYONE_SIGNED_IN)
@doc("One appointment, with its treatment once completed", returns="Appointment",
     description="The desk gets the appointment without `treatment`: no medical record.")
def appointment_detail(appointment_id):
    # The desk sees the visit, never its medical record.
    return _shown(_visible(appointment_id), treatment=current_user().role != "desk")


@routes.post("/api/appointments")
@api("patient", "admin", "desk")
@doc("Book an appointment", body="Booking", returns="Appointment", ok=201, errors=(404, 409),
     description="A patient books for themselves. An admin or the desk books for a patient "
                 "and must send patient_id (404 if there is no such patient); that booking is "
                 "in the audit log. 409 when the slot was taken or the patient already has an "
                 "appointment at that time.")
def book_appointment():
    user = current_user()
    data = json_body()
    errors = {}
    doctor_id = api_input.body_id(data, "doctor_id", errors)
    start = api_input.start(data, errors)
    reason = api_input.texts(data, ("reason",), errors)["reason"]
    if user.role in ("admin", "desk"):
        patient_id = api_input.body_id(data, "patient_id", errors)
    elif data.get("patient_id") not in (None, user.id):
        raise Forbidden(_("Patients book for themselves: leave out patient_id."))
    else:
        patient_id = user.id
    visit_type_id = data.get("visit_type_id")
    if visit_type_id is not None:
        visit_type_id = api_input.body_id(data, "visit_type_id", errors)
    check(errors)
    if user.role == "admin":
        people.patient_for(user, patient_id)
    elif user.role == "desk":
        people.patient_to_book(patient_id)
    appointment = appointments.book(patient_id, doctor_id, start, reason,
                                    visit_type_id=visit_type_id)
    audit.on_behalf(user, "book appointment", appointment, **origin())
    response.status = 201
    return _shown(appointment)


@routes.post("/api/appointments/<appointment_id>/cancel")
@api(*ANYONE_SIGNED_IN)
@doc("Cancel an appointment", returns="Appointment", errors=(409,),
     description="Patients may cancel until the clinic's cutoff before the start (409 after); "
                 "doctors until the start; admins and the desk any time while it is booked or "
                 "confirmed (audited).")
def cancel_appointment(appointment_id):
    cancelled = appointments.cancel(_visible(appointment_id), current_user())
    audit.on_behalf(current_user(), "cancel appointment", cancelled, **origin())
    return _shown(cancelled)


@routes.post("/api/appointments/<appointment_id>/reschedule")
@api(*ANYONE_SIGNED_IN)
@doc("Move an appointment to another free slot of the same doctor", body="Reschedule",
     returns="Appointment", errors=(409,),
     description="The same rules as cancelling apply to the old time; the new one must be free.")
def reschedule_appointment(appointment_id):
    appointment = _visible(appointment_id)
    errors = {}
    start = api_input.start(json_body(), errors)
    check(errors)
    moved = appointments.reschedule(appointment, start, current_user())
    audit.on_behalf(current_user(), "move appointment", moved, **origin())
    return _shown(moved)


@routes.post("/api/appointments/<appointment_id>/complete")
@api("doctor")
@doc("Record the treatment and complete the visit", body="Treatment", returns="Appointment",
     errors=(409,),
     description="Only the appointment's doctor, from the visit's start on (409 before). A "
                 "visit marked as a no-show can be completed on its clinic-local day and the "
                 "next (409 after).")
def complete_appointment(appointment_id):
    appointment = _visible(appointment_id)
    errors = {}
    fields = api_input.texts(json_body(), appointments.TREATMENT_FIELDS, errors)
    check(errors)
    completed = appointments.complete(appointment, current_user(), fields)
    return _shown(completed, treatment=True)


@routes.post("/api/appointments/<appointment_id>/no-show")
@api("doctor", "admin")
@doc("Mark that the patient did not come", returns="Appointment", errors=(409,),
     description="Only once the appointment was due to start (409 before).")
def no_show_appointment(appointment_id):
    return _shown(appointments.mark_no_show(_visible(appointment_id), current_user()))


@routes.post("/api/appointments/<appointment_id>/undo-no-show")
@api("doctor")
@doc("Undo a no-show mark: the visit is booked or confirmed again, as it was",
     returns="Appointment", errors=(409,),
     description="Only the appointment's doctor, on the visit's clinic-local day (409 on "
                 "another day, or when the visit is not marked as a no-show). The no-shows "
                 "job does not mark it again.")
def undo_no_show_appointment(appointment_id):
    return _shown(appointments.undo_no_show(_visible(appointment_id), current_user()))


@routes.post("/api/appointments/<appointment_id>/amend")
@api("doctor")
@doc("Amend the record of a completed visit: the earlier text is kept", body="Amendment",
     returns="Appointment", errors=(409,),
     description="Only the visit's doctor. Fields left out keep their text; the changed ones "
                 "are stored with their earlier text, the author and the time (`amendments`), "
                 "the record's `amended_at` is set, and the change is audited. 400 when "
                 "nothing changes, 409 for a visit not completed.")
def amend_appointment(appointment_id):
    appointment = _visible(appointment_id)
    errors = {}
    body = json_body()
    fields = api_input.texts(body, appointments.TREATMENT_FIELDS, errors, present_only=True)
    reason = api_input.texts(body, ("reason",), errors)["reason"]
    check(errors)
    records.amend(appointment, current_user(), fields, reason, **origin())
    return _shown(appointment, treatment=True)


# -- patients -------------------------------------------------------------------------------------


@routes.get("/api/patients/<patient_id>/history")
@api(*ANYONE_SIGNED_IN)
@doc("A patient's completed visits with their treatment", returns="History",
     description="The patient themself, doctors who have an appointment with them, admins; "
                 "404 for anyone else.")
def patient_history(patient_id):
    patient = audit.opened(current_user(), "view history", api_input.path_id(patient_id, "patient"),
                           **origin())
    visits = listings.history(patient.user_id)
    return {
        "patient": patient_shape(patient),
        "visits": [{"appointment_id": visit.id,
                    "date": clock.local(visit.start).date().isoformat(),
                    "start": clock.local(visit.start).isoformat(),
                    "doctor": visit.doctor.name, "doctor_id": visit.doctor_id,
                    "specialization": visit.doctor_profile.specialization,
                    **{name: getattr(visit.record, name)
                       for name in appointments.TREATMENT_FIELDS},
                    "amended_at": _instant(visit.record.amended_at)}
                   for visit in visits],
    }


# -- the description ------------------------------------------------------------------------------


@routes.get("/api/openapi.json")
@api()
@doc("This API's OpenAPI 3.0 description", returns="OpenAPI")
def openapi_json():
    # Every documented route of the app this request reached: these, api_admin's and
    # api_accounts' (create_app merges them all).
    return document(request.app.routes, settings.get().base_url)


# -- exports --------------------------------------------------------------------------------------


@routes.post("/api/patient/export-history")
@api("patient")
@doc("Export my full medical history as a CSV file", returns="ExportStarted", ok=202,
     description="Starts building the file in the background and answers at once. Follow it "
                 "with GET /api/tasks/{task_id}: when done, its result has `download_url` "
                 "(for this patient only, until `expires_at`), `rows` and `expires_at`, and the "
                 "file is emailed to the patient. While the patient's previous export is still "
                 "running, that one is answered instead of starting another.")
def export_history():
    audit.allowed(current_user(), "export history", current_user().id, **origin())
    record, _started = exports.start(current_user())
    response.status = 202
    return {"task_id": record.task_id, "status": record.state}


# -- task status -------------------------------------------------------------------------------


@routes.get("/api/tasks/<task_id>")
@api(*ANYONE_SIGNED_IN)
@doc("A background task's state and progress", returns="TaskStatus",
     description="Readable by the user who started the task and by admins; 404 for anyone "
                 "else. `state` goes PENDING, PROGRESS (with `current` of `total` done), then "
                 "SUCCESS with `result` or FAILURE with the reason in `status`.")
def task_status(task_id):
    return progress.as_dict(progress.for_user(current_user(), task_id))
