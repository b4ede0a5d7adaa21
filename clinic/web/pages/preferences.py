"""Which emails a patient wants: their preferences page, and the one-click unsubscribe link at
the foot of every optional email (clinic/preferences.py).

``/unsubscribe/<token>`` needs no sign-in: the signed token names the patient and the kind. A GET
only shows a page with a button (mail scanners follow links; a GET must change nothing). The POST
needs no CSRF token: it is what a mail client sends for List-Unsubscribe-Post (RFC 8058), with no
cookies, and the token in the address is the only key it needs.
"""

import bottle

from clinic import accounts, i18n, people
from clinic.errors import ClinicError, Invalid
from clinic.i18n import _
from clinic.mail import preferences
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user

routes = bottle.Bottle()


def _page(status=200, errors=None, form=None):
    user = current_user()
    return render("patient/preferences.html", status=status,
                  choices=preferences.choices(user), words=preferences.WORDS,
                  profile=accounts.profile(user), channel_words=people.CHANNEL_WORDS,
                  errors=errors or {}, form=form or {})


@routes.get("/patient/preferences")
@page("patient")
def preferences_page():
    return _page()


@routes.post("/patient/preferences/channel")
@page("patient")
def save_channel():
    data = form()
    try:
        accounts.update_profile(current_user(), {"channel": data.get("channel") or ""})
    except Invalid as exc:
        return _page(status=400, errors=exc.fields, form=data)
    flash(_("Your choice of how we reach you is saved."))
    redirect("/patient/preferences")


@routes.post("/patient/preferences")
@page("patient")
def save_preferences():
    data = form()
    user = current_user()
    if data.get("language") and data["language"] != user.language:
        try:
            accounts.update_profile(user, {"language": data["language"]})
        except Invalid as exc:
            return _page(status=400, errors=exc.fields, form=data)
        i18n.use(data["language"])  # the saved message below is in the new language
    preferences.save(user, {choice: bool(data.get(choice)) for choice in preferences.KINDS})
    flash(_("Your email choices are saved."))
    redirect("/patient/preferences")



@routes.get("/unsubscribe/<token>")
@page()
def unsubscribe_confirm(token):
    user, choice = preferences.for_token(token)
    wanted = preferences.choices(user)[choice]
    return render("patient/unsubscribe.html", token=token, patient=user, choice=choice,
                  what=_(preferences.WORDS[choice]), wanted=wanted, done=False)


# No @page on the POSTs: that would ask for the CSRF token a mail client cannot send.


@routes.post("/unsubscribe/<token>")
def unsubscribe(token):
    return _changed(token, preferences.unsubscribe, wanted=False)


@routes.post("/unsubscribe/<token>/undo")
def resubscribe(token):
    return _changed(token, preferences.resubscribe, wanted=True)


def _changed(token, action, wanted):
    try:
        user, choice = action(token)
    except ClinicError as exc:
        return render("error.html", status=exc.status, title=_("Cannot do that"),
                      message=exc.message)
    return render("patient/unsubscribe.html", token=token, patient=user, choice=choice,
                  what=_(preferences.WORDS[choice]), wanted=wanted, done=True)
