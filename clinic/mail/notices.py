"""The emails an appointment sends when it is booked, moved or cancelled, the calendar invite they
carry, and the signed link in them that lets the patient see, confirm, cancel or move the
appointment without signing in.

Each notice is written to the outbox (clinic/mail/outbox.py) inside the transaction that books,
moves or cancels the appointment (appointments.book, reschedule, cancel): a rolled-back booking
leaves no email, and delivery is queued only after the commit, so the booking never waits for
SMTP. One outbox key per change makes a second call for the same change harmless:

    confirmation:<id>:<start>                 the booking
    rescheduled:<id>:<start>:<moved at>       each move (moving back to an earlier time is a
                                              new change, so the time of the move is in the key)
    cancellation:<id>                         the cancellation (it is final)

A move or a cancellation withdraws what is still waiting to be sent about the old time: its
reminders and a confirmation that has not gone out yet (it would show the wrong time).

The invite (RFC 5545, iTIP METHOD:REQUEST or CANCEL) has one UID per appointment and a SEQUENCE
that counts the notices sent about it before (0 for the booking, one more for each move and the
cancellation), so calendars update the one event. Its times are UTC. It names the doctor and the
clinic but neither the specialization nor the link: calendars are often shared.

No notice mentions the reason for the visit or anything else medical.
"""

import re
from datetime import UTC

from clinic import clock, i18n, settings, signing
from clinic import details as clinic_details
from clinic.errors import NotFound
from clinic.i18n import _
from clinic.jobs.queue import URGENT
from clinic.mail import compose, outbox
from clinic.models import Appointment, Message

LINK_PURPOSE = "visit"
NOTICES = ("confirmation", "rescheduled", "cancellation")
REMINDERS = ("reminder_daily", "reminder_advance")


# -- the link -------------------------------------------------------------------------------------


def link_path(appointment):
    """/visit/<token>: signed for this appointment and its patient, valid until its start."""
    token = signing.sign(LINK_PURPOSE, {"a": appointment.id, "p": appointment.patient_id},
                         expires_at=appointment.start)
    return f"/visit/{token}"


def link(appointment):
    return settings.get().base_url + link_path(appointment)


def appointment_for_link(token, now=None):
    """The appointment (with its people) a visit link was made for. NotFound for a link that was
    not made by us, LinkExpired once the appointment has started."""
    data = signing.open_link(
        LINK_PURPOSE, token, now=now,
        expired=_("This link has expired: the appointment has started or is over. Sign in to "
                  "see your appointments, or %(call)s") % {"call": clinic_details.call_us(False)},
        invalid=_("This link is not valid. Please use the link in your latest email from the "
                  "clinic, or sign in."))
    appointment = (Appointment.with_people()
                   .where(Appointment.id == data.get("a"), Appointment.patient == data.get("p"))
                   .first())
    if appointment is None:
        raise NotFound(_("No such appointment."))
    return appointment


# -- the notices ----------------------------------------------------------------------------------


def booked(appointment, event="booked"):
    """Queue the confirmation of a booking (``event`` "booked") or a move ("rescheduled").
    Runs inside the transaction that made the change."""
    appointment = _with_people(appointment.id)
    sequence = _sequence(appointment)
    start = stamp(appointment.start)
    if event == "rescheduled":
        outbox.withdraw(appointment.id, REMINDERS + ("confirmation", "rescheduled"),
                        reason="appointment moved to another time")
        key = f"rescheduled:{appointment.id}:{start}:{stamp(appointment.updated_at, precise=True)}"
        _send("rescheduled", key, appointment, "REQUEST", sequence)
    else:
        _send("confirmation", f"confirmation:{appointment.id}:{start}", appointment, "REQUEST",
              sequence)


def cancelled(appointment, why=""):
    """Queue the cancellation notice and withdraw whatever about the appointment is still
    waiting to be sent. Runs inside the cancelling transaction. ``why`` is the clinic's reason
    when the clinic cancelled it (time off, a doctor who left): the notice says so and links
    to the doctor's free times."""
    appointment = _with_people(appointment.id)
    sequence = _sequence(appointment)
    outbox.withdraw(appointment.id, REMINDERS + ("confirmation", "rescheduled"),
                    reason="appointment cancelled")
    _send("cancellation", f"cancellation:{appointment.id}", appointment, "CANCEL", sequence,
          why=why)


def details(appointment):
    """What every email about an appointment may say: when (in clinic time, with the zone's
    name), with whom, and the link. ``appointment`` comes from Appointment.with_people()."""
    return {
        "patient_name": appointment.patient.name,
        "doctor_name": appointment.doctor.name,
        "specialization": appointment.doctor_profile.specialization,
        "start": appointment.start,
        "end": appointment.end,
        "timezone": clock.zone_words(),
        "link": link(appointment),
        "cutoff": settings.get().cancel_cutoff,  # the templates say it in the recipient's words
    }


def _send(kind, key, appointment, method, sequence, why=""):
    attachment = {"filename": "appointment.ics",
                  "content_type": f"text/calendar; method={method}; charset=utf-8",
                  "text": invite(appointment, method, sequence)}
    context = {**details(appointment), "why": why,
               "rebook_url": f"{settings.get().base_url}/patient/doctors/{appointment.doctor_id}"}
    return outbox.enqueue(kind, key, appointment.patient.email, context,
                          user=appointment.patient, appointment=appointment, priority=URGENT,
                          attachments=[attachment])


def _with_people(appointment_id):
    return Appointment.with_people().where(Appointment.id == appointment_id).get()


def _sequence(appointment):
    """How many notice emails were written about the appointment before: the invite's
    SEQUENCE (an SMS beside an email is not another notice)."""
    return (Message.select(Message.id)
            .where(Message.appointment == appointment.id, Message.kind.in_(NOTICES),
                   Message.channel == "email")
            .count())


def stamp(instant, precise=False):
    """An instant in UTC for an outbox key: 2026-03-02T08:00Z (with seconds and microseconds
    when ``precise``)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise
                                            else "%Y-%m-%dT%H:%MZ")


def duration_words(delta):
    """2 hours, 1 hour, 90 minutes: in the language in force."""
    return i18n.duration(delta)


# -- the calendar invite (RFC 5545) ---------------------------------------------------------------


def invite(appointment, method="REQUEST", sequence=0, now=None):
    """The .ics text for an appointment (from with_people()): CRLF line ends, TEXT values
    escaped, lines folded at 75 octets."""
    s = clinic_details.current()
    organizer = compose.from_address()
    patient = appointment.patient
    summary = f"Appointment with {appointment.doctor.name} at {s.name}"
    description = (f"Your appointment with {appointment.doctor.name} at {s.name}.\n"
                   f"To change it, use the link in the email from {s.name}.")
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//clinic//appointments//EN",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method}",
        "BEGIN:VEVENT",
        f"UID:appointment-{appointment.id}-{_ics_time(appointment.created_at)}"
        f"@{organizer.domain}",
        f"SEQUENCE:{sequence}",
        f"DTSTAMP:{_ics_time(now or clock.now())}",
        f"DTSTART:{_ics_time(appointment.start)}",
        f"DTEND:{_ics_time(appointment.end)}",
        f"SUMMARY:{ics_text(summary)}",
        f"DESCRIPTION:{ics_text(description)}",
    ]
    if s.address:
        lines.append(f"LOCATION:{ics_text(s.address)}")
    lines += [
        f"ORGANIZER;CN={_ics_param(organizer.display_name or s.name)}"
        f":mailto:{organizer.addr_spec}",
        f"ATTENDEE;CN={_ics_param(patient.name)};ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;"
        f"RSVP=FALSE:mailto:{patient.email}",
        "STATUS:" + ("CANCELLED" if method == "CANCEL" else "CONFIRMED"),
        "TRANSP:OPAQUE",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) + "\r\n" for line in lines)


def _ics_time(instant):
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def ics_text(value):
    """A TEXT value: backslash, semicolon and comma escaped, line breaks as \\n, other control
    characters dropped."""
    value = _CONTROL.sub("", str(value))
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return re.sub(r"\r\n|\r|\n", r"\\n", value)


def _ics_param(value):
    """A parameter value: quoted, without the characters a quoted value may not hold."""
    return '"' + re.sub(r'[\x00-\x1f\x7f"]', "", str(value)) + '"'


def fold(line, limit=75):
    """Fold a content line into lines of at most ``limit`` octets (continuations start with a
    space, which counts), never inside a UTF-8 character."""
    if len(line.encode("utf-8")) <= limit:
        return line
    parts, part, size = [], "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append(part)
            part, size, limit = "", 0, 74  # room for the leading space
        part += char
        size += width
    parts.append(part)
    return "\r\n ".join(parts)
