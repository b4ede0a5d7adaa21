"""Signing in and out, and patient registration."""

import bottle
from bottle import request

from clinic import accounts, auth, i18n, people
from clinic.errors import Invalid
from clinic.i18n import _, ngettext
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form, safe_next
from clinic.web.pages import account_settings
from clinic.web.rendering import render
from clinic.web.sessions import current_user, home_for
from clinic.web.sessions import sign_in as start_web_session
from clinic.web.sessions import sign_out as end_web_session

routes = bottle.Bottle()


@routes.get("/")
@page()
def index():
    user = current_user()
    if user is not None:
        redirect(home_for(user))
    return render("index.html", specializations=people.specializations())


@routes.get("/login")
@page()
def login_form():
    if current_user() is not None:
        redirect(home_for(current_user()))
    return render("auth/login.html", form={"next": request.query.getunicode("next", "")})


def _throttle_message(exc):
    minutes = max(1, round(exc.retry_after.total_seconds() / 60))
    return ngettext("Too many failed sign-ins. Please wait %(num)d minute and try again.",
                    "Too many failed sign-ins. Please wait %(num)d minutes and try again.",
                    minutes) % {"num": minutes}


@routes.post("/login")
@page()
def login():
    data = form()
    try:
        user = auth.authenticate(data.get("email"), data.get("password"), request.remote_addr
                                 or "")
    except auth.Throttled as exc:
        return render("auth/login.html", status=429, form=data,
                      errors={"email": _throttle_message(exc)})
    if user is None:
        return render("auth/login.html", status=400, form=data,
                      errors={"password": _("That email and password do not match an account.")})
    if accounts.sign_in_step(user):  # a code, or setting up two-factor sign-in
        return account_settings.second_step(user, data)
    start_web_session(user)
    redirect(safe_next(data.get("next"), home_for(user)))


@routes.post("/logout")
@page()
def logout():
    end_web_session()
    flash(_("You are signed out."))
    redirect("/login")


@routes.get("/register")
@page()
def register_form():
    return render("auth/register.html")


@routes.post("/register")
@page()
def register():
    data = form()
    try:
        user = people.register_patient(data.get("email"), data.get("password"),
                                       data.get("name"), data.get("date_of_birth"),
                                       data.get("phone"),
                                       data.get("language") or i18n.language())
    except Invalid as exc:
        data.pop("password", None)
        return render("auth/register.html", status=400, form=data, errors=exc.fields)
    start_web_session(user)
    flash(_("Welcome! Your account is ready: book your first appointment below."))
    redirect("/patient/doctors")
