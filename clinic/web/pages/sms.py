"""What the SMS gateway calls (its webhooks), and the short link in every SMS.

``POST /sms/inbound`` (a reply: STOP, START) and ``POST /sms/status`` (a delivery report) carry
no cookie and no CSRF token: the gateway's signature is their only key. X-Twilio-Signature is
checked against the public address (CLINIC_BASE_URL + the path) and the form, keyed by the auth
token in CLINIC_SMS_URL; anything else gets 403 and changes nothing.

``GET /s/<code>`` opens the visit page of the appointment the code was signed for.
"""

import bottle
from bottle import HTTPResponse, request

from clinic import people, settings
from clinic.mail import gateway, notices, sms
from clinic.models import Appointment
from clinic.web.decorators import page, redirect

routes = bottle.Bottle()

EMPTY_REPLY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _signed_form():
    """The form of a gateway webhook as (name, value) pairs; aborts with 403 unless its
    X-Twilio-Signature is right."""
    params = list(request.forms.decode().allitems())  # every value, as UTF-8 text
    url = settings.get().base_url + request.path
    if not gateway.signed(url, params, request.get_header("X-Twilio-Signature", "")):
        raise HTTPResponse("Forbidden: not signed by the SMS gateway.", status=403,
                           headers={"Content-Type": "text/plain; charset=utf-8"})
    return dict(params)


def _xml(body=EMPTY_REPLY):
    return HTTPResponse(body, status=200, headers={"Content-Type": "text/xml; charset=utf-8"})


@routes.post("/sms/inbound")
def inbound():
    data = _signed_form()
    errors = {}
    phone = people.parse_phone(data.get("From", ""), errors)
    if not errors:
        sms.reply(phone, data.get("Body", ""))
    return _xml()


@routes.post("/sms/status")
def status():
    data = _signed_form()
    sms.delivery_report(data.get("MessageSid", ""), data.get("MessageStatus", ""),
                        data.get("ErrorCode", ""), data.get("Price", ""),
                        data.get("PriceUnit", ""))
    return HTTPResponse("", status=204)


def _patient_of(appointment_id):
    return (Appointment.select(Appointment.patient).where(Appointment.id == appointment_id)
            .scalar())


@routes.get("/s/<code>")
@page()
def short_link(code):
    appointment_id = sms.open_short_link(code, _patient_of)
    if appointment_id is None:
        raise bottle.HTTPError(404, "No such link.")
    appointment = Appointment.get_by_id(appointment_id)
    redirect(notices.link_path(appointment))
