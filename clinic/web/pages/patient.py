"""The patient's pages: my appointments, finding a doctor, booking, cancelling, rescheduling and
the medical history."""

from datetime import timedelta

import bottle
from bottle import request

from clinic import (
    appointments,
    audit,
    clock,
    exports,
    i18n,
    listings,
    people,
    reviews,
    settings,
    slots,
    visit_types,
)
from clinic.errors import Conflict, Invalid, NotFound
from clinic.i18n import _
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user, origin

routes = bottle.Bottle()


def _when(instant):
    return i18n.formatted(instant)


def _cutoff():
    """The cancel cutoff in words, for "online changes close 2 hours before the start"."""
    return i18n.duration(settings.get().cancel_cutoff)


def _banner(exc):
    """A domain error as form errors: its message on top, its fields next to the inputs."""
    return {"__all__": exc.message, **exc.fields}


@routes.get("/patient")
@page("patient")
def my_appointments():
    user = current_user()
    now = clock.now()
    upcoming, past = listings.patient_lists(user.id, now=now)
    changeable = {a.id for a in upcoming if appointments.can_change(a, user, now=now)}
    return render("patient/home.html", upcoming=upcoming, changeable=changeable, past=past,
                  cutoff=_cutoff())


@routes.get("/patient/doctors")
@page("patient")
def find_doctor():
    specialization = request.query.getunicode("specialization", "").strip()
    doctors = list(people.doctors(specialization or None))
    return render("patient/doctors.html", specializations=people.specializations(),
                  doctors=doctors, ratings=reviews.ratings(d.user_id for d in doctors),
                  form={"specialization": specialization})


def _slot_picker(doctor, raw_day, appointment=None, form=None, errors=None, status=200):
    """The free times of ``doctor`` on one clinic-local day, as a form that books them, or that
    moves ``appointment`` there. A bad day is a form error on the same page."""
    now = clock.now()
    today = clock.local(now).date()
    last_day = clock.local(now + settings.get().booking_horizon).date()
    errors = dict(errors or {})
    default = clock.local(appointment.start).date() if appointment else today
    try:
        day = clock.parse_day(raw_day, default=default)
    except Invalid as exc:
        errors.update(exc.fields)
        day, status = None, 400 if status == 200 else status
    kinds, kind, minutes = _visit_type(doctor, appointment, form, errors)
    # One query for the doctor over the whole booking horizon gives the day's times, the
    # two-week strip of days with free times and the next free time.
    by_day = slots.free_by_day(doctor, today, last_day, now=now,
                               exclude=appointment.id if appointment else None,
                               minutes=minutes, patient_id=current_user().id)
    times = [clock.local(s) for s in by_day.get(day, [])]
    strip, earlier, later = slots.strip(by_day, day, today, last_day)
    if appointment:
        picker_url = f"/patient/appointments/{appointment.id}/reschedule"
        post_url = picker_url
    else:
        picker_url = f"/patient/doctors/{doctor.user_id}"
        post_url = "/patient/appointments"
    return render("patient/slots.html", status=status, doctor=doctor, appointment=appointment,
                  day=day, today=today, last_day=last_day, one_day=timedelta(days=1),
                  slots=times, picker_url=picker_url, post_url=post_url, strip=strip,
                  earlier=earlier, later=later, next_free=slots.next_free(by_day),
                  visit_types=kinds, visit_type=kind,
                  form={"date": raw_day or "", **(form or {})}, errors=errors)


def _visit_type(doctor, appointment, form, errors):
    """The visit types the doctor offers, the one chosen (None: one slot) and the visit's
    length for the free times. A move keeps the appointment's own length."""
    if appointment:
        return [], None, slots.moved_minutes(appointment, doctor)
    raw = (form or {}).get("visit_type_id") or request.query.getunicode("visit_type", "")
    try:
        kind = visit_types.offered(doctor.user_id, raw or None)
    except Invalid as exc:
        errors.update(exc.fields)
        kind = None
    return visit_types.for_doctor(doctor.user_id), kind, kind.minutes if kind else None


@routes.get("/patient/doctors/<doctor_id:int>")
@page("patient")
def doctor_slots(doctor_id):
    doctor = slots.bookable_doctor(doctor_id)
    return _slot_picker(doctor, request.query.getunicode("date", ""))


@routes.post("/patient/appointments")
@page("patient")
def book():
    data = form()
    try:
        start = appointments.parse_start(data.get("start"))
        appointment = appointments.book(current_user().id, data.get("doctor_id"), start,
                                        data.get("reason"),
                                        visit_type_id=data.get("visit_type_id") or None)
    except (Invalid, Conflict) as exc:
        try:
            doctor = slots.bookable_doctor(data.get("doctor_id"))
        except NotFound:
            raise exc from None  # no picker to go back to: the error page says why
        return _slot_picker(doctor, data.get("date", ""), form=data, errors=_banner(exc),
                            status=exc.status)
    flash(_("Booked: %(when)s. See you then!") % {"when": _when(appointment.start)})
    redirect(f"/patient/appointments/{appointment.id}")


def _appointment_page(user, appointment_id, errors=None, status=200):
    appointment = appointments.appointment_for(user, appointment_id)
    treatment = (listings.treatment_of(appointment)
                 if appointment.status == "completed" else None)
    return render("patient/appointment.html", status=status, a=appointment,
                  changeable=appointments.can_change(appointment, user), treatment=treatment,
                  cutoff=_cutoff(), errors=errors or {})


@routes.get("/patient/appointments/<appointment_id:int>")
@page("patient")
def appointment_details(appointment_id):
    return _appointment_page(current_user(), appointment_id)


def _on_appointment(appointment_id, change, answer):
    """Run ``change(appointment, user)`` on the patient's appointment and return
    ``answer(appointment)``; if the booking rules refuse, the appointment page says why."""
    user = current_user()
    appointment = appointments.appointment_for(user, appointment_id)
    try:
        change(appointment, user)
    except Conflict as exc:
        return _appointment_page(user, appointment_id, errors=_banner(exc), status=exc.status)
    return answer(appointment)


@routes.get("/patient/appointments/<appointment_id:int>/cancel")
@page("patient")
def cancel_confirm(appointment_id):
    return _on_appointment(appointment_id, appointments.check_changeable,
                           lambda appointment: render("patient/cancel.html", a=appointment))


@routes.post("/patient/appointments/<appointment_id:int>/cancel")
@page("patient")
def cancel(appointment_id):
    def cancelled(appointment):
        flash(_("Your appointment on %(when)s with %(doctor)s is cancelled.")
              % {"when": _when(appointment.start), "doctor": appointment.doctor.name})
        redirect("/patient")

    return _on_appointment(appointment_id, appointments.cancel, cancelled)


@routes.get("/patient/appointments/<appointment_id:int>/reschedule")
@page("patient")
def reschedule_form(appointment_id):
    return _on_appointment(appointment_id, appointments.check_changeable,
                           lambda appointment: _slot_picker(
                               appointment.doctor_profile, request.query.getunicode("date", ""),
                               appointment=appointment))


@routes.post("/patient/appointments/<appointment_id:int>/reschedule")
@page("patient")
def reschedule(appointment_id):
    user = current_user()
    appointment = appointments.appointment_for(user, appointment_id)
    data = form()
    try:
        start = appointments.parse_start(data.get("start"))
        moved = appointments.reschedule(appointment, start, user)
    except (Invalid, Conflict) as exc:
        appointment = appointments.appointment_for(user, appointment_id)  # as it is now
        if not appointments.can_change(appointment, user):
            # Past the cutoff (or cancelled meanwhile): no point offering other times.
            return _appointment_page(user, appointment_id, errors=_banner(exc),
                                     status=exc.status)
        return _slot_picker(appointment.doctor_profile, data.get("date", ""),
                            appointment=appointment, form=data, errors=_banner(exc),
                            status=exc.status)
    flash(_("Your appointment is moved to %(when)s.") % {"when": _when(moved.start)})
    redirect(f"/patient/appointments/{moved.id}")


@routes.get("/patient/history")
@page("patient")
def medical_history():
    audit.allowed(current_user(), "view history", current_user().id, **origin())
    return render("patient/history.html", visits=listings.history(current_user().id))


# -- export --------------------------------------------------------------------------------------
# The full history as a CSV file, made in the background (clinic/exports.py). The export's pages
# answer 404 to anyone but the patient who made it, whatever their role.


@routes.post("/patient/history/export")
@page("patient")
def export_history():
    audit.allowed(current_user(), "export history", current_user().id, **origin())
    record, started = exports.start(current_user())
    # Only the page says how far it is: a flash saying "preparing" would stay beside "Ready".
    if not started:
        flash(_("You asked for an export a moment ago: this is it."))
    redirect(f"/patient/exports/{record.task_id}")


@routes.get("/patient/exports/<task_id>")
@page("patient", "doctor", "admin")
def export_status(task_id):
    export, record = exports.export_for(current_user(), task_id)
    return render("patient/export.html", export=export, record=record,
                  available=exports.available(export),
                  download_url=exports.download_path(record.task_id))


@routes.get("/patient/exports/<task_id>/download")
@page("patient", "doctor", "admin")
def export_download(task_id):
    path, name = exports.download(current_user(), task_id)
    audit.allowed(current_user(), "download export", current_user().id, **origin())
    return bottle.static_file(path.name, root=str(path.parent), mimetype="text/csv",
                              charset="utf-8", download=name, etag=False)
