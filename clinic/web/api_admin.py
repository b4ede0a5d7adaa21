"""The admin's JSON API under /api/admin/: the clinic's details, adding doctors, the
dashboard's figures, monthly reports and their summary, announcements. create_app() merges
these routes with api_routes', so /api/openapi.json describes them too."""

import bottle
from bottle import request, response

from clinic import announcements, clock, details, people, reports, stats
from clinic.errors import Invalid, check
from clinic.i18n import _
from clinic.models import WEEKDAYS, Doctor
from clinic.web import api_input, api_routes
from clinic.web.csrf import csrf_ok
from clinic.web.decorators import api, json_error
from clinic.web.inputs import json_body
from clinic.web.openapi import doc, query_param
from clinic.web.sessions import current_user

routes = bottle.Bottle()


# -- the clinic ----------------------------------------------------------------------------------


@routes.get("/api/admin/clinic")
@api("admin")
@doc("The clinic's details in force", returns="Clinic",
     description="Name, address, phone (E.164), time zone and website as pages, emails and "
                 "schedules use them now. `from_environment` names those set by a CLINIC_ "
                 "variable: these win over what is saved here, and cannot be changed here.")
def clinic_details():
    return details.current().as_json()


@routes.route("/api/admin/clinic", method="PATCH")
@api("admin")
@doc("Change the clinic's details", body="ClinicChanges", returns="Clinic",
     errors={400: "A field is wrong (see `fields`): a time zone we do not know, a phone that is "
                  "not one, an empty name, a website that is not an address. Nothing is saved.",
             409: "A field is set by its CLINIC_ variable in the environment (see `fields`), "
                  "which wins: change it there. Nothing is saved."},
     description="Only the fields sent change, at once, in every page, email and schedule "
                 "(other processes within 10 seconds), without a restart. A phone may be "
                 "written in the clinic's national format; it is kept in E.164. Sending the "
                 "time zone confirms it (a new clinic's admin is asked to).")
def clinic_update():
    if request.environ.get("clinic.auth") == "cookie" and not csrf_ok():
        return json_error(403, "CSRF check failed: send the X-CSRF-Token header.")
    data = json_body()
    errors = {}
    unknown = sorted(set(data) - set(details.FIELDS))
    if unknown:
        raise Invalid(f"Unknown field {unknown[0]!r}; the fields are "
                      + ", ".join(details.FIELDS) + ".",
                      dict.fromkeys(unknown, "Not a field of the clinic."))
    changes = api_input.texts(data, details.FIELDS, errors, present_only=True)
    check(errors)
    return details.update(changes, current_user()).as_json()


# -- doctors and the dashboard --------------------------------------------------------------------


@routes.post("/api/admin/doctors")
@api("admin")
@doc("Add a doctor", body="NewDoctor", returns="DoctorDetails", ok=201,
     description="400 says what is wrong, per field (working_hours names the weekday).")
def create_doctor():
    data = json_body()
    errors = {}
    text = api_input.texts(data, ("name", "email", "password", "specialization"), errors)
    slot_minutes = data.get("slot_minutes", 30)
    if isinstance(slot_minutes, bool) or not isinstance(slot_minutes, int):
        errors["slot_minutes"] = _("Enter a slot length from 5 to 240 minutes.")
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
    return {**api_routes.user_shape(user), **api_routes.doctor_shape(doctor), "active": user.active,
            "working_hours": doctor.working_hours}


@routes.get("/api/admin/dashboard-stats")
@api("admin")
@doc("The admin dashboard's figures", returns="DashboardStats",
     description="Kept for a few minutes (CLINIC_STATS_CACHE_TTL); `cached` says whether these "
                 "came from the cache and `computed_at` when they were computed.")
def dashboard_stats():
    figures, computed_at, cached = stats.dashboard()
    return {**figures, "cached": cached, "computed_at": clock.local(computed_at).isoformat()}


# -- reports and announcements -----------------------------------------------------------------


@routes.post("/api/admin/reports/monthly")
@api("admin")
@doc("Make a month's activity reports now", body="MonthlyReportsRequest",
     returns="MonthlyReportsStarted", ok=202,
     errors={400: "month_year is not YYYY-MM or names a month that has not ended, doctor_id "
                  "is not a whole number, or the body is not a JSON object.",
             404: "No active doctor has that doctor_id."},
     description="For every active doctor, or only the one `doctor_id`. The reports are made in "
                 "the background: follow GET /api/tasks/{task_id}, whose result is the summary "
                 "`{total, successful, failed, success_rate, sent, already_sent}` with "
                 "`summary` (the first four) and `results` (one `{id, name, outcome, error}` "
                 "per doctor). A doctor "
                 "gets one report a month: one already made (by the monthly job or an earlier "
                 "request) is not emailed again and counts as successful and `already_sent`.")
def start_monthly_reports():
    data = json_body()
    errors = {}
    doctor_id = None
    if data.get("doctor_id") is not None:
        doctor_id = api_input.body_id(data, "doctor_id", errors)
    check(errors)
    record, month_year = reports.start(current_user(), data.get("month_year"), doctor_id)
    response.status = 202
    return {"task_id": record.task_id, "month_year": month_year, "status": record.state}




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
    texts = api_input.texts(data, ("subject", "text"), errors)
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
