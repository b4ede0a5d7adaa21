"""The admin's messages pages: the outbox with filters, one message as it was (or would be) sent
with Resend for a failed one, and the settings check page with its test email. Also gives the
appointment pages their timeline (templates/admin/_timeline.html).

A message's HTML body is shown in a sandboxed frame loaded from its own address, whose response
carries a policy of its own: no script, no request anywhere, only the email's inline styles (the
page's policy forbids those, and a srcdoc frame would inherit it, so the email would lose its
looks). The escaped source is on the page too."""

from datetime import timedelta

import bottle
from bottle import request, response

from clinic import clock, details, health, settings, timeline
from clinic.errors import Invalid
from clinic.i18n import _
from clinic.jobs import scheduler
from clinic.jobs.queue import URGENT
from clinic.mail import compose, gateway, lookup, outbox
from clinic.models import CHANNELS, MESSAGE_STATUSES
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import one_page, paging
from clinic.web.rendering import render, templates
from clinic.web.sessions import current_user

routes = bottle.Bottle()

# The appointment pages of the admin and the doctor include the timeline; access to the
# appointment is checked by their routes (appointments.appointment_for).
templates.globals["appointment_timeline"] = timeline.for_appointment

FILTERS = ("status", "kind", "channel", "q", "from", "to")

# The frame's own policy: the email's inline styles and data: images, nothing else; sandboxed
# even when opened on its own; framed only by the clinic's pages.
BODY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'self'; sandbox")

# What the settings page shows, in this order. Never a secret, nor a URL that may hold one
# (CLINIC_DATABASE_URL, CLINIC_QUEUE_URL).
SHOWN = ("name", "address", "phone", "website", "phone_region", "base_url", "timezone",
         "cancel_cutoff", "booking_horizon", "no_show_after", "reminder_offsets",
         "session_lifetime", "mail_from", "smtp_host", "smtp_port", "smtp_security", "smtp_user",
         "smtp_timeout", "sms_rate", "sms_timeout")


def _outbox_folder():
    """Where emails are written instead of sent, or None when an SMTP server is set."""
    s = settings.get()
    return None if s.smtp_host else s.data_path / "outbox"


def _sms_folder():
    """Where SMS are written instead of sent, or None when a gateway is set."""
    s = settings.get()
    return None if gateway.config(s) else s.data_path / "outbox"


# -- the outbox -----------------------------------------------------------------------------------


@routes.get("/admin/messages")
@page("admin")
def messages_page():
    filters = {name: request.query.getunicode(name, "").strip() for name in FILTERS}
    number, window = paging()
    errors = {}
    try:
        rows, more = one_page(lookup.search(filters["status"], filters["kind"], filters["q"],
                                            filters["from"], filters["to"], **window,
                                            channel=filters["channel"]))
    except Invalid as exc:
        rows, more, errors = [], False, exc.fields
    return render("admin/messages.html", status=400 if errors else 200, messages=rows,
                  more=more, page=number, form=filters, errors=errors,
                  statuses=MESSAGE_STATUSES, kinds=lookup.kinds(), channels=CHANNELS,
                  outbox_folder=_outbox_folder(), sms_folder=_sms_folder())


def _message_page(message, status=200, **context):
    folder = _sms_folder() if message.channel == "sms" else _outbox_folder()
    return render("admin/messages_detail.html", status=status, message=message,
                  headers=lookup.headers(message), outbox_folder=folder,
                  secret=message.kind in compose.SECRET_LINK_KINDS, **context)


@routes.get("/admin/messages/<message_id:int>")
@page("admin")
def message_page(message_id):
    return _message_page(lookup.message_for(message_id))


@routes.get("/admin/messages/<message_id:int>/html")
@page("admin")
def message_html(message_id):
    message = lookup.message_for(message_id)
    response.set_header("Content-Security-Policy", BODY_POLICY)
    response.set_header("X-Frame-Options", "SAMEORIGIN")
    response.content_type = "text/html; charset=utf-8"
    if message.kind in compose.SECRET_LINK_KINDS:
        return "<p>Not shown: holds a sign-in link.</p>"
    return message.html_body


@routes.post("/admin/messages/<message_id:int>/resend")
@page("admin")
def resend(message_id):
    message = lookup.message_for(message_id)
    if not outbox.resend(message.id):
        message = lookup.message_for(message_id)
        return _message_page(message, status=409, errors={
            "__all__": _("Only a failed message can be sent again; this one is %(status)s.")
            % {"status": message.status}})
    flash(_("The message to %(recipient)s is queued again: it goes out in a moment. This page "
            "shows how it went.") % {"recipient": message.recipient})
    redirect(f"/admin/messages/{message.id}")


# -- the settings check ---------------------------------------------------------------------------


@routes.get("/admin/settings")
@page("admin")
def settings_page():
    s = settings.get()
    declared = {setting.name: setting for setting in settings.SETTINGS}
    clinic = details.current()
    shown = [(declared[name].env, declared[name].help, _in_force(name, s, clinic))
             for name in SHOWN if name in declared and not declared[name].secret]
    return render("admin/settings.html", smtp=health.smtp_check(s), jobs=scheduler.listing(),
                  now=clock.now(), shown=shown, outbox_folder=_outbox_folder(),
                  sms_gateway=gateway.config(s), sms_folder=_sms_folder(),
                  base_url=s.base_url)


@routes.post("/admin/settings/test-email")
@page("admin")
def send_test_email():
    user = current_user()
    now = clock.now()
    outbox.enqueue("test", key=f"test:{user.id}:{now.isoformat()}", recipient=user.email,
                   context={"name": user.name}, user=user, priority=URGENT)
    flash(_("A test email is on its way to %(email)s: check your inbox, or the Messages page "
            "to see whether it went.") % {"email": user.email})
    redirect("/admin/settings")


def _in_force(name, s, clinic):
    """A setting's value in force: the clinic's details not set in the environment are the
    Clinic page's."""
    if name in details.FIELDS and name not in clinic.from_environment:
        value = clinic.phone_text if name == "phone" else getattr(clinic, name)
        return _value(name, value) + " (on the Clinic page)"
    return _value(name, s.values.get(name))


def _value(name, value):
    """A setting's value as the page says it."""
    if name == "mail_from" and not value:
        return str(compose.from_address())
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, tuple):
        return ", ".join(_value(name, item) for item in value)
    if value is None or value == "":
        return "(not set)"
    return str(value)


def _duration(delta):
    """1 day, 2 hours, 90 minutes, 10 seconds."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"
