"""The OpenAPI 3.0 description of the JSON API, built from the routes themselves.

Each API route carries ``@doc(...)`` next to its code (summary, body, success schema, the error
statuses it can answer); ``document(routes)`` walks the Bottle routes and adds what the route
already knows: the path and its parameters, and from ``@api(*roles)`` who may call it, so the
bearer requirement and the 401/403 answers cannot drift from the code. tests/test_openapi.py
checks that every /api/ route is described and every description has a route.
"""

import re

PATH_PARAM_RE = re.compile(r"<(\w+)(?::[^>]*)?>")
# Path parameters are ids (whole numbers) unless named here.
PATH_PARAMS = {"task_id": {"type": "string", "maxLength": 64}}
SUCCESS = {200: "OK", 201: "Created", 202: "Accepted: the work goes on in the background."}

ERRORS = {
    400: "Bad input: the body is not a JSON object, or a field is wrong (see `fields`).",
    401: "Not signed in: send `Authorization: Bearer <token>` from POST /api/login.",
    403: "This account's role may not do this (or a cookie-signed-in POST lacked "
         "X-CSRF-Token).",
    404: "No such thing, or not one this account may see.",
    409: "The request was fine but the current state forbids it (the slot was just taken, "
         "the appointment is no longer active, ...).",
    413: "The body is larger than 1 MiB.",
    429: "Too many failed sign-ins; wait the seconds in Retry-After.",
}


def doc(summary, *, body=None, returns=None, ok=200, query=(), errors=(), description=""):
    """Describe an API route for /api/openapi.json. ``body`` and ``returns`` name schemas in
    SCHEMAS; ``query`` lists query parameters as dicts; ``errors`` the 4xx statuses the route
    itself can answer, or a dict of them to what they mean here when ERRORS does not say it
    (401 and 403 are added from the route's roles)."""
    errors = errors if isinstance(errors, dict) else dict.fromkeys(errors)

    def decorate(fn):
        fn.openapi = {"summary": summary, "body": body, "returns": returns, "ok": ok,
                      "query": list(query), "errors": errors, "description": description}
        return fn

    return decorate


def query_param(name, schema, description, required=False):
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema):
    return {"application/json": {"schema": schema}}


def openapi_path(rule):
    """Bottle's ``/api/appointments/<appointment_id>`` as ``/api/appointments/{appointment_id}``."""
    return PATH_PARAM_RE.sub(r"{\1}", rule)


def _operation(route, spec):
    roles = getattr(route.callback, "api_roles", ())
    params = [{"name": name, "in": "path", "required": True,
               "schema": PATH_PARAMS.get(name, {"type": "integer", "minimum": 1})}
              for name in PATH_PARAM_RE.findall(route.rule)]
    params += spec["query"]
    meanings = spec["errors"]
    errors = set(meanings)
    if roles:
        errors |= {401, 403}
    if spec["body"]:
        errors |= {400, 413}
    if PATH_PARAM_RE.search(route.rule):
        errors.add(404)
    success = {"description": SUCCESS[spec["ok"]]}
    if spec["returns"]:
        success["content"] = _json(ref(spec["returns"]))
    responses = {str(spec["ok"]): success}
    for status in sorted(errors):
        responses[str(status)] = {"description": meanings.get(status) or ERRORS[status],
                                  "content": _json(ref("Error"))}
        if status == 429:
            responses[str(status)]["headers"] = {"Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer"}}}
    description = spec["description"]
    who = ", ".join(roles) if roles else "anyone, without signing in"
    operation = {
        "operationId": route.callback.__name__,
        "summary": spec["summary"],
        "description": (description + "\n\n" if description else "") + f"Who may call: {who}.",
        "responses": responses,
        # Signed-in routes take the bearer token; public ones need nothing.
        "security": [{"bearerAuth": []}] if roles else [],
    }
    if params:
        operation["parameters"] = params
    if spec["body"]:
        operation["requestBody"] = {"required": True, "content": _json(ref(spec["body"]))}
    return operation


def document(routes, server_url=""):
    """The OpenAPI 3.0 document for the documented routes among ``routes`` (Bottle Routes)."""
    paths = {}
    for route in routes:
        spec = getattr(route.callback, "openapi", None)
        if spec is not None:
            paths.setdefault(openapi_path(route.rule), {})[route.method.lower()] = \
                _operation(route, spec)
    result = {
        "openapi": "3.0.3",
        "info": {
            "title": "Clinic API",
            "version": "1",
            "description": (
                "Appointments, doctors and patient records as JSON. Sign in with POST /api/login "
                "and send the token as `Authorization: Bearer <token>`. Errors are "
                "`{\"error\": \"...\"}` with a 4xx status; bad input also has `fields` (field "
                "-> what is wrong). Times are ISO 8601 with an offset, in the clinic's time "
                "zone. A browser signed in with the session cookie may call the API too, but "
                "then every POST must carry the X-CSRF-Token header."),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }
    if server_url:
        result["servers"] = [{"url": server_url}]
    return result


# -- schemas --------------------------------------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_INSTANT = {"type": "string", "format": "date-time",
            "description": "ISO 8601 with offset, in the clinic's time zone."}
_CHANNEL = {"type": "string", "enum": ["email", "sms", "both"]}
_HHMM = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_STATUSES = ["booked", "confirmed", "arrived", "completed", "cancelled", "no_show"]
_TREATMENT = {name: _STR for name in ("visit_type", "symptoms", "diagnosis", "treatment",
                                      "prescription", "notes")}


def _object(properties, required=()):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


SCHEMAS = {
    "Error": _object({
        "error": {"type": "string", "description": "What went wrong, for people."},
        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Input field -> what is wrong with it."},
    }, ["error"]),
    "Credentials": _object({"email": _STR, "password": _STR}, ["email", "password"]),
    "User": _object({"id": _ID, "name": _STR,
                     "email": {"type": "string", "nullable": True,
                               "description": "null for a patient registered without one."},
                     "role": {"type": "string", "enum": ["patient", "doctor", "admin", "desk"]}},
                    ["id", "email", "name", "role"]),
    "Token": _object({
        "token": {"type": "string", "description": "Send as Authorization: Bearer <token>; "
                                                   "valid for 30 days or until POST /api/logout."},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "user": ref("User"),
    }, ["token", "token_type", "user"]),
    "SignedOut": _object({"signed_out": {"type": "boolean"}}, ["signed_out"]),
    "Registration": _object({
        "email": _STR,
        "password": {"type": "string", "minLength": 8},
        "name": _STR,
        "date_of_birth": {"type": "string", "format": "date"},
        "phone": {"type": "string", "maxLength": 40},
    }, ["email", "password", "name"]),
    "Doctor": _object({"id": _ID, "name": _STR, "specialization": _STR,
                       "slot_minutes": _INT}, ["id", "name", "specialization", "slot_minutes"]),
    "DoctorList": _object({"doctors": {"type": "array", "items": ref("Doctor")}}, ["doctors"]),
    "WorkingHours": {
        "type": "object",
        "description": "Clinic-local wall times per weekday; intervals must not overlap.",
        "properties": {day: {"type": "array", "items": {
            "type": "array", "items": _HHMM, "minItems": 2, "maxItems": 2}}
            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "additionalProperties": False,
        "example": {"mon": [["09:00", "13:00"], ["14:00", "17:00"]]},
    },
    "NewDoctor": _object({
        "name": _STR, "email": _STR, "password": {"type": "string", "minLength": 8},
        "specialization": _STR,
        "slot_minutes": {"type": "integer", "minimum": 5, "maximum": 240, "default": 30},
        "working_hours": ref("WorkingHours"),
    }, ["name", "email", "password", "specialization"]),
    "DoctorDetails": _object({
        "id": _ID, "name": _STR, "email": _STR, "role": {"type": "string", "enum": ["doctor"]},
        "active": {"type": "boolean"}, "specialization": _STR, "slot_minutes": _INT,
        "working_hours": ref("WorkingHours"),
    }, ["id", "name", "email", "role", "active", "specialization", "slot_minutes",
        "working_hours"]),
    "Slots": _object({
        "date": {"type": "string", "format": "date"},
        "slot_minutes": _INT,
        "slots": {"type": "array", "items": _INSTANT,
                  "description": "Free, bookable starts, ascending."},
    }, ["date", "slot_minutes", "slots"]),
    "Treatment": _object({**_TREATMENT, "visit_type": {"type": "string", "minLength": 1}},
                         ["visit_type"]),
    "Appointment": _object({
        "id": _ID, "status": {"type": "string", "enum": _STATUSES}, "start": _INSTANT,
        "end": _INSTANT, "reason": _STR, "doctor_id": _ID, "patient_id": _ID,
        "patient_name": _STR, "doctor_name": _STR, "specialization": _STR,
        "treatment": {"allOf": [ref("Record")], "nullable": True,
                      "description": "Only on a single appointment; null until completed."},
        "amendments": {"type": "array", "items": ref("AmendmentMade"),
                       "description": "Only on a single appointment: the record's "
                                      "corrections, oldest first."},
    }, ["id", "status", "start", "end", "reason", "doctor_id", "patient_id", "patient_name",
        "doctor_name", "specialization"]),
    "Record": _object({**_TREATMENT, "amended_at": {**_INSTANT, "nullable": True}},
                      [*_TREATMENT, "amended_at"]),
    "Amendment": _object({**_TREATMENT, "reason": {"type": "string", "maxLength": 2000}}),
    "AmendmentMade": _object({
        "at": _INSTANT, "author_id": {**_ID, "nullable": True}, "author_name": _STR,
        "reason": _STR,
        "before": {"type": "object", "additionalProperties": _STR,
                   "description": "Each changed field's earlier text."},
        "after": {"type": "object", "additionalProperties": _STR,
                  "description": "Each changed field's new text."},
    }, ["at", "author_id", "author_name", "reason", "before", "after"]),
    "AppointmentList": _object({
        "appointments": {"type": "array", "items": ref("Appointment")},
        "limit": _INT, "offset": _INT,
    }, ["appointments", "limit", "offset"]),
    "Booking": _object({
        "doctor_id": _ID,
        "start": {**_INSTANT, "description": "One of the doctor's free slots, with offset."},
        "reason": {"type": "string", "maxLength": 2000},
        "patient_id": {**_ID, "description": "Admins and the desk only, and required for them: "
                                             "the patient booked for. Patients book for "
                                             "themselves."},
    }, ["doctor_id", "start"]),
    "Reschedule": _object({"start": _INSTANT}, ["start"]),
    "Patient": _object({
        "id": _ID, "name": _STR,
        "email": {"type": "string", "nullable": True,
                  "description": "null: the patient has no email address and gets no email."},
        "date_of_birth": {"type": "string", "format": "date", "nullable": True},
        "phone": _STR,
        "channel": {**_CHANNEL,
                    "description": "How confirmations, cancellations, reminders and waitlist "
                                   "offers reach the patient."},
        "language": {"type": "string", "nullable": True,
                     "description": "A code of CLINIC_LANGUAGES; null: not chosen (the "
                                    "clinic's first language)."},
        "sms_opted_out": {"type": "boolean",
                          "description": "The phone replied STOP: no SMS until it replies "
                                         "START."},
        "pending_email": {"type": "string", "nullable": True,
                          "description": "GET and PATCH /api/patients/{patient_id} only: a new "
                                         "address waiting for the patient to confirm it."},
    }, ["id", "name", "email", "date_of_birth", "phone", "channel", "language",
        "sms_opted_out"]),
    "PatientList": _object({"patients": {"type": "array", "items": ref("Patient")}},
                           ["patients"]),
    "NewPatient": _object({
        "name": _STR,
        "email": {"type": "string", "description": "Optional: without one, no email is sent."},
        "date_of_birth": {"type": "string", "format": "date"},
        "phone": {"type": "string", "description": "With its country code, e.g. +49 30 1234567."},
        "channel": {**_CHANNEL, "description": "Default email; sms and both need a phone."},
        "language": {"type": "string", "example": "de",
                     "description": "One of CLINIC_LANGUAGES; empty: not chosen."},
    }, ["name"]),
    "PatientChanges": _object({
        "name": {"type": "string", "maxLength": 200},
        "email": {"type": "string",
                  "description": "Takes effect once the patient follows the emailed link."},
        "phone": {"type": "string", "example": "+49 30 1234567"},
        "date_of_birth": {"type": "string", "format": "date"},
        "channel": {**_CHANNEL, "description": "sms and both need a phone."},
        "language": {"type": "string", "example": "de",
                     "description": "One of CLINIC_LANGUAGES; another is refused with 400."},
    }),
    "NewStaff": _object({
        "name": _STR, "email": _STR, "password": {"type": "string", "minLength": 8},
        "role": {"type": "string", "enum": ["desk", "admin"]},
    }, ["name", "email", "password", "role"]),
    "Visit": _object({
        "appointment_id": _ID, "date": {"type": "string", "format": "date"}, "start": _INSTANT,
        "doctor": _STR, "doctor_id": _ID, "specialization": _STR, **_TREATMENT,
        "amended_at": {**_INSTANT, "nullable": True,
                       "description": "When the record was last amended; null if never."},
    }, ["appointment_id", "date", "start", "doctor", "doctor_id", "specialization",
        *_TREATMENT, "amended_at"]),
    "History": _object({"patient": ref("Patient"),
                        "visits": {"type": "array", "items": ref("Visit"),
                                   "description": "Completed visits, newest first."}},
                       ["patient", "visits"]),
    "StatusCounts": _object({status: _INT for status in _STATUSES}, _STATUSES),
    "DashboardStats": _object({
        "today": ref("StatusCounts"), "this_month": ref("StatusCounts"),
        "patients": _INT, "doctors": _INT, "completed_treatments": _INT,
        "date": {"type": "string", "format": "date"},
        "cached": {"type": "boolean", "description": "Served from the short-lived cache."},
        "computed_at": _INSTANT,
    }, ["today", "this_month", "patients", "doctors", "completed_treatments", "date", "cached",
        "computed_at"]),
    "ExportStarted": _object({
        "task_id": {"type": "string", "description": "Follow it with GET /api/tasks/{task_id}."},
        "status": {"type": "string", "enum": ["PENDING", "PROGRESS"]},
    }, ["task_id", "status"]),
    "MonthlyReportsRequest": _object({
        "month_year": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$",
                       "description": "A month that has ended, YYYY-MM.", "example": "2026-10"},
        "doctor_id": {**_ID, "description": "Only this active doctor; leave out for all."},
    }, ["month_year"]),
    "MonthlyReportsStarted": _object({
        "task_id": {"type": "string", "description": "Follow it with GET /api/tasks/{task_id}."},
        "month_year": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
        "status": {"type": "string", "enum": ["PENDING"]},
    }, ["task_id", "month_year", "status"]),
    "TaskStatus": _object({
        "task_id": _STR,
        "name": {"type": "string", "description": "What the task does, e.g. monthly-reports."},
        "state": {"type": "string", "enum": ["PENDING", "PROGRESS", "SUCCESS", "FAILURE"]},
        "current": {"type": "integer", "minimum": 0, "description": "Steps done."},
        "total": {"type": "integer", "minimum": 0, "description": "Steps in all."},
        "status": {"type": "string", "description": "What it is doing, or why it failed."},
        "result": {"type": "object", "nullable": True,
                   "description": "Once SUCCESS: what the task made. Monthly reports: "
                                  "{month_year, total, successful, failed, success_rate (0 to "
                                  "1), sent, already_sent, summary: {total, successful, "
                                  "failed, success_rate}, results: [{id, name, outcome (sent, "
                                  "already_sent or failed), error}]}; successful = sent + "
                                  "already_sent."},
    }, ["task_id", "name", "state", "current", "total", "status", "result"]),
    "OpenAPI": {"type": "object", "description": "This document."},
}


# -- announcements and the reports summary --------------------------------------------------------

_DAY = {"type": "string", "format": "date", "description": "A clinic day, YYYY-MM-DD."}
_MONTH = {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}

SCHEMAS.update({
    "Announcement": _object({
        "subject": {"type": "string", "maxLength": 150},
        "text": {"type": "string", "maxLength": 10000,
                 "description": "Plain text; an empty line starts a new paragraph."},
        "audience": _object({
            "type": {"type": "string", "enum": ["all", "doctor", "appointments"],
                     "description": "all: every active patient; doctor: patients with an "
                                    "appointment with `doctor_id`; appointments: patients with "
                                    "an appointment on a day from `from` to `to`."},
            "doctor_id": {**_ID, "description": "With type doctor."},
            "from": {**_DAY, "description": "With type appointments: the first day."},
            "to": {**_DAY, "description": "With type appointments: the last day (included)."},
        }, ["type"]),
    }, ["subject", "text", "audience"]),
    "AnnouncementStarted": _object({
        "task_id": {"type": "string", "description": "Follow it with GET /api/tasks/{task_id}."},
        "announcement_id": _ID,
        "recipients": {"type": "integer", "minimum": 0,
                       "description": "Patients in the audience, opted-out ones included."},
    }, ["task_id", "announcement_id", "recipients"]),
    "ReportTotals": _object({
        "appointments": {"type": "integer", "minimum": 0},
        "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        "treatments": {"type": "integer", "minimum": 0},
        "patients": {"type": "integer", "minimum": 0},
        "no_show_rate": {"type": "number", "nullable": True,
                         "description": "no_show / (completed + no_show); null with neither."},
    }),
    "ReportSummary": _object({
        "month_year": _MONTH,
        "counts": _object({state: {"type": "integer", "minimum": 0}
                           for state in ("sent", "made", "failed", "missing")}),
        "doctors": {"type": "array", "items": _object({
            "doctor_id": _ID,
            "doctor_name": _STR,
            "active": {"type": "boolean"},
            "state": {"type": "string", "enum": ["sent", "made", "failed", "missing"]},
            "made_at": {**_INSTANT, "nullable": True},
            "sent_at": {**_INSTANT, "nullable": True},
            "error": {"type": "string", "description": "Why its email failed, if it did."},
            "totals": {"allOf": [{"$ref": "#/components/schemas/ReportTotals"}],
                       "nullable": True},
        }, ["doctor_id", "doctor_name", "active", "state", "made_at", "sent_at", "error",
            "totals"])},
    }, ["month_year", "counts", "doctors"]),
})


# -- the clinic's details -------------------------------------------------------------------------

_CLINIC_FIELDS = {
    "name": {"type": "string", "maxLength": 200},
    "address": {"type": "string", "maxLength": 300},
    "phone": {"type": "string", "example": "+49 30 1234567",
              "description": "E.164 in answers; the clinic's national format is accepted in "
                             "changes."},
    "timezone": {"type": "string", "example": "Europe/Berlin", "description": "An IANA name."},
    "website": {"type": "string", "example": "https://example.com"},
}

SCHEMAS.update({
    "Clinic": _object({
        **_CLINIC_FIELDS,
        "timezone_confirmed": {"type": "boolean",
                               "description": "An admin saved the time zone (or it is set in "
                                              "the environment)."},
        "from_environment": {"type": "array",
                             "items": {"type": "string", "enum": list(_CLINIC_FIELDS)},
                             "description": "The fields set by CLINIC_ variables, which win "
                                            "over saved ones."},
    }, ["name", "address", "phone", "timezone", "website", "timezone_confirmed",
        "from_environment"]),
    "ClinicChanges": _object(_CLINIC_FIELDS),
})


# -- the waitlist ---------------------------------------------------------------------------------

SCHEMAS.update({
    "WaitlistJoin": _object({
        "doctor_id": _ID,
        "from": {**_DAY, "description": "The first day the patient could come."},
        "to": {**_DAY, "description": "The last day (included), not before `from`."},
        "patient_id": {**_ID, "description": "Desk and admins only, and required for them."},
    }, ["doctor_id", "from", "to"]),
    "WaitlistOffer": _object({
        "id": _ID, "start": _INSTANT, "end": _INSTANT,
        "status": {"type": "string", "enum": ["held", "claimed", "expired"]},
        "expires_at": {**_INSTANT, "description": "Until when the slot is held; claim it "
                                                  "before."},
    }, ["id", "start", "end", "status", "expires_at"]),
    "WaitlistEntry": _object({
        "id": _ID, "doctor_id": _ID, "doctor_name": _STR, "patient_id": _ID,
        "from": _DAY, "to": _DAY,
        "status": {"type": "string", "enum": ["waiting", "booked", "left"]},
        "created_at": _INSTANT,
        "offer": {"allOf": [ref("WaitlistOffer")], "nullable": True,
                  "description": "The slot held for this entry now, or null."},
    }, ["id", "doctor_id", "doctor_name", "patient_id", "from", "to", "status", "created_at",
        "offer"]),
    "WaitlistList": _object({"entries": {"type": "array", "items": ref("WaitlistEntry")}},
                            ["entries"]),
})
# -- the calendar: time off, visit types, cancelling a doctor's bookings --------------------------

_LOCAL = {"type": "string", "description": "Clinic-local wall time, YYYY-MM-DDTHH:MM (an offset "
                                           "is honoured), or a date alone for the whole day."}

SCHEMAS.update({
    "NewTimeOff": _object({
        "doctor_id": {**_ID, "nullable": True,
                      "description": "The doctor away; null closes the whole clinic."},
        "start": _LOCAL,
        "end": {**_LOCAL, "description": _LOCAL["description"] + " A date alone ends after "
                                                                  "that day."},
        "reason": {"type": "string", "maxLength": 200},
        "cancel_affected": {"type": "boolean", "default": False,
                            "description": "Cancel the visits inside and email each patient "
                                           "the reason (needs a reason)."},
    }, ["start", "end"]),
    "TimeOffRequest": _object({"start": _LOCAL, "end": _LOCAL,
                               "reason": {"type": "string", "maxLength": 200}},
                              ["start", "end"]),
    "TimeOffDecision": _object({"cancel_affected": {"type": "boolean", "default": False}}),
    "Cancellation": _object({
        "id": _ID, "reason": _STR,
        "appointment_ids": {"type": "array", "items": _ID},
        "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "task_id": {"type": "string", "description": "Follow it with GET /api/tasks/{task_id}."},
        "cancelled": _INT, "skipped": _INT, "error": _STR,
    }, ["id", "reason", "appointment_ids", "state", "task_id", "cancelled", "skipped",
        "error"]),
    "TimeOff": _object({
        "id": _ID,
        "doctor_id": {**_ID, "nullable": True, "description": "null: the whole clinic."},
        "start": _INSTANT, "end": _INSTANT, "reason": _STR,
        "status": {"type": "string", "enum": ["requested", "approved", "declined"]},
        "affected": {"type": "array", "items": _ID,
                     "description": "Visits booked inside when it was entered (now, on a list)."},
        "cancellation_id": {**_ID, "nullable": True},
        "cancellation": {"allOf": [ref("Cancellation")], "nullable": True},
    }, ["id", "doctor_id", "start", "end", "reason", "status", "affected", "cancellation"]),
    "TimeOffList": _object({"time_off": {"type": "array", "items": ref("TimeOff")}},
                           ["time_off"]),
    "TimeOffRemoved": _object({"id": _ID, "removed": {"type": "boolean"}}, ["id", "removed"]),
    "NewVisitType": _object({
        "name": {"type": "string", "maxLength": 100},
        "minutes": {"type": "integer", "minimum": 5, "maximum": 480},
        "doctor_ids": {"type": "array", "items": _ID, "minItems": 1},
    }, ["name", "minutes", "doctor_ids"]),
    "VisitType": _object({"id": _ID, "name": _STR, "minutes": _INT,
                          "doctor_ids": {"type": "array", "items": _ID}},
                         ["id", "name", "minutes", "doctor_ids"]),
    "VisitTypeList": _object({"visit_types": {"type": "array", "items": ref("VisitType")}},
                             ["visit_types"]),
    "Deactivation": _object({
        "cancel_upcoming": {"type": "boolean", "default": False},
        "reason": {"type": "string", "maxLength": 300,
                   "description": "What the patients are told; needed with cancel_upcoming."},
    }),
    "Deactivated": _object({
        "id": _ID, "active": {"type": "boolean"},
        "upcoming": {"type": "array", "items": _ID,
                     "description": "The doctor's visits still to come."},
        "cancellation": {"allOf": [ref("Cancellation")], "nullable": True},
    }, ["id", "active", "upcoming", "cancellation"]),
})
SCHEMAS["Slots"]["properties"]["minutes"] = {
    "type": "integer", "description": "The length of the visit the starts are for."}
SCHEMAS["Booking"]["properties"]["visit_type_id"] = {
    **_ID, "description": "A visit type the doctor offers: the visit lasts its minutes. "
                          "Without it, one of the doctor's slots."}
