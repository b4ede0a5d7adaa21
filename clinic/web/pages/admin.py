"""The admin's pages: the dashboard, doctors, patients and appointments."""

import bottle
from bottle import request
from markupsafe import Markup

from clinic import (
    appointments,
    audit,
    cancellations,
    i18n,
    listings,
    people,
    settings,
    stats,
)
from clinic.errors import Conflict, Invalid
from clinic.i18n import _, ngettext
from clinic.models import APPOINTMENT_STATUSES
from clinic.web import charts
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form, one_page, paging
from clinic.web.rendering import render, templates
from clinic.web.sessions import current_user, origin

routes = bottle.Bottle()

# A new doctor's week to start from: weekdays 09:00-13:00 and 14:00-17:00.
DEFAULT_HOURS = {day: [["09:00", "13:00"], ["14:00", "17:00"]]
                 for day in ("mon", "tue", "wed", "thu", "fri")}


# -- dashboard ------------------------------------------------------------------------------------


# The charts section as drawn for the chart figures the stats memo keeps (the same dict while
# they are cached), in one language: drawing every doctor's bar and the tables cost more than
# the rest of the page.
_drawn = (None, None, None)


def _charts_section(chart_data):
    global _drawn
    data, language, html = _drawn
    if data is not chart_data or language != i18n.language():
        section = templates.get_template("admin/_dashboard_charts.html")
        html = Markup(section.render(  # noqa: S704 (an autoescaped template's output)
            chart_data=chart_data, charts=charts.dashboard(chart_data),
            statuses=stats.DAY_STATUSES))
        _drawn = (chart_data, i18n.language(), html)
    return html


@routes.get("/admin")
@page("admin")
def dashboard():
    figures, computed_at, cached = stats.dashboard()
    chart_data, charts_at, charts_cached = stats.charts()
    # One freshness line for the page: the older of the two, cached if either is.
    return render("admin/dashboard.html", figures=figures, computed_at=min(computed_at, charts_at),
                  cached=cached or charts_cached, statuses=APPOINTMENT_STATUSES,
                  ttl=settings.get().stats_cache_ttl,
                  charts_section=_charts_section(chart_data))


@routes.post("/admin/refresh-stats")
@page("admin")
def refresh_stats():
    # Dropping the kept figures (rather than computing them here) lets the page we redirect to
    # compute them, so it can say truthfully that they are fresh.
    stats.forget("dashboard")
    stats.forget("charts")
    redirect("/admin")


# -- doctors --------------------------------------------------------------------------------------


@routes.get("/admin/doctors")
@page("admin")
def doctors():
    return render("admin/doctors.html", doctors=list(people.doctors(active_only=False)))


def _doctor_form(doctor, status=200, form=None, errors=None, **context):
    # For a doctor being deactivated: their booked appointments stay, and the admin should know.
    upcoming = listings.upcoming(doctor.user).count() if doctor else 0
    errors = errors or {}
    # A problem with the hours that no weekday's row says (there is none from this form).
    by_day = any(key.startswith("working_hours.") for key in errors)
    context.setdefault("deactivation", {})
    context.setdefault("deactivation_errors", {})
    return render("admin/doctor_form.html", status=status, doctor=doctor, upcoming=upcoming,
                  form=form, errors=errors, week=_week(form), **context,
                  week_error=None if by_day else errors.get("working_hours"))


def _week(form):
    """The weekly editor's rows: (day, its name, how many ranges to offer): two, or more for
    a day that already has more (set through the API)."""
    rows = []
    for day, name in people.WEEKDAY_NAMES.items():
        n = people.RANGES_A_DAY
        while f"hours-{day}-{n + 1}-from" in form:
            n += 1
        rows.append((day, name, n))
    return rows


@routes.get("/admin/doctors/new")
@page("admin")
def new_doctor_form():
    return _doctor_form(None, form={"slot_minutes": "30",
                                    **people.working_hours_to_form(DEFAULT_HOURS)})


@routes.post("/admin/doctors/new")
@page("admin")
def create_doctor():
    data = form()
    try:
        user = people.create_doctor(data.get("name"), data.get("email"), data.get("password"),
                                    data.get("specialization"), data.get("slot_minutes"),
                                    people.working_hours_from_form(data))
    except Invalid as exc:
        data.pop("password", None)
        return _doctor_form(None, status=400, form=data, errors=exc.fields)
    flash(_("%(name)s can now sign in as a doctor with %(email)s.")
          % {"name": user.name, "email": user.email})
    redirect("/admin/doctors")


@routes.get("/admin/doctors/<doctor_id:int>/edit")
@page("admin")
def edit_doctor_form(doctor_id):
    doctor = people.get_doctor(doctor_id)
    return _doctor_form(doctor, form=_doctor_fields(doctor))


def _doctor_fields(doctor):
    return {
        "name": doctor.user.name,
        "specialization": doctor.specialization,
        "slot_minutes": str(doctor.slot_minutes),
        **people.working_hours_to_form(doctor.working_hours),
        "active": "1" if doctor.user.active else "",
    }


@routes.post("/admin/doctors/<doctor_id:int>/edit")
@page("admin")
def edit_doctor(doctor_id):
    doctor = people.get_doctor(doctor_id)
    data = form()
    try:
        people.update_doctor(doctor_id, data.get("name"), data.get("specialization"),
                             data.get("slot_minutes"), people.working_hours_from_form(data),
                             active=bool(data.get("active")), password=data.get("password"))
    except Invalid as exc:
        data.pop("password", None)
        return _doctor_form(doctor, status=400, form=data, errors=exc.fields)
    flash(_("The details of %(name)s are saved.") % {"name": (data.get("name") or "").strip()})
    redirect("/admin/doctors")


@routes.post("/admin/doctors/<doctor_id:int>/<action:re:activate|deactivate>")
@page("admin")
def set_doctor_active(doctor_id, action):
    doctor = people.get_doctor(doctor_id)
    data = form()
    if action == "activate":
        people.set_active(doctor.user_id, True)
        flash(_("%(name)s is active again and takes bookings.") % {"name": doctor.user.name})
    elif data.get("cancel_upcoming"):
        try:
            upcoming, _emailed = cancellations.deactivate_doctor(
                doctor.user_id, True, data.get("reason"), user=current_user())
        except Invalid as exc:
            return _doctor_form(doctor, status=400, form=_doctor_fields(doctor),
                                deactivation=data, deactivation_errors=exc.fields)
        flash(ngettext("%(name)s is deactivated and signed out. %(num)d upcoming appointment is "
                       "being cancelled and the patient emailed the reason.",
                       "%(name)s is deactivated and signed out. %(num)d upcoming appointments "
                       "are being cancelled and each patient emailed the reason.",
                       len(upcoming)) % {"name": doctor.user.name, "num": len(upcoming)})
    else:
        people.set_active(doctor.user_id, False)
        flash(_("%(name)s is deactivated: no new bookings, and signed out. Appointments already "
                "booked stay; cancel them if needed.") % {"name": doctor.user.name})
    redirect("/admin/doctors")


# -- patients -------------------------------------------------------------------------------------


@routes.get("/admin/patients")
@page("admin")
def patients():
    q = request.query.getunicode("q", "").strip()
    number, window = paging()
    rows, more = one_page(people.search_patients(q, **window))
    return render("admin/patients.html", patients=rows, q=q, page=number, more=more)


@routes.get("/admin/patients/<patient_id:int>")
@page("admin")
def patient(patient_id):
    user = current_user()
    patient = audit.opened(user, "view history", patient_id, **origin())
    return render("admin/patient.html", patient=patient,
                  appointments=list(listings.of_patient(user, patient_id)),
                  history=list(listings.history(patient_id)))


# -- appointments ---------------------------------------------------------------------------------


@routes.get("/admin/appointments")
@page("admin")
def appointment_list():
    filters = {name: request.query.getunicode(name, "").strip()
               for name in ("q", "status", "doctor", "date")}
    number, window = paging()
    errors = {}
    try:
        rows, more = one_page(listings.search(filters["q"], filters["status"],
                                                   filters["doctor"], filters["date"], **window))
    except Invalid as exc:
        rows, more, errors = [], False, exc.fields
    return render("admin/appointments.html", status=400 if errors else 200, appointments=rows,
                  form=filters, errors=errors, page=number, more=more,
                  statuses=APPOINTMENT_STATUSES, doctors=list(people.doctors(active_only=False)))


def _appointment_page(appt, status=200, **context):
    return render("admin/appointment.html", status=status, appointment=appt,
                  treatment=listings.treatment_of(appt),
                  can_cancel=appointments.can_change(appt, current_user()), **context)


@routes.get("/admin/appointments/<appointment_id:int>")
@page("admin")
def appointment(appointment_id):
    return _appointment_page(appointments.appointment_for(current_user(), appointment_id))


@routes.post("/admin/appointments/<appointment_id:int>/cancel")
@page("admin")
def cancel_appointment(appointment_id):
    user = current_user()
    appt = appointments.appointment_for(user, appointment_id)
    try:
        cancelled = appointments.cancel(appt, user)
    except Conflict as exc:
        return _appointment_page(appt, status=409, errors={"__all__": exc.message})
    audit.on_behalf(user, "cancel appointment", cancelled, **origin())
    flash(_("The appointment of %(name)s on %(when)s is cancelled.")
          % {"name": appt.patient.name, "when": i18n.formatted(appt.start)})
    redirect(f"/admin/appointments/{appt.id}")
