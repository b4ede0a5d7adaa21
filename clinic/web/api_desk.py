"""The front desk's JSON API: finding and registering patients, checking them in, and the
admin's staff accounts. Booking, moving and cancelling for a patient use the appointment routes
of api_routes, which admit the desk too. Nothing here shows a medical record."""

import bottle
from bottle import request, response

from clinic import accounts, appointments, audit, listings, people
from clinic.errors import check
from clinic.web import api_input, api_routes
from clinic.web.decorators import api
from clinic.web.inputs import json_body
from clinic.web.openapi import doc, query_param
from clinic.web.sessions import current_user, origin

routes = bottle.Bottle()

SEARCH_LIMIT = 50


@routes.get("/api/patients")
@api("desk", "admin")
@doc("Find patients", returns="PatientList",
     query=[query_param("q", {"type": "string"},
                        "Part of the name, email or phone number, or a date of birth "
                        "(YYYY-MM-DD). Empty: every patient, by name.")],
     description=f"At most {SEARCH_LIMIT}, by name. Only who they are and how to reach them: "
                 "no medical record.")
def patient_search():
    q = request.query.getunicode("q", default="")
    return {"patients": api_routes.patient_shapes(people.search_patients(q, SEARCH_LIMIT))}


@routes.post("/api/patients")
@api("desk", "admin")
@doc("Register a patient at the desk", body="NewPatient", returns="Patient", ok=201,
     description="Only the name is required. A patient without an email address gets no "
                 "email. `channel` (default email) says how their messages go; sms and both "
                 "need a phone. The patient has no password: with an email, they set one "
                 "through the forgotten-password link.")
def patient_register():
    errors = {}
    data = api_input.texts(json_body(), ("name", "email", "date_of_birth", "phone", "channel",
                                         "language"), errors)
    check(errors)
    user = people.register_at_desk(**data)
    audit.record(current_user(), "register patient", user.id, **origin())
    response.status = 201
    return api_routes.patient_shape(user.patient_profile.get())


@routes.get("/api/patients/<patient_id>")
@api("desk", "admin")
@doc("One patient: who they are and how to reach them", returns="Patient",
     description="No medical record; 404 for an id that is not a patient's.")
def patient_get(patient_id):
    return _with_pending_email(
        people.patient_contact(api_input.path_id(patient_id, "patient")))


@routes.route("/api/patients/<patient_id>", method="PATCH")
@api("desk", "admin")
@doc("Change a patient's details: name, phone, date of birth, channel, language, email",
     body="PatientChanges", returns="Patient",
     description="Only the fields sent change, checked as in PATCH /api/me: all or nothing. "
                 "A new email takes effect once the patient follows the link emailed to it; "
                 "until then it is `pending_email`. A number that replied STOP stays opted "
                 "out until it replies START: the desk cannot opt it back in.")
def patient_update(patient_id):
    patient_id = api_input.path_id(patient_id, "patient")
    errors = {}
    changes = api_input.texts(json_body(), accounts.PATIENT_FIELDS, errors, present_only=True)
    check(errors)
    accounts.update_patient(current_user(), patient_id, changes, **origin())
    return _with_pending_email(people.patient_contact(patient_id))


def _with_pending_email(patient):
    return {**api_routes.patient_shape(patient),
            "pending_email": accounts.pending_email(patient.user)}


@routes.post("/api/appointments/<appointment_id>/check-in")
@api("desk", "admin")
@doc("Check the patient in: they are at the clinic", returns="Appointment", errors=(409,),
     description="On the visit's day only (409 otherwise, or when it is not booked or "
                 "confirmed). The status becomes `arrived`; the doctor then completes it. "
                 "Checking in twice is harmless.")
def check_in(appointment_id):
    appointment = appointments.appointment_for(
        current_user(), api_input.path_id(appointment_id, "appointment"))
    arrived = appointments.check_in(appointment)
    if appointment.status != arrived.status:
        audit.on_behalf(current_user(), "check in", arrived, **origin())
    return listings.as_dict(appointments.appointment_for(current_user(), arrived.id))


@routes.post("/api/admin/staff")
@api("admin")
@doc("Add a staff member: the front desk or an admin", body="NewStaff", returns="User", ok=201,
     description="400 with `fields` for a taken email, a short password or a role other "
                 "than desk or admin.")
def staff_create():
    errors = {}
    data = api_input.texts(json_body(), ("name", "email", "password", "role"), errors)
    check(errors)
    user = people.create_staff(data["name"], data["email"], data["password"], data["role"])
    response.status = 201
    return api_routes.user_shape(user)
