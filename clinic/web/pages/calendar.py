"""The calendar's pages: the admin's time off and closures (with the doctors' requests and the
visits inside each), visit types, and a doctor's own time off. All plain forms: no JavaScript."""

import bottle

from clinic import cancellations, clock, people, time_off, visit_types
from clinic.errors import Conflict, Invalid
from clinic.i18n import _, ngettext
from clinic.models import Patient, TimeOff
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render, templates
from clinic.web.sessions import current_user

routes = bottle.Bottle()


def pending_requests():
    """How many doctors' requests for time off wait for an admin (the admin's banner)."""
    return TimeOff.select(TimeOff.id).where(TimeOff.status == "requested").count()


templates.globals["time_off_requests"] = pending_requests


def _range(data):
    """The form's start and end: a date, and a time or none (the whole day)."""
    def joined(side):
        day, at = data.get(f"{side}_date", "").strip(), data.get(f"{side}_time", "").strip()
        return f"{day}T{at}" if day and at else day
    return joined("start"), joined("end")


def _visits(entry):
    """The visits still booked inside ``entry``, each with the patient's phone for the desk."""
    rows = list(time_off.affected(entry))
    phones = dict(Patient.select(Patient.user, Patient.phone)
                  .where(Patient.user.in_([a.patient_id for a in rows])).tuples()) if rows else {}
    return [(a, phones.get(a.patient_id, "")) for a in rows]


# -- the admin's time off -------------------------------------------------------------------------


def _time_off_page(status=200, **context):
    now = clock.now()
    entries = list(time_off.listing(status="approved", upcoming_from=now))
    batches = {b.id: b for b in cancellations.batches([e.cancellation_id for e in entries])}
    return render("admin/time_off.html", status=status,
                  requests=list(time_off.listing(status="requested")),
                  entries=[(e, _visits(e), batches.get(e.cancellation_id)) for e in entries],
                  doctors=list(people.doctors(active_only=False)), **context)


@routes.get("/admin/time-off")
@page("admin")
def admin_time_off():
    return _time_off_page()


@routes.post("/admin/time-off")
@page("admin")
def add_time_off():
    data = form()
    start, end = _range(data)
    try:
        entry = time_off.add(data.get("doctor_id") or None, start, end, data.get("reason"),
                             user=current_user(), cancel_affected=bool(data.get("cancel")))
    except (Invalid, Conflict) as exc:
        errors = dict(exc.fields) or {"__all__": exc.message}
        if isinstance(exc, Conflict):
            errors["__all__"] = exc.message
        return _time_off_page(status=exc.status, form=data, errors=errors)
    found = len(entry.affected_ids)
    if entry.cancellation_id:
        flash(ngettext("Time off entered: %(num)d visit inside is being cancelled and the "
                       "patient told.",
                       "Time off entered: %(num)d visits inside are being cancelled and the "
                       "patients told.", found) % {"num": found})
    elif found:
        flash(ngettext("Time off entered. %(num)d visit inside is still booked: see the list "
                       "below.",
                       "Time off entered. %(num)d visits inside are still booked: see the list "
                       "below.", found) % {"num": found})
    else:
        flash(_("Time off entered: no visits were booked inside."))
    redirect("/admin/time-off")


@routes.post("/admin/time-off/<time_off_id:int>/delete")
@page("admin")
def remove_time_off(time_off_id):
    time_off.remove(time_off_id)
    flash(_("Time off removed: its times can be booked again."))
    redirect("/admin/time-off")


@routes.post("/admin/time-off/<time_off_id:int>/<decision:re:approve|decline>")
@page("admin")
def decide_time_off(time_off_id, decision):
    data = form()
    entry = time_off.decide(time_off_id, decision == "approve", user=current_user(),
                            cancel_affected=bool(data.get("cancel")))
    flash(_("Request approved.") if entry.status == "approved" else _("Request declined."))
    redirect("/admin/time-off")


@routes.post("/admin/time-off/<time_off_id:int>/cancel-visits")
@page("admin")
def cancel_visits(time_off_id):
    time_off.cancel_visits(time_off.get(time_off_id), user=current_user())
    flash(_("The visits inside are being cancelled and each patient is emailed why."))
    redirect("/admin/time-off")


@routes.post("/admin/cancellations/<batch_id:int>/resume")
@page("admin")
def resume_cancellation(batch_id):
    cancellations.resume(batch_id, user=current_user())
    flash(_("Running it again: patients told already are not emailed twice."))
    redirect(form().get("next") if form().get("next", "").startswith("/admin/")
             else "/admin/time-off")


# -- visit types ----------------------------------------------------------------------------------


def _visit_types_page(status=200, **context):
    doctors = list(people.doctors(active_only=False))
    names = {d.user_id: d.user.name for d in doctors}
    rows = [(v, [names.get(i, "?") for i in visit_types.doctor_ids(v)])
            for v in visit_types.listing()]
    return render("admin/visit_types.html", status=status, rows=rows, doctors=doctors,
                  **context)


@routes.get("/admin/visit-types")
@page("admin")
def admin_visit_types():
    return _visit_types_page()


@routes.post("/admin/visit-types")
@page("admin")
def add_visit_type():
    data = form()
    chosen = bottle.request.forms.getall("doctor_ids")
    try:
        visit_type = visit_types.create(data.get("name"), data.get("minutes"), chosen)
    except Invalid as exc:
        return _visit_types_page(status=400, form=data, chosen=chosen, errors=exc.fields)
    flash(_("%(name)s (%(minutes)s minutes) can now be booked.")
          % {"name": visit_type.name, "minutes": visit_type.minutes})
    redirect("/admin/visit-types")


@routes.post("/admin/visit-types/<visit_type_id:int>/delete")
@page("admin")
def remove_visit_type(visit_type_id):
    visit_types.delete(visit_type_id)
    flash(_("Visit type removed. Visits booked with it keep their times."))
    redirect("/admin/visit-types")


# -- a doctor's own time off ----------------------------------------------------------------------


def _doctor_page(status=200, **context):
    user = current_user()
    return render("doctor/time_off.html", status=status,
                  entries=list(time_off.listing(doctor_id=user.id, upcoming_from=clock.now())),
                  closures=list(time_off.listing(status="approved", upcoming_from=clock.now())
                                .where(TimeOff.doctor.is_null())),
                  **context)


@routes.get("/doctor/time-off")
@page("doctor")
def doctor_time_off():
    return _doctor_page()


@routes.post("/doctor/time-off")
@page("doctor")
def request_time_off():
    data = form()
    start, end = _range(data)
    try:
        time_off.request(current_user(), start, end, data.get("reason"))
    except (Invalid, Conflict) as exc:
        errors = dict(exc.fields)
        errors["__all__"] = exc.message
        return _doctor_page(status=exc.status, form=data, errors=errors)
    flash(_("Your request is sent: the clinic's admins see it now and will approve or decline it."))
    redirect("/doctor/time-off")
