"""The front desk's pages: the day sheet, booking for a patient (found or registered on the
spot), moving, cancelling and checking in. Plain forms, no JavaScript; nothing here shows a
medical record. Every change made for a patient is in the audit log."""

from datetime import timedelta
from urllib.parse import quote

import bottle
from bottle import request

from clinic import accounts, appointments, audit, clock, desk, i18n, listings, people, slots
from clinic.db import database
from clinic.errors import ClinicError, Invalid
from clinic.i18n import _
from clinic.models import ACTIVE_STATUSES
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user, origin

routes = bottle.Bottle()

STAFF = ("desk", "admin")


def iso(when):
    """A start as the forms send it back: ISO 8601 in clinic time, with its offset."""
    return clock.local(when).isoformat()


def _sheet_url(when):
    return f"/desk?date={clock.local(when).date().isoformat()}"


@routes.get("/desk")
@page(*STAFF)
def day_sheet():
    day = clock.parse_day(request.query.getunicode("date"))
    now = clock.now()
    return render("desk/sheet.html", day=day, today=clock.local(now).date(),
                  previous_day=day - timedelta(days=1), next_day=day + timedelta(days=1),
                  columns=[_shown(column, now) for column in desk.day_sheet(day, now)])


def _shown(column, now):
    """A column with its times in clock time, converted once here: a sheet of 50 doctors has
    hundreds of visits and free times, and filters per time would be most of its cost."""
    tz = clock.zone()
    today = clock.local(now).date()
    visits = []
    for visit in column.visits:
        start, end = visit.start.astimezone(tz), visit.end.astimezone(tz)
        visits.append({
            "id": visit.id, "patient_id": visit.patient_id, "patient_name": visit.patient_name,
            "status": visit.status,
            "no_email": not visit.patient_email, "time": f"{start:%H:%M}\u2013{end:%H:%M}",
            # The desk may move or cancel any visit still to happen, cutoff or not.
            "changeable": visit.status in ACTIVE_STATUSES,
            "can_check_in": visit.status in ACTIVE_STATUSES and start.date() == today})
    free = [(local.isoformat(), f"{local:%H:%M}")
            for local in (start.astimezone(tz) for start in column.free)]
    return {"doctor": column.doctor, "visits": visits, "free": free}


def _booking_page(status=200, **context):
    data = {**request.query.decode(), **context.pop("form", {})}
    doctor = slots.bookable_doctor(data.get("doctor_id"))
    start = appointments.parse_start(data.get("start"))
    q = (data.get("q") or "").strip()
    found = list(people.search_patients(q, 20)) if q else []
    return render("desk/book.html", status=status, doctor=doctor, start=start, q=q,
                  found=found, form={"language": i18n.default(), **data},
                  errors=context.pop("errors", {}), iso=iso, channel_words=people.CHANNEL_WORDS,
                  **context)


@routes.get("/desk/book")
@page(*STAFF)
def booking_form():
    return _booking_page()


@routes.post("/desk/book")
@page(*STAFF)
def book():
    """Book the chosen time for a patient found by the search (``patient_id``), or for a new
    patient registered in the same step (name, email, ...): both or neither are written."""
    user = current_user()
    data = form()
    try:
        start = appointments.parse_start(data.get("start"))
        with database.atomic():
            if data.get("patient_id"):
                patient = people.patient_to_book(_int(data["patient_id"]))
            else:
                patient = _register(data)
                audit.record(user, "register patient", patient.id, **origin())
            appointment = appointments.book(patient.id, data.get("doctor_id"), start,
                                            data.get("reason"))
            audit.on_behalf(user, "book appointment", appointment, **origin())
    except Invalid as exc:
        return _booking_page(400, form=data, errors=exc.fields or {"__all__": exc.message})
    except ClinicError as exc:
        return _booking_page(exc.status, form=data, errors={"__all__": exc.message})
    text = (_("Booked %(name)s at %(time)s with %(doctor)s.")
            % {"name": patient.name, "time": i18n.formatted(start, "time"),
               "doctor": appointment.doctor.name})
    if not patient.email and people.patient_contact(patient.id).channel == "email":
        text += " " + _("They have no email address: tell them the time yourself.")
    flash(text)
    redirect(_sheet_url(start))


def _register(data):
    """The patient the registration form describes (people.register_at_desk)."""
    return people.register_at_desk(
        data.get("name"), data.get("email"), data.get("date_of_birth"), data.get("phone"),
        data.get("channel"), data.get("language"))


def _patients_page(status=200, **context):
    q = request.query.getunicode("q", "").strip()
    return render("desk/patients.html", status=status, q=q,
                  patients=list(people.search_patients(q, 50)) if q else [],
                  form={"language": i18n.default(), **context.pop("form", {})},
                  errors=context.pop("errors", {}), channel_words=people.CHANNEL_WORDS)


@routes.get("/desk/patients")
@page(*STAFF)
def patients():
    return _patients_page()


@routes.post("/desk/patients")
@page(*STAFF)
def register_patient():
    data = form()
    try:
        patient = _register(data)
    except Invalid as exc:
        return _patients_page(400, form=data, errors=exc.fields or {"__all__": exc.message})
    audit.record(current_user(), "register patient", patient.id, **origin())
    text = _("%(name)s is registered.") % {"name": patient.name}
    if not patient.email:
        text += " " + _("They have no email address, so the clinic will send them no email.")
    flash(text)
    redirect(f"/desk/patients?q={quote(patient.name)}")


def _patient_page(patient_id, status=200, form=None, errors=None):
    patient = people.patient_contact(patient_id)
    profile = accounts.profile(patient.user)
    upcoming, _past = listings.patient_lists(patient_id, limit=20)
    return render("desk/patient.html", status=status, patient=patient, profile=profile,
                  upcoming=upcoming, channel_words=people.CHANNEL_WORDS,
                  form=form or {**profile, "language": profile["language"] or i18n.default(),
                                "phone": profile["phone"] or "",
                                "date_of_birth": profile["date_of_birth"] or "",
                                "email": profile["email"] or ""},
                  errors=errors or {})


@routes.get("/desk/patients/<patient_id:int>")
@page(*STAFF)
def patient_details(patient_id):
    return _patient_page(patient_id)


@routes.post("/desk/patients/<patient_id:int>")
@page(*STAFF)
def patient_update(patient_id):
    """Save the patient's details: how to reach them, their channel and language. Fields the
    form did not send (the language where only one is offered) stay as they are."""
    data = form()
    changes = {name: data[name] for name in accounts.PATIENT_FIELDS if name in data}
    # The select shows the clinic's first language for a patient who chose none: left as it
    # was, it chooses nothing.
    stored = people.patient_contact(patient_id).user.language
    if changes.get("language") == (stored or i18n.default()):
        del changes["language"]
    try:
        profile = accounts.update_patient(current_user(), patient_id, changes, **origin())
    except Invalid as exc:
        return _patient_page(patient_id, 400, form=data,
                             errors=exc.fields or {"__all__": exc.message})
    text = _("The details of %(name)s are saved.") % {"name": profile["name"]}
    if profile["pending_email"]:
        text += " " + (_("The new email %(email)s takes effect once the patient follows the "
                         "link sent to it.") % {"email": profile["pending_email"]})
    flash(text)
    redirect(f"/desk/patients/{patient_id}")


def _int(raw):
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise Invalid(_("Choose a patient.")) from None


def _appointment(appointment_id):
    return appointments.appointment_for(current_user(), appointment_id)


@routes.post("/desk/appointments/<appointment_id:int>/check-in")
@page(*STAFF)
def check_in(appointment_id):
    appt = _appointment(appointment_id)
    arrived = appointments.check_in(appt)
    if arrived.status != appt.status:
        audit.on_behalf(current_user(), "check in", arrived, **origin())
    flash(_("%(name)s is checked in for %(time)s.")
          % {"name": appt.patient.name, "time": i18n.formatted(appt.start, "time")})
    redirect(_sheet_url(appt.start))


@routes.post("/desk/appointments/<appointment_id:int>/cancel")
@page(*STAFF)
def cancel(appointment_id):
    appt = _appointment(appointment_id)
    cancelled = appointments.cancel(appt, current_user())
    audit.on_behalf(current_user(), "cancel appointment", cancelled, **origin())
    flash(_("Cancelled %(name)s at %(time)s with %(doctor)s.")
          % {"name": appt.patient.name, "time": i18n.formatted(appt.start, "time"),
             "doctor": appt.doctor.name})
    redirect(_sheet_url(appt.start))


def _move_page(appt, status=200, errors=None):
    day = clock.parse_day(request.query.getunicode("date"), clock.local(appt.start).date())
    doctor = people.get_doctor(appt.doctor_id)
    return render("desk/move.html", status=status, appointment=appt, day=day,
                  previous_day=day - timedelta(days=1), next_day=day + timedelta(days=1),
                  free=slots.free_slots(doctor, day, exclude=appt.id), errors=errors or {},
                  iso=iso)


@routes.get("/desk/appointments/<appointment_id:int>/move")
@page(*STAFF)
def move_form(appointment_id):
    return _move_page(_appointment(appointment_id))


@routes.post("/desk/appointments/<appointment_id:int>/move")
@page(*STAFF)
def move(appointment_id):
    appt = _appointment(appointment_id)
    try:
        moved = appointments.reschedule(appt, appointments.parse_start(form().get("start")),
                                        current_user())
    except ClinicError as exc:
        return _move_page(appt, exc.status, {"__all__": exc.message})
    audit.on_behalf(current_user(), "move appointment", moved, **origin())
    flash(_("Moved %(name)s to %(when)s.")
          % {"name": appt.patient.name, "when": i18n.formatted(moved.start, "short")})
    redirect(_sheet_url(moved.start))
