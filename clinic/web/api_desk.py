"""The front desk's JSON API: finding and registering patients, checking them in, and the
admin's staff accounts. Booking, moving and cancelling for a patient use the appointment routes
of api_routes, which admit the desk too. Nothing here shows a medical record."""

import bottle
from bottle import request, response

from clinic import appointments, audit, listings, people
from clinic.errors import check
from clinic.web import api_input, api_routes
from clinic.web.decorators import api
from clinic.web.inputs import json_body
from clinic.web.openapi import doc, query_param
from clinic.web.sessions import current_user, origin

routes = bottle.Bottle()

SEARCH_LIMIT = 50


def patient_shape(patient):
    """A patient as the desk sees one: who they are and how to reach them."""
    return {"id": patient.user_id, "name": patient.user.name, "email": patient.user.email,
            "phone": patient.phone,
            "date_of_birth": patient.date_of_birth and patient.date_of_birth.isoformat()}


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
    return {"patients": [patient_shape(p) for p in people.search_patients(q, SEARCH_LIMIT)]}


@routes.post("/api/patients")
@api("desk", "admin")
@doc("Register a patient at the desk", body="NewPatient", returns="Patient", ok=201,
     description="Only the name is required. A patient without an email address gets no "
                 "email. The patient has no password: with an email, they set one through "
                 "the forgotten-password link.")
def patient_register():
    errors = {}
    data = api_input.texts(json_body(), ("name", "email", "date_of_birth", "phone"), errors)
    check(errors)
    user = people.register_at_desk(**data)
    audit.record(current_user(), "register patient", user.id, **origin())
    response.status = 201
    return patient_shape(user.patient_profile.get())


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
