"""The pages behind the link in a confirmation or reminder email: the patient sees the
appointment, confirms they will come, cancels or moves it, without signing in.

The signed token in the address is the only key (clinic.mail.notices.appointment_for_link): it names
one appointment and expires at its start. Cancelling and moving follow the same rules as the
patient's own pages, because they call the same domain functions as that patient.
"""

from datetime import timedelta

import bottle
from bottle import request

from clinic import appointments, clock, details, i18n, settings, slots
from clinic.errors import Conflict, Invalid
from clinic.i18n import _
from clinic.mail import notices
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render

routes = bottle.Bottle()



def _when(instant):
    return i18n.formatted(instant)


def _appointment(token):
    """The link's appointment; the page is in its patient's language, if they chose one (the
    link came in their email, and whoever opens it need not be signed in)."""
    appointment = notices.appointment_for_link(token)
    if i18n.chosen(appointment.patient.language):
        i18n.use(appointment.patient.language)
    return appointment


def _visit_page(token, appointment, errors=None, status=200):
    now = clock.now()
    return render("link/appointment.html", status=status, a=appointment, token=token,
                  changeable=appointments.can_change(appointment, appointment.patient, now=now),
                  confirmable=appointment.status == "booked" and appointment.start > now,
                  cutoff=notices.duration_words(settings.get().cancel_cutoff),
                  address=details.current().address, errors=errors or {})


def _banner(exc):
    return {"__all__": exc.message, **exc.fields}


@routes.get("/visit/<token>")
@page()
def visit(token):
    return _visit_page(token, _appointment(token))


def _on_link(token, change, answer):
    """Run ``change(appointment)`` on the link's appointment and return ``answer(appointment)``;
    if the booking rules refuse, the visit page says why."""
    appointment = _appointment(token)
    try:
        change(appointment)
    except Conflict as exc:
        return _visit_page(token, appointment, errors=_banner(exc), status=exc.status)
    return answer(appointment)


def _back_to_visit(token, message):
    flash(message)
    redirect(f"/visit/{token}")


@routes.post("/visit/<token>/confirm")
@page()
def confirm(token):
    return _on_link(token, appointments.confirm,
                    lambda a: _back_to_visit(token, _("Thank you: we expect you then.")))


@routes.get("/visit/<token>/cancel")
@page()
def cancel_confirm(token):
    return _on_link(token, lambda a: appointments.check_changeable(a, a.patient),
                    lambda a: render("link/cancel.html", a=a, token=token))


@routes.post("/visit/<token>/cancel")
@page()
def cancel(token):
    return _on_link(token, lambda a: appointments.cancel(a, a.patient),
                    lambda a: _back_to_visit(
                        token, _("Your appointment on %(when)s is cancelled.")
                        % {"when": _when(a.start)}))


def _slot_picker(token, appointment, raw_day, form=None, errors=None, status=200):
    """The doctor's free times on one clinic-local day, each a button that moves the
    appointment there."""
    now = clock.now()
    today = clock.local(now).date()
    errors = dict(errors or {})
    try:
        day = clock.parse_day(raw_day, default=clock.local(appointment.start).date())
    except Invalid as exc:
        errors.update(exc.fields)
        day, status = None, 400 if status == 200 else status
    last_day = clock.local(now + settings.get().booking_horizon).date()
    # One query over the booking horizon: the day's times, the strip and the next free time.
    # A move keeps the visit's own length, and may take a slot held for its patient.
    doctor = appointment.doctor_profile
    by_day = slots.free_by_day(doctor, today, last_day, now=now, exclude=appointment.id,
                               minutes=slots.moved_minutes(appointment, doctor),
                               patient_id=appointment.patient_id)
    strip, earlier, later = slots.strip(by_day, day, today, last_day)
    return render("link/reschedule.html", status=status, a=appointment, token=token, day=day,
                  today=today, last_day=last_day, one_day=timedelta(days=1),
                  slots=[clock.local(s) for s in by_day.get(day, [])], strip=strip,
                  earlier=earlier, later=later, next_free=slots.next_free(by_day),
                  form={"date": raw_day or "", **(form or {})}, errors=errors)


@routes.get("/visit/<token>/reschedule")
@page()
def reschedule_form(token):
    appointment = _appointment(token)
    try:
        appointments.check_changeable(appointment, appointment.patient)
    except Conflict as exc:
        return _visit_page(token, appointment, errors=_banner(exc), status=exc.status)
    return _slot_picker(token, appointment, request.query.getunicode("date", ""))


@routes.post("/visit/<token>/reschedule")
@page()
def reschedule(token):
    appointment = _appointment(token)
    data = form()
    try:
        start = appointments.parse_start(data.get("start"))
        moved = appointments.reschedule(appointment, start, appointment.patient)
    except (Invalid, Conflict) as exc:
        appointment = _appointment(token)  # as it is now
        if not appointments.can_change(appointment, appointment.patient):
            return _visit_page(token, appointment, errors=_banner(exc), status=exc.status)
        return _slot_picker(token, appointment, data.get("date", ""), form=data,
                            errors=_banner(exc), status=exc.status)
    flash(_("Your appointment is moved to %(when)s. We have emailed you the new time.")
          % {"when": _when(moved.start)})
    redirect(notices.link_path(moved))  # a link valid until the new start
