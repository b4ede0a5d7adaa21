"""Text messages to patients: what an SMS of each kind says, its short signed link, the numbers
that replied STOP, and what the gateway reports back about each SMS.

An SMS is an outbox row with ``channel`` "sms" (clinic/mail/outbox.py writes it beside or instead
of the email, as the patient chose; clinic/mail/delivery.py sends it through
clinic/mail/gateway.py). Its text comes from templates/sms/<kind>.txt, and only kinds with such
a template go by SMS: those about a visit (confirmation, move, cancellation, reminders). The
text is kept within MAX_SEGMENTS parts (clinic/mail/sms_text.py), ending with a short link to
the visit's page, which has the rest. An SMS says when, with which doctor and where; never the
patient's name, the reason for the visit, the specialization, or anything else medical: a phone's
lock screen shows it to whoever holds the phone.
"""

import base64
import functools
import hashlib
import hmac
from pathlib import Path

import jinja2

from clinic import clock, i18n, people, settings
from clinic.db import database
from clinic.mail import compose, sms_text
from clinic.models import Message, SmsOptOut

SMS = Path(__file__).resolve().parent.parent.parent / "templates" / "sms"
MAX_SEGMENTS = 3

# What an SMS template may use of the email's context: nothing medical, no name.
SAFE = ("doctor_name", "start", "end", "timezone", "cutoff", "clinic_name", "clinic_address",
        "base_url")

# Replies that opt a number out, and back in (the keywords carriers and Twilio use).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})


def _templates():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SMS)),
        # Plain text, as the email's .txt bodies: nothing here is HTML.
        autoescape=jinja2.select_autoescape([], default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined, auto_reload=False)
    env.filters.update(compose.templates.filters)  # local, time, day: the clinic's time zone
    i18n.install(env)  # _() and the date filters in the language in force (render's language)
    return env


templates = _templates()


@functools.lru_cache(maxsize=64)
def has_text(kind):
    """True when the kind has an SMS (templates/sms/<kind>.txt)."""
    return (SMS / f"{kind}.txt").is_file()


def render(kind, context, appointment_id=None, patient_id=None, language=None):
    """``(text, segments)`` of the SMS ``kind`` in ``language`` (the patient's; an unknown or
    missing one is the clinic's first): the template with the SAFE part of the email's
    ``context``, then the short link to the visit (when there is one, else the context's
    ``link``), the whole within MAX_SEGMENTS parts."""
    s = settings.get()
    safe = {"clinic_name": s.name, "clinic_address": s.address, "base_url": s.base_url}
    safe.update({key: value for key, value in (context or {}).items() if key in SAFE})
    with i18n.using(i18n.chosen(language) or i18n.default()):
        text = " ".join(templates.get_template(f"{kind}.txt").render(safe).split())
    if appointment_id is not None and patient_id is not None:
        link = short_link(appointment_id, patient_id)
    else:
        link = (context or {}).get("link", "")
    text = sms_text.fit(text, link, MAX_SEGMENTS)
    return text, sms_text.segments(text)


# -- the short link -------------------------------------------------------------------------------


def _mac(appointment_id, patient_id):
    key = settings.get().secret_key.encode()
    mac = hmac.new(key, f"sms-link:{appointment_id}:{patient_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:9]).decode()  # 72 bits, 12 characters


def short_link(appointment_id, patient_id):
    """``<base_url>/s/<id>.<mac>``: a link short enough for an SMS, signed for one appointment
    and its patient, that leads to the visit's page (clinic/web/pages/link.py)."""
    return f"{settings.get().base_url}/s/{appointment_id}.{_mac(appointment_id, patient_id)}"


def open_short_link(code, patient_of):
    """The appointment id a short link's ``code`` names, or None when we did not make it.
    ``patient_of(appointment_id)`` gives the appointment's patient id (or None)."""
    ident, _, mac = code.partition(".")
    if not ident.isdigit() or len(ident) > 18:
        return None
    patient_id = patient_of(int(ident))
    if patient_id is None or not hmac.compare_digest(mac.encode(),
                                                     _mac(int(ident), patient_id).encode()):
        return None
    return int(ident)


# -- opting out (STOP) ----------------------------------------------------------------------------


def e164(phone):
    """A stored phone number as the gateway takes it (+4930123456), or as it is when it is not
    one (its SMS then fails with the reason)."""
    return people.parse_phone(phone, {}) if phone else ""


def stop_reason(phone):
    return f"the number {phone} replied STOP: no SMS until it replies START"


def opted_out(phones):
    """The numbers among ``phones`` that replied STOP and not START since: one query."""
    phones = [phone for phone in set(phones) if phone]
    if not phones:
        return set()
    return {row.phone for row in SmsOptOut.select(SmsOptOut.phone)
            .where(SmsOptOut.phone.in_(phones))}


def reply(phone, body, now=None):
    """Act on an SMS from ``phone``: a STOP word opts the number out at once (and skips its SMS
    still waiting), a START word opts it back in. Returns "stopped", "started" or None (any
    other text: nothing is done with it)."""
    now = now or clock.now()
    word = (body or "").strip().strip(".!").upper()
    if not phone:
        return None
    if word in STOP_WORDS:
        with database.atomic():
            SmsOptOut.insert(phone=phone, keyword=word, created_at=now) \
                .on_conflict_ignore().execute()
            (Message.update(status="skipped", last_error=stop_reason(phone), updated_at=now)
             .where(Message.channel == "sms", Message.recipient == phone,
                    Message.status == "pending")
             .execute())
        return "stopped"
    if word in START_WORDS:
        SmsOptOut.delete().where(SmsOptOut.phone == phone).execute()
        return "started"
    return None


# -- delivery reports -----------------------------------------------------------------------------

FINAL = ("delivered", "undelivered", "failed")
# Twilio's error codes a clinic meets most, in words.
ERRORS = {
    "30003": "the phone is off or out of reach",
    "30004": "the number blocks messages",
    "30005": "unknown number",
    "30006": "a landline or a number that cannot take SMS",
    "30007": "filtered by the carrier",
    "30008": "unknown error at the carrier",
    "21610": "the number replied STOP at the gateway",
}


def delivery_report(sid, state, error_code="", price="", price_unit="", now=None):
    """Record what the gateway says of the SMS it knows as ``sid``: its ``state`` (queued, sent,
    delivered, undelivered, failed), the error code of an undelivered one, its price. A final
    state is never overwritten by an earlier one that arrived late. Undelivered and failed make
    the message failed with the gateway's error, so the admin sees it and may resend it.
    Returns False when no SMS has this sid."""
    now = now or clock.now()
    state = (state or "").strip().lower()
    message = (Message.select(Message.id).where(Message.gateway_id == sid, Message.channel == "sms")
               .first()) if sid else None
    if message is None:
        return False
    if state not in ("queued", "sending", "sent", *FINAL):
        return True  # a state we do not track (accepted, scheduled, read): nothing to record
    changes = {Message.delivery: state, Message.updated_at: now}
    if price:
        changes.update({Message.price: str(price)[:20], Message.price_unit: str(price_unit)[:3]})
    if state in ("undelivered", "failed"):
        code = (error_code or "").strip()
        words = ERRORS.get(code, "")
        error = f"the gateway could not deliver it ({state}"
        error += f", error {code}" if code else ""
        error += f": {words})" if words else ")"
        changes.update({Message.status: "failed", Message.last_error: error})
    (Message.update(changes)
     .where(Message.id == message.id, Message.delivery.not_in(FINAL),
            Message.status.in_(("sent", "failed")))
     .execute())
    return True
