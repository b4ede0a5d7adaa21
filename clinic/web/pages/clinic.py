"""The admin's Clinic page: the clinic's name, address, phone, time zone and website, saved in
the database and in force at once (clinic/details.py). Values set in the environment are shown,
not editable: the environment wins."""

import bottle

from clinic import clock, details
from clinic.errors import Conflict, Invalid
from clinic.i18n import N_, _
from clinic.jobs import scheduler
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user

routes = bottle.Bottle()

LABELS = {"name": N_("Name"), "address": N_("Address"), "phone": N_("Phone"),
          "timezone": N_("Time zone"), "website": N_("Website")}  # translated where shown


def _clinic_page(status=200, values=None, errors=None):
    clinic = details.current()
    shown = clinic.as_json()
    shown["phone"] = clinic.phone_text
    return render("admin/clinic.html", status=status, clinic=clinic, labels=LABELS,
                  form={**shown, **(values or {})}, errors=errors or {},
                  zones=details.time_zones(), now=clock.now(),
                  jobs=[j for j in scheduler.listing() if not j["schedule"].startswith("every")])


@routes.get("/admin/clinic")
@page("admin")
def clinic_form():
    return _clinic_page()


@routes.post("/admin/clinic")
@page("admin")
def save_clinic():
    data = form()
    # A field set in the environment is shown read-only; one sent anyway is not ours to save.
    locked = details.current().from_environment
    changes = {name: data.get(name, "") for name in details.FIELDS if name not in locked}
    try:
        details.update(changes, current_user(), confirm=True)
    except (Invalid, Conflict) as exc:
        return _clinic_page(status=exc.status, values=changes, errors=exc.fields)
    flash(_("The clinic's details are saved and in force: pages, emails and schedules use them "
          "from now on."))
    redirect("/admin/clinic")
