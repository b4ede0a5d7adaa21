"""The JSON API under /api/: bearer tokens, JSON errors ``{"error": ...}`` with 4xx, lists
wrapped in an object with a plural key. Described by /api/openapi.json.

A route checks the types of what it was sent (JSON has numbers, strings, lists...; the domain
functions expect what a form gives them), then calls one domain function. Numbers are checked
against what the database can hold before they reach it: SQLite refuses integers past 2**63 with
an OverflowError, which would otherwise be a 500.
"""

import math
from datetime import MAXYEAR, MINYEAR, UTC, datetime

import bottle
from bottle import request, response

from clinic import (
    announcements,
    appointments,
    audit,
    auth,
    clock,
    exports,
    listings,
    people,
    reports,
    settings,
    slots,
    stats,
)
from clinic.errors import Forbidden, Invalid, NotFound, check
from clinic.jobs import progress
from clinic.models import APPOINTMENT_STATUSES, WEEKDAYS, Appointment, Doctor
from clinic.web import api_accounts
from clinic.web.decorators import api, json_error
from clinic.web.inputs import json_body
from clinic.web.openapi import doc, document, query_param
from clinic.web.sessions import client_ip, current_user, origin, sign_out

routes = bottle.Bottle()
routes.merge(api_accounts.routes)  # /api/password-reset, /api/me, two-factor sign-in

ANYONE_SIGNED_IN = ("patient", "doctor", "admin")
MAX_ID = 2**63 - 1  # the largest integer the database stores
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_OFFSET = 1_000_000


# -- reading input --------------------------------------------------------------------------------


def _texts(data, names, errors):
    """The string fields ``names`` of a JSON body (missing or null: ""), NULs dropped. Anything
    that is not a string is noted in ``errors``."""
    values = {}
    for name in names:
        value = data.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[name] = "Expected a string."
            value = ""
        values[name] = value.replace("\x00", "")
    return values


def _body_id(data, name, errors):
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        errors[name] = "Expected an id (a whole number)."
        return None
    return value


def _path_id(raw, what):
    """An id from the URL; one that cannot be an id is simply not found."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_ID:
        raise NotFound(f"No such {what}.")
    return int(raw)


def _start(data, errors):
    """``start``: ISO 8601 with an offset, as an aware UTC datetime. Without an offset the time
    would be a guess about the caller's zone, so it is refused."""
    raw = data.get("start")
    try:
        if not isinstance(raw, str):
            raise ValueError
        value = datetime.fromisoformat(raw.strip())
        if value.tzinfo is None:
            raise ValueError
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        errors["start"] = ("Expected an ISO 8601 date and time with offset, such as "
                           "2026-03-02T09:30:00+01:00.")
        return None


def _query_int(name, default, low, high):
    raw = request.query.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        message = f"{name} must be a whole number from {low} to {high}."
        raise Invalid(message, {name: message})
    return int(raw)


def _day(raw):
    if not raw:
        raise Invalid("date is required, as YYYY-MM-DD.", {"date": "Enter the date as YYYY-MM-DD."})
    day = clock.parse_day(raw)
    # The first and last days of the calendar have no neighbours to compute a day's bounds with.
    if not MINYEAR < day.year < MAXYEAR:
        raise Invalid("date is out of range.", {"date": "Enter a date near today."})
    return day


# -- shapes ---------------------------------------------------------------------------------------


def _user(user):
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role}


def _doctor(doctor):
    return {"id": doctor.user_id, "name": doctor.user.name,
            "specialization": doctor.specialization, "slot_minutes": doctor.slot_minutes}


def _visible(appointment_id):
    return appointments.appointment_for(current_user(), _path_id(appointment_id, "appointment"))


def _shown(appointment, treatment=False):
    """An appointment as the API shows it, read again with its people."""
    appointment = appointments.appointment_for(current_user(), appointment.id)
    data = listings.as_dict(appointment)
    if treatment:
        record = listings.treatment_of(appointment)
        data["treatment"] = None if record is None else {
            name: getattr(record, name) for name in appointments.TREATMENT_FIELDS}
    return data


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
    data = _texts(json_body(), ("email", "password"), errors)
    check(errors)
    try:
        user = auth.authenticate(data["email"], data["password"], client_ip())
    except auth.Throttled as exc:
        seconds = max(1, math.ceil(exc.retry_after.total_seconds()))
        res = json_error(429, f"Too many failed sign-ins. Try again in {seconds} seconds.")
        res.set_header("Retry-After", str(seconds))
        return res
    if user is None:
        return json_error(401, "The email or password is not right.")
    if (refused := api_accounts.second_factor(user)) is not None:  # two-factor sign-in
        return refused
    token = auth.start_session(user, "api", ip=client_ip())
    return {"token": token, "token_type": "Bearer", "user": _user(user)}


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
    data = _texts(json_body(), ("email", "password", "name", "date_of_birth", "phone"), errors)
    check(errors)
    user = people.register_patient(**data)
    response.status = 201
    return _user(user)


# -- doctors and their free slots (public: they reveal no patient data) ---------------------------


@routes.get("/api/doctors")
@api()
@doc("Active doctors", returns="DoctorList",
     query=[query_param("specialization", {"type": "string"},
                        "Only doctors of this specialization (case-insensitive).")])
def doctor_list():
    specialization = request.query.getunicode("specialization", default="")
    return {"doctors": [_doctor(d) for d in people.doctors(specialization)]}


@routes.get("/api/doctors/<doctor_id>/slots")
@api()
@doc("A doctor's free slots on a day", returns="Slots", errors=(400,),
     query=[query_param("date", {"type": "string", "format": "date"},
                        "The clinic-local day, YYYY-MM-DD.", required=True)],
     description="Starts a patient may book now: in the future, within the booking horizon, "
                 "on the doctor's grid and not taken. 404 for an unknown or inactive doctor.")
def doctor_slots(doctor_id):
    doctor = people.doctors().where(Doctor.user == _path_id(doctor_id, "doctor")).first()
    if doctor is None:
        raise NotFound("No such doctor.")
    day = _day(request.query.get("date"))
    starts = slots.free_slots(doctor, day)
    return {"date": day.isoformat(), "slot_minutes": doctor.slot_minutes,
            "slots": [clock.local(start).isoformat() for start in starts]}


# -- appointments ---------------------------------------------------------------------------------


@routes.get("/api/appointments")
@api(*ANYONE_SIGNED_IN)
@doc("Appointments: a patient's own, a doctor's own, every one for an admin",
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
    limit = _query_int("limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _query_int("offset", 0, 0, MAX_OFFSET)
    query = appointments.visible_to(current_user())
    if status:
        query = query.where(Appointment.status == status)
    rows = (query.order_by(Appointment.start.desc(), Appointment.id.desc())
            .limit(limit).offset(offset))
    return {"appointments": [listings.as_dict(a) for a in rows], "limit": limit,
            "offset": offset}


@routes.get("/api/appointments/<appointment_id>")
@api(*ANYONE_SIGNED_IN)
@doc("One appointment, with its treatment once completed", returns="Appointment")
def appointment_detail(appointment_id):
    return _shown(_visible(appointment_id), treatment=True)


@routes.post("/api/appointments")
@api("patient", "admin")
@doc("Book an appointment", body="Booking", returns="Appointment", ok=201, errors=(404, 409),
     description="A patient books for themselves. An admin books for a patient and must send "
                 "patient_id (404 if there is no such patient). 409 when the slot was taken "
                 "or the patient already has an appointment at that time.")
def book_appointment():
    user = current_user()
    data = json_body()
    errors = {}
    doctor_id = _body_id(data, "doctor_id", errors)
    start = _start(data, errors)
    reason = _texts(data, ("reason",), errors)["reason"]
    if user.role == "admin":
        patient_id = _body_id(data, "patient_id", errors)
    elif data.get("patient_id") not in (None, user.id):
        raise Forbidden("Patients book for themselves: leave out patient_id.")
    else:
        patient_id = user.id
    check(errors)
    if user.role == "admin":
        people.patient_for(user, patient_id)
    appointment = appointments.book(patient_id, doctor_id, start, reason)
    response.status = 201
    return _shown(appointment)


@routes.post("/api/appointments/<appointment_id>/cancel")
@api(*ANYONE_SIGNED_IN)
@doc("Cancel an appointment", returns="Appointment", errors=(409,),
     description="Patients may cancel until the clinic's cutoff before the start (409 after); "
                 "doctors until the start; admins any time while it is booked or confirmed.")
def cancel_appointment(appointment_id):
    return _shown(appointments.cancel(_visible(appointment_id), current_user()))


@routes.post("/api/appointments/<appointment_id>/reschedule")
@api(*ANYONE_SIGNED_IN)
@doc("Move an appointment to another free slot of the same doctor", body="Reschedule",
     returns="Appointment", errors=(409,),
     description="The same rules as cancelling apply to the old time; the new one must be free.")
def reschedule_appointment(appointment_id):
    appointment = _visible(appointment_id)
    errors = {}
    start = _start(json_body(), errors)
    check(errors)
    return _shown(appointments.reschedule(appointment, start, current_user()))


@routes.post("/api/appointments/<appointment_id>/complete")
@api("doctor")
@doc("Record the treatment and complete the visit", body="Treatment", returns="Appointment",
     errors=(409,),
     description="Only the appointment's doctor, from the appointment's day on (409 before).")
def complete_appointment(appointment_id):
    appointment = _visible(appointment_id)
    errors = {}
    fields = _texts(json_body(), appointments.TREATMENT_FIELDS, errors)
    check(errors)
    completed = appointments.complete(appointment, current_user(), fields)
    return _shown(completed, treatment=True)


@routes.post("/api/appointments/<appointment_id>/no-show")
@api("doctor", "admin")
@doc("Mark that the patient did not come", returns="Appointment", errors=(409,),
     description="Only once the appointment was due to start (409 before).")
def no_show_appointment(appointment_id):
    return _shown(appointments.mark_no_show(_visible(appointment_id), current_user()))


# -- patients -------------------------------------------------------------------------------------


@routes.get("/api/patients/<patient_id>/history")
@api(*ANYONE_SIGNED_IN)
@doc("A patient's completed visits with their treatment", returns="History",
     description="The patient themself, doctors who have an appointment with them, admins; "
                 "404 for anyone else.")
def patient_history(patient_id):
    patient = audit.opened(current_user(), "view history", _path_id(patient_id, "patient"),
                           **origin())
    visits = listings.history(patient.user_id)
    return {
        "patient": {"id": patient.user_id, "name": patient.user.name,
                    "email": patient.user.email,
                    "date_of_birth": patient.date_of_birth and patient.date_of_birth.isoformat(),
                    "phone": patient.phone},
        "visits": [{"appointment_id": visit.id,
                    "date": clock.local(visit.start).date().isoformat(),
                    "start": clock.local(visit.start).isoformat(),
                    "doctor": visit.doctor.name, "doctor_id": visit.doctor_id,
                    "specialization": visit.doctor_profile.specialization,
                    **{name: getattr(visit.record, name)
                       for name in appointments.TREATMENT_FIELDS}}
                   for visit in visits],
    }


# -- admin ----------------------------------------------------------------------------------------


@routes.post("/api/admin/doctors")
@api("admin")
@doc("Add a doctor", body="NewDoctor", returns="DoctorDetails", ok=201,
     description="400 says what is wrong, per field (working_hours names the weekday).")
def create_doctor():
    data = json_body()
    errors = {}
    text = _texts(data, ("name", "email", "password", "specialization"), errors)
    slot_minutes = data.get("slot_minutes", 30)
    if isinstance(slot_minutes, bool) or not isinstance(slot_minutes, int):
        errors["slot_minutes"] = "Enter a slot length from 5 to 240 minutes."
    hours = data.get("working_hours")
    if hours is None:
        hours = {}
    elif not isinstance(hours, dict):
        errors["working_hours"] = ("Expected an object of weekdays (" + ", ".join(WEEKDAYS)
                                   + ") with lists of [\"HH:MM\", \"HH:MM\"] intervals.")
    check(errors)
    user = people.create_doctor(text["name"], text["email"], text["password"],
                                text["specialization"], slot_minutes, hours)
    doctor = people.doctors(active_only=False).where(Doctor.user == user.id).get()
    response.status = 201
    return {**_user(user), **_doctor(doctor), "active": user.active,
            "working_hours": doctor.working_hours}


@routes.get("/api/admin/dashboard-stats")
@api("admin")
@doc("The admin dashboard's figures", returns="DashboardStats",
     description="Kept for a few minutes (CLINIC_STATS_CACHE_TTL); `cached` says whether these "
                 "came from the cache and `computed_at` when they were computed.")
def dashboard_stats():
    figures, computed_at, cached = stats.dashboard()
    return {**figures, "cached": cached, "computed_at": clock.local(computed_at).isoformat()}


# -- the description ------------------------------------------------------------------------------


@routes.get("/api/openapi.json")
@api()
@doc("This API's OpenAPI 3.0 description", returns="OpenAPI")
def openapi_json():
    return document(routes.routes, settings.get().base_url)


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


# -- reports and task status ----------------------------------------------------------------------


@routes.post("/api/admin/reports/monthly")
@api("admin")
@doc("Make a month's activity reports now", body="MonthlyReportsRequest",
     returns="MonthlyReportsStarted", ok=202,
     errors={400: "month_year is not YYYY-MM or names a month that has not ended, doctor_id "
                  "is not a whole number, or the body is not a JSON object.",
             404: "No active doctor has that doctor_id."},
     description="For every active doctor, or only the one `doctor_id`. The reports are made in "
                 "the background: follow GET /api/tasks/{task_id}, whose result is the summary "
                 "`{total, successful, failed, success_rate, sent, already_sent}`. A doctor "
                 "gets one report a month: one already made (by the monthly job or an earlier "
                 "request) is not emailed again and counts as successful and `already_sent`.")
def start_monthly_reports():
    data = json_body()
    errors = {}
    doctor_id = None if data.get("doctor_id") is None else _body_id(data, "doctor_id", errors)
    check(errors)
    record, month_year = reports.start(current_user(), data.get("month_year"), doctor_id)
    response.status = 202
    return {"task_id": record.task_id, "month_year": month_year, "status": record.state}


@routes.get("/api/tasks/<task_id>")
@api(*ANYONE_SIGNED_IN)
@doc("A background task's state and progress", returns="TaskStatus",
     description="Readable by the user who started the task and by admins; 404 for anyone "
                 "else. `state` goes PENDING, PROGRESS (with `current` of `total` done), then "
                 "SUCCESS with `result` or FAILURE with the reason in `status`.")
def task_status(task_id):
    return progress.as_dict(progress.for_user(current_user(), task_id))


# -- announcements and the reports summary --------------------------------------------------------


@routes.post("/api/admin/announcements")
@api("admin")
@doc("Send an announcement to a group of patients", body="Announcement",
     returns="AnnouncementStarted", ok=202,
     errors={400: "A field is missing or wrong (see `fields`: subject, text, audience, "
                  "doctor_id, from, to)."},
     description="Writes one email per patient in the audience, in the background: follow "
                 "GET /api/tasks/{task_id}. Patients who opted out of announcements are "
                 "recorded as skipped, not sent. Each patient gets it once, also when the "
                 "sending is interrupted and run again. Confirmations and reminders go first "
                 "when CLINIC_MAIL_RATE limits the sending.")
def send_announcement():
    data = json_body()
    errors = {}
    texts = _texts(data, ("subject", "text"), errors)
    audience = data.get("audience")
    if not isinstance(audience, dict):
        errors["audience"] = 'Expected an object such as {"type": "all"}.'
    check(errors)
    announcement, record = announcements.start(current_user(), texts["subject"],
                                               texts["text"], audience)
    response.status = 202
    return {"task_id": record.task_id, "announcement_id": announcement.id,
            "recipients": announcement.recipients}


@routes.get("/api/admin/reports/summary")
@api("admin")
@doc("A month's reports: each doctor's state, when it was sent, its totals",
     returns="ReportSummary",
     query=[query_param("month_year", {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
                        "A month that has ended, YYYY-MM.", required=True)],
     errors={400: "month_year is missing, not YYYY-MM, or names a month that has not ended."},
     description="Every active doctor, and every doctor who has that month's report. `state`: "
                 "sent (its email went out, at `sent_at`), made (the email is on its way), "
                 "failed (the email could not be sent: `error`) or missing (no report yet).")
def report_summary():
    summary = reports.summary(request.query.getunicode("month_year", ""))
    for row in summary["doctors"]:
        for name in ("made_at", "sent_at"):
            row[name] = clock.local(row[name]).isoformat() if row[name] else None
    return summary
