"""The doctor's pages: the day's schedule, what is coming, a patient's record, and recording a
visit's treatment (or that the patient did not come)."""

from datetime import timedelta
from itertools import groupby

import bottle
from bottle import request

from clinic import appointments, audit, clock, listings, records
from clinic.errors import Conflict, Invalid
from clinic.i18n import _
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user, origin

routes = bottle.Bottle()

VISIT_TYPES = ("Consultation", "Follow-up", "Check-up", "Procedure", "Emergency")


@routes.get("/doctor")
@page("doctor")
def today():
    user = current_user()
    day = clock.parse_day(request.query.getunicode("date"))
    return render("doctor/today.html", day=day, today=clock.local().date(),
                  previous_day=day - timedelta(days=1), next_day=day + timedelta(days=1),
                  appointments=list(listings.on_day(user, day)),
                  can_mark_no_show=appointments.can_mark_no_show)


@routes.get("/doctor/upcoming")
@page("doctor")
def upcoming():
    rows = listings.upcoming(current_user())
    days = [(day, list(group))
            for day, group in groupby(rows, key=lambda a: clock.local(a.start).date())]
    return render("doctor/upcoming.html", days=days)


@routes.get("/doctor/patients/<patient_id:int>")
@page("doctor")
def patient_record(patient_id):
    user = current_user()
    patient = audit.opened(current_user(), "view history", patient_id, **origin())
    return render("doctor/patient.html", patient=patient,
                  visits=list(listings.of_patient(user, patient_id)),
                  history=list(listings.history(patient_id)))


def _appointment_page(appointment, status=200, **context):
    treatment = listings.treatment_of(appointment)
    context.setdefault("amend_form", None)
    return render("doctor/appointment.html", status=status, appointment=appointment,
                  treatment=treatment,
                  amendments=records.amendments_of(appointment.id) if treatment else [],
                  amendment_changes=records.changes,
                  record_form={name: getattr(treatment, name)
                               for name in appointments.TREATMENT_FIELDS} if treatment else {},
                  can_complete=appointments.can_complete(appointment),
                  can_mark_no_show=appointments.can_mark_no_show(appointment),
                  can_undo_no_show=appointments.can_undo_no_show(appointment),
                  visit_types=VISIT_TYPES, **context)


@routes.get("/doctor/appointments/<appointment_id:int>")
@page("doctor")
def appointment(appointment_id):
    return _appointment_page(appointments.appointment_for(current_user(), appointment_id))


@routes.post("/doctor/appointments/<appointment_id:int>/complete")
@page("doctor")
def complete(appointment_id):
    user = current_user()
    appt = appointments.appointment_for(user, appointment_id)
    data = form()
    try:
        appointments.complete(appt, user, data)
    except Invalid as exc:
        return _appointment_page(appt, status=400, form=data, errors=exc.fields)
    except Conflict as exc:
        # Keep what was typed: a note written during the visit must not be lost to a refusal.
        return _appointment_page(appt, status=409, form=data, errors={"__all__": exc.message})
    flash(_("Visit completed: the treatment of %(name)s is recorded.")
          % {"name": appt.patient.name})
    redirect(f"/doctor/appointments/{appt.id}")


@routes.post("/doctor/appointments/<appointment_id:int>/amend")
@page("doctor")
def amend(appointment_id):
    user = current_user()
    appt = appointments.appointment_for(user, appointment_id)
    data = form()
    try:
        records.amend(appt, user, {name: data.get(name) for name in appointments.TREATMENT_FIELDS},
                      data.get("reason"), **origin())
    except Invalid as exc:
        return _appointment_page(appt, status=400, amend_form=data,
                                 errors=exc.fields or {"__all__": exc.message})
    except Conflict as exc:
        return _appointment_page(appt, status=409, amend_form=data,
                                 errors={"__all__": exc.message})
    flash(_("The record is amended; the earlier text is kept below."))
    redirect(f"/doctor/appointments/{appt.id}")


def _mark(appointment_id, change, done):
    """Apply ``change(appointment, doctor)`` to one of the doctor's visits, then show the visit
    with ``done`` (a message naming ``%(name)s``, the patient); a refusal shows it with why."""
    user = current_user()
    appt = appointments.appointment_for(user, appointment_id)
    try:
        change(appt, user)
    except Conflict as exc:
        return _appointment_page(appt, status=409, errors={"__all__": exc.message})
    flash(done % {"name": appt.patient.name})
    redirect(f"/doctor/appointments/{appt.id}")


@routes.post("/doctor/appointments/<appointment_id:int>/no-show")
@page("doctor")
def no_show(appointment_id):
    return _mark(appointment_id, appointments.mark_no_show,
                 _("%(name)s is marked as a no-show: they did not come."))


@routes.post("/doctor/appointments/<appointment_id:int>/undo-no-show")
@page("doctor")
def undo_no_show(appointment_id):
    return _mark(appointment_id, appointments.undo_no_show,
                 _("The no-show mark is undone: %(name)s's visit is open again."))

