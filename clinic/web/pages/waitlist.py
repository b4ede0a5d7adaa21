"""The waitlist's pages: a patient's entries (join, leave, book the time held for them), the
desk's and admins' list of everyone waiting, and the page behind the link in an offer email,
which needs no sign-in: its signed token is the key (clinic.waitlist.offer_for_link)."""

import bottle

from clinic import clock, i18n, people, waitlist
from clinic.errors import Conflict, Invalid, NotFound
from clinic.i18n import _
from clinic.models import User, WaitlistEntry, WaitlistOffer
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user

routes = bottle.Bottle()


def _when(instant):
    return i18n.formatted(instant)


def _banner(exc):
    return {"__all__": exc.message, **exc.fields}


def _with_offers(entries):
    return [(entry, waitlist.live_offer(entry.id)) for entry in entries]


def _patient_page(form_data=None, errors=None, status=200):
    user = current_user()
    entries = (waitlist.visible_to(user).where(WaitlistEntry.status == "waiting")
               .order_by(WaitlistEntry.created_at, WaitlistEntry.id))
    today = clock.local().date()
    return render("patient/waitlist.html", status=status, entries=_with_offers(entries),
                  doctors=list(people.doctors()), form=form_data or {"from": today.isoformat(),
                                                                     "to": today.isoformat()},
                  errors=errors or {})


@routes.get("/patient/waitlist")
@page("patient")
def my_waitlist():
    return _patient_page()


@routes.post("/patient/waitlist")
@page("patient")
def join():
    data = form()
    try:
        entry = waitlist.join(current_user().id, data.get("doctor_id"), data.get("from"),
                              data.get("to"))
    except (Invalid, NotFound, Conflict) as exc:
        return _patient_page(data, _banner(exc), exc.status)
    flash(_("You are on the waitlist of %(doctor)s: we email you as soon as a time comes free.")
          % {"doctor": entry.doctor.name})
    redirect("/patient/waitlist")


@routes.post("/patient/waitlist/<entry_id:int>/leave")
@page("patient")
def leave(entry_id):
    entry = waitlist.entry_for(current_user(), entry_id)
    try:
        waitlist.leave(entry)
    except Conflict as exc:
        return _patient_page(errors=_banner(exc), status=exc.status)
    flash(_("You have left the waitlist."))
    redirect("/patient/waitlist")


@routes.post("/patient/waitlist/<entry_id:int>/claim")
@page("patient")
def claim(entry_id):
    entry = waitlist.entry_for(current_user(), entry_id)
    try:
        appointment = waitlist.claim(entry)
    except (Invalid, Conflict) as exc:
        return _patient_page(errors=_banner(exc), status=exc.status)
    flash(_("Booked: %(when)s. See you then!") % {"when": _when(appointment.start)})
    redirect(f"/patient/appointments/{appointment.id}")


# -- the desk's and admins' list -----------------------------------------------------------------


def _staff_page(form_data=None, errors=None, status=200):
    entries = (waitlist.visible_to(current_user())
               .where(WaitlistEntry.status == "waiting")
               .order_by(WaitlistEntry.doctor, WaitlistEntry.created_at, WaitlistEntry.id))
    names = {u.id: u for u in User.select(User.id, User.name, User.email).where(
        User.id.in_([e.patient_id for e in entries]))}
    today = clock.local().date()
    return render("admin/waitlist.html", status=status, entries=_with_offers(entries),
                  patients=names, doctors=list(people.doctors()), offers=waitlist.offers(50),
                  form=form_data or {"from": today.isoformat(), "to": today.isoformat()},
                  errors=errors or {})


@routes.get("/admin/waitlist")
@page("desk", "admin")
def staff_waitlist():
    return _staff_page()


@routes.post("/admin/waitlist")
@page("desk", "admin")
def staff_join():
    data = form()
    try:
        raw = (data.get("patient_id") or "").strip()
        if not (raw.isdigit() and len(raw) <= 18):
            raise Invalid(_("Enter the patient's number."), {"patient_id": _("Enter the patient's "
                                                                        "number.")})
        waitlist.join(int(raw), data.get("doctor_id"), data.get("from"), data.get("to"))
    except (Invalid, NotFound, Conflict) as exc:
        return _staff_page(data, _banner(exc), exc.status)
    flash(_("The patient is on the waitlist."))
    redirect("/admin/waitlist")


@routes.post("/admin/waitlist/<entry_id:int>/leave")
@page("desk", "admin")
def staff_leave(entry_id):
    entry = waitlist.entry_for(current_user(), entry_id)
    try:
        waitlist.leave(entry)
    except Conflict as exc:
        return _staff_page(errors=_banner(exc), status=exc.status)
    flash(_("The entry is off the waitlist."))
    redirect("/admin/waitlist")


# -- the emailed link -----------------------------------------------------------------------------


def _offer_page(token, offer, errors=None, status=200):
    doctor = User.get_by_id(offer.doctor_id)
    return render("link/waitlist_offer.html", status=status, offer=offer, doctor=doctor,
                  token=token, open=offer.status == "held" and offer.expires_at > clock.now(),
                  errors=errors or {})


@routes.get("/waitlist/offer/<token>")
@page()
def offer(token):
    return _offer_page(token, waitlist.offer_for_link(token))


@routes.post("/waitlist/offer/<token>")
@page()
def offer_claim(token):
    offer = waitlist.offer_for_link(token)
    try:
        appointment = waitlist.claim_offer(offer)
    except (Invalid, Conflict) as exc:
        return _offer_page(token, WaitlistOffer.get_by_id(offer.id), _banner(exc), exc.status)
    from clinic.mail import notices

    flash(_("Booked: %(when)s. We have emailed you the confirmation.")
          % {"when": _when(appointment.start)})
    redirect(notices.link_path(appointment))
