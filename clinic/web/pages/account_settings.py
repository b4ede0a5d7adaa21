"""The account pages everyone looks after themselves (clinic/accounts.py): forgot and reset
password, the sign-in's code step, the profile, a changed password, two-factor sign-in with its
QR code and recovery codes, and the admin's list to reset it. Plain forms, no JavaScript."""

from datetime import timedelta

import bottle
from bottle import request, response

from clinic import accounts, auth, clock, signing
from clinic.errors import Conflict, Invalid
from clinic.i18n import _, ngettext
from clinic.models import User
from clinic.web.cookies import flash, set_cookie
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form, safe_next
from clinic.web.rendering import render
from clinic.web.sessions import SESSION_COOKIE, client_ip, current_user, home_for, origin, sign_in

routes = bottle.Bottle()

ANYONE_SIGNED_IN = ("patient", "doctor", "admin", "desk")
ENROL_COOKIE = "clinic_enrol"
TICKET = "sign-in-code"  # the signed purpose of the code step's hidden field
TICKET_LIFETIME = timedelta(minutes=5)


def _wait(exc):
    minutes = max(1, round(exc.retry_after.total_seconds() / 60))
    return ngettext("Too many tries. Please wait %(num)d minute.",
                    "Too many tries. Please wait %(num)d minutes.", minutes) % {"num": minutes}


# -- forgot and reset -----------------------------------------------------------------------------


@routes.get("/forgot")
@page()
def forgot_form():
    return render("auth/forgot.html")


@routes.post("/forgot")
@page()
def forgot():
    data = form()
    try:
        accounts.request_reset(data.get("email"), client_ip())
    except auth.Throttled as exc:
        return render("auth/forgot.html", status=429, form=data, errors={"email": _wait(exc)})
    # The same page whether or not the address is an account's.
    return render("auth/forgot.html", sent=True, form=data)


@routes.get("/reset/<token>")
@page()
def reset_form(token):
    try:
        accounts.check_reset_link(token)
    except Invalid as exc:
        return render("auth/reset.html", status=400, bad_link=exc.message)
    return render("auth/reset.html", token=token)


@routes.post("/reset/<token>")
@page()
def reset(token):
    data = form()
    if data.get("password") != data.get("password_again"):
        return render("auth/reset.html", status=400, token=token,
                      errors={"password_again": _("The two passwords differ.")})
    try:
        accounts.reset_password(token, data.get("password"), **origin())
    except Invalid as exc:
        if "token" in exc.fields:
            return render("auth/reset.html", status=400, bad_link=exc.message)
        return render("auth/reset.html", status=400, token=token, errors=exc.fields)
    flash(_("Your password is changed. Sign in with the new one."))
    redirect("/login")


# -- the sign-in's second step ---------------------------------------------------------------------


def second_step(user, data):
    """POST /login once the password was right and accounts.sign_in_step(user) says more is
    needed: the code form, or (the role must have two-factor sign-in) the enrolment."""
    if accounts.sign_in_step(user) == "enrol":
        token = accounts.start_enrolment_session(user, client_ip())
        set_cookie(ENROL_COOKIE, token, max_age=int(accounts.ENROL_LIFETIME.total_seconds()))
        flash(_("Your account must use two-factor sign-in: set it up to go on."))
        redirect("/account/2fa")
    ticket = signing.sign(TICKET, {"user": user.id}, expires_at=clock.now() + TICKET_LIFETIME)
    return render("auth/login_code.html", form={"ticket": ticket, "next": data.get("next", "")})


@routes.post("/login/code")
@page()
def login_code():
    data = form()
    try:
        user_id = signing.unsign(TICKET, data.get("ticket", ""))["user"]
    except signing.BadSignature:
        flash(_("That took too long: sign in again."))
        redirect("/login")
    user = User.get_or_none(User.id == user_id, User.active)
    if user is None:
        redirect("/login")
    try:
        accounts.check_code(user, data.get("code"), client_ip())
    except auth.Throttled as exc:
        return render("auth/login_code.html", status=429, form=data,
                      errors={"code": _wait(exc)})
    except accounts.CodeRequired as exc:
        return render("auth/login_code.html", status=400, form=data,
                      errors={"code": exc.message})
    sign_in(user)
    redirect(safe_next(data.get("next"), home_for(user)))


# -- the profile and the password ------------------------------------------------------------------


@routes.get("/account")
@page(*ANYONE_SIGNED_IN)
def profile_form():
    me = accounts.profile(current_user())
    return render("account/profile.html", me=me, form=me)


@routes.post("/account")
@page(*ANYONE_SIGNED_IN)
def profile():
    data = form()
    fields = ["name", "email"] + (["phone", "date_of_birth"]
                                  if current_user().role == "patient" else [])
    if data.get("language"):  # offered only when the clinic has more than one language
        fields.append("language")
    try:
        me = accounts.update_profile(current_user(), {k: data.get(k, "") for k in fields})
    except Invalid as exc:
        return render("account/profile.html", status=400, me=accounts.profile(current_user()),
                      form=data, errors=exc.fields)
    flash(_("Saved. We sent a link to %(email)s: your email changes once you follow it.")
          % {"email": me["pending_email"]} if me["pending_email"] else _("Saved."))
    redirect("/account")


@routes.get("/account/email/<token>")
@page()
def email_form(token):
    try:
        row = accounts.check_email_link(token)
    except Invalid as exc:
        return render("account/email.html", status=400, bad_link=exc.message)
    return render("account/email.html", token=token, new_email=row.new_email)


@routes.post("/account/email/<token>")
@page()
def email_confirm(token):
    try:
        user = accounts.confirm_email(token)
    except Invalid as exc:
        return render("account/email.html", status=400, bad_link=exc.message)
    flash(_("Your email is now %(email)s.") % {"email": user.email})
    redirect("/account" if current_user() else "/login")


@routes.get("/account/password")
@page(*ANYONE_SIGNED_IN)
def password_form():
    return render("account/password.html")


@routes.post("/account/password")
@page(*ANYONE_SIGNED_IN)
def password():
    data = form()
    user = current_user()
    errors = {}
    if data.get("new_password") != data.get("new_password_again"):
        errors = {"new_password_again": _("The two new passwords differ.")}
    else:
        try:
            accounts.change_password(user, data.get("current_password"),
                                     data.get("new_password"), client_ip(),
                                     request.get_cookie(SESSION_COOKIE))
        except Invalid as exc:
            errors = exc.fields
        except auth.Throttled as exc:
            return render("account/password.html", status=429,
                          errors={"current_password": _wait(exc)})
    if errors:
        return render("account/password.html", status=400, errors=errors)
    flash(_("Your password is changed. Other browsers and apps signed in as you are signed out."))
    redirect("/account")


# -- two-factor sign-in ----------------------------------------------------------------------------


def _enrolling():
    """The signed-in user, or one whose sign-in CLINIC_REQUIRE_2FA stopped until enrolment."""
    user = current_user() or accounts.enrolling_user(request.get_cookie(ENROL_COOKIE))
    if user is None:
        redirect("/login?next=/account/2fa")
    return user


@routes.get("/account/2fa")
@page()
def totp_page():
    user = _enrolling()
    enabled = accounts.totp_enabled(user)
    required = (user.role in accounts.roles_required() if enabled
                else accounts.sign_in_step(user) == "enrol")
    return render("account/2fa.html", me=user, enabled=enabled,
                  codes_left=accounts.recovery_codes_left(user), required=required)


@routes.post("/account/2fa/codes")
@page(*ANYONE_SIGNED_IN)
def totp_change():
    """New recovery codes, or two-factor sign-in off: both need a code from the app."""
    user = current_user()
    data = form()
    turn_off = data.get("change") == "off"
    try:
        if turn_off:
            accounts.turn_off_totp(user, data.get("code"), client_ip())
        else:
            codes = accounts.new_recovery_codes(user, data.get("code"), client_ip())
    except (Invalid, Conflict, auth.Throttled) as exc:
        message = _wait(exc) if isinstance(exc, auth.Throttled) else exc.message
        status = 429 if isinstance(exc, auth.Throttled) else exc.status
        return render("account/2fa.html", status=status, me=user, enabled=True,
                      codes_left=accounts.recovery_codes_left(user),
                      required=user.role in accounts.roles_required(), form={},
                      errors={"code": message})
    if turn_off:
        flash(_("Two-factor sign-in is off. Signing in asks for the password only."))
        redirect("/account/2fa")
    return render("account/2fa_codes.html", codes=codes, home="/account/2fa")


@routes.post("/account/2fa/start")
@page()
def totp_start():
    user = _enrolling()
    try:
        enrolment = accounts.start_enrolment(user)
    except Conflict as exc:
        flash(exc.message)
        redirect("/account/2fa")
    return render("account/2fa_setup.html", enrolment=enrolment)


@routes.post("/account/2fa/confirm")
@page()
def totp_confirm():
    user = _enrolling()
    enrolment = accounts.pending_enrolment(user)
    if enrolment is None:
        redirect("/account/2fa")
    try:
        codes = accounts.confirm_enrolment(user, form().get("code"), client_ip())
    except Invalid as exc:
        return render("account/2fa_setup.html", status=400, enrolment=enrolment,
                      errors=exc.fields)
    except auth.Throttled as exc:
        return render("account/2fa_setup.html", status=429, enrolment=enrolment,
                      errors={"code": _wait(exc)})
    if current_user() is None:  # signed in only to enrol: now for real
        auth.end_session(request.get_cookie(ENROL_COOKIE))
        response.delete_cookie(ENROL_COOKIE, path="/")
        sign_in(user)
    return render("account/2fa_codes.html", codes=codes, home=home_for(user))


@routes.get("/admin/2fa")
@page("admin")
def totp_list():
    return render("admin/2fa.html", users=list(accounts.with_totp()))


@routes.post("/admin/users/<user_id:int>/2fa-reset")
@page("admin")
def totp_reset(user_id):
    target = accounts.reset_totp(current_user(), user_id, **origin())
    flash(_("Two-factor sign-in of %(name)s is off; they can set it up again.")
          % {"name": target.name})
    redirect("/admin/2fa")
