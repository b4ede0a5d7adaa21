"""An appointment's story, for the admin's and the doctor's appointment pages: booked, moved,
the emails about it and what became of each (sent, waiting, failed with the error, not sent with
the reason), the reminders still to come, how it ended, the review. It answers "why did Mrs X not
get her reminder?".

Everything comes from what is stored: the appointment, its outbox rows (clinic/mail/outbox.py), its
treatment record's time and its review's. Reminders that have no row yet are worked out from the
settings with ``reminders.due_at`` (the rule the reminder jobs follow) and the daily-reminders
job's schedule: planned while the visit is to come (or "will not be sent" with the reason when
CLINIC_REMINDER_GAP will skip it), not sent once it was cancelled, completed or missed before
their time.

Nothing medical: not the reason for the visit, not the treatment, not the review's words.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clinic import clock, i18n, reminders, settings, waitlist
from clinic.jobs import scheduler
from clinic.mail import notices
from clinic.models import ACTIVE_STATUSES, Message, Review, Treatment

# What the page calls each kind of email.
NAMES = {
    "confirmation": "Confirmation email",
    "rescheduled": "New-time email",
    "cancellation": "Cancellation email",
    "reminder_daily": "Reminder on the day",
    "review_request": "Review request",
}
ENDED = {"cancelled": "cancelled", "completed": "completed", "no_show": "marked as missed"}
DAILY_JOB = "daily-reminders"
ADVANCE_JOB = "advance-reminders"

# kind:<appointment id>:<start as notices.stamp() writes it>[:...]
_KEY = re.compile(r"(?P<prefix>[a-z0-9_]+):\d+:(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\dZ)")
_LISTED = (Message.id, Message.key, Message.kind, Message.recipient, Message.status,
           Message.attempts, Message.last_error, Message.due_at, Message.claimed_at,
           Message.sent_at, Message.created_at, Message.updated_at, Message.channel,
           Message.segments, Message.delivery, Message.price, Message.price_unit)


@dataclass(frozen=True)
class Event:
    at: datetime  # aware UTC
    what: str  # "Confirmation email sent"
    detail: str = ""  # to whom, the error, the reason it was not sent
    # done (a change to the appointment), planned, pending, sending, sent, failed, skipped
    status: str = "done"
    message_id: int | None = None  # the outbox row, for the admin's link to it


def for_appointment(appointment, now=None):
    """The events of ``appointment`` (from Appointment.with_people()) in time order; at the
    same instant a change to the appointment comes before the emails it caused."""
    now = now or clock.now()
    messages = list(Message.select(*_LISTED).where(Message.appointment == appointment.id)
                    .order_by(Message.created_at, Message.id))
    changes = [Event(appointment.created_at, "Booked", _booked(appointment, messages))]
    emails = []
    ended_at = None
    told = set()  # the changes told of: an email and the SMS beside it tell of one change
    for message in messages:
        change = message.key.removesuffix(f":{message.channel}")
        if change in told:
            emails.append(_email(message, appointment, now))
            continue
        told.add(change)
        if message.kind == "rescheduled":
            start = _start(message.key)
            changes.append(Event(message.created_at, "Moved",
                                 f"to {_when(start)}" if start else ""))
        elif message.kind == "cancellation":
            ended_at = message.created_at
            changes.append(Event(message.created_at, "Cancelled"))
        emails.append(_email(message, appointment, now))
    if appointment.status == "cancelled" and ended_at is None:
        ended_at = appointment.updated_at
        changes.append(Event(ended_at, "Cancelled"))
    elif appointment.status == "confirmed":
        changes.append(Event(appointment.updated_at, "Confirmed by the patient"))
    elif appointment.status == "completed":
        treatment = Treatment.get_or_none(Treatment.appointment == appointment.id)
        ended_at = treatment.created_at if treatment else appointment.updated_at
        changes.append(Event(ended_at, "Visit completed"))
    elif appointment.status == "no_show":
        ended_at = appointment.updated_at
        changes.append(Event(ended_at, "Marked as missed (no-show)"))
    review = Review.get_or_none(Review.appointment == appointment.id)
    if review is not None:
        changes.append(Event(review.created_at, "Reviewed by the patient"))
    changes += _waitlist(appointment)
    emails += _reminders_to_come(appointment, messages, ended_at, now)
    ranked = [(event.at, 0, i, event) for i, event in enumerate(changes)]
    ranked += [(event.at, 1, i, event) for i, event in enumerate(emails)]
    return [event for *_, event in sorted(ranked, key=lambda row: row[:3])]


def _waitlist(appointment):
    """The waitlist's part: each offer of the slot this appointment freed (its email, then
    claimed or expired), and, for one booked from the waitlist, that. No other patient is
    named: the offers go to whoever is first in line."""
    events = []
    for offer in waitlist.offers(freed_by=appointment.id):
        when = _when(offer.start)
        message = offer.message
        if message is not None and message.status == "sent":
            events.append(Event(message.sent_at, "Waitlist offer sent",
                                f"{when}, to the next patient in line", "sent"))
        elif message is not None:
            events.append(Event(offer.created_at, f"Waitlist offer {message.status}",
                                f"{when}: {message.last_error}".rstrip(": "), message.status))
        else:
            events.append(Event(offer.created_at, "Waitlist offer made", when, "done"))
        if offer.status == "claimed":
            events.append(Event(offer.updated_at, "Waitlist offer claimed",
                                f"{when} is booked again"))
        elif offer.status == "expired":
            events.append(Event(offer.expires_at, "Waitlist offer expired",
                                f"{when} goes to the next in line", "skipped"))
    for offer in waitlist.offers(booked=appointment.id):
        events.append(Event(offer.updated_at, "Booked from the waitlist",
                            f"the offer sent {_when(offer.created_at)}"))
    return events


def _booked(appointment, messages):
    """For when and with whom: the time in its confirmation's key (the first time booked), or
    the present time when it never moved."""
    kinds = {message.kind: message for message in reversed(messages)}  # the first of each
    if "rescheduled" not in kinds:
        first = appointment.start
    else:
        first = _start(kinds["confirmation"].key) if "confirmation" in kinds else None
    when = f"for {_when(first)} " if first else ""
    return f"{when}with {appointment.doctor.name}"


def _email(message, appointment, now):
    """The event that says where an outbox row stands."""
    name = _name(message)
    start = _start(message.key)
    moved = start is not None and start != _minute(appointment.start)
    earlier = (f" (for the earlier time {_when(start)})"
               if moved and message.kind != "rescheduled" else "")
    to = f"to {message.recipient or 'no address'}{earlier}"
    status, error = message.status, message.last_error
    if message.channel == "sms" and status == "sent":
        word = "delivered" if message.delivery == "delivered" else "sent"
        return Event(message.sent_at, f"{name} {word}",
                     f"{to}{sms_facts(message)}", status, message.id)
    if status == "sent":
        return Event(message.sent_at, f"{name} sent", to, status, message.id)
    if status == "failed":
        return Event(message.updated_at, f"{name} failed", f"{to}: {error}", status, message.id)
    if status == "skipped":
        return Event(message.updated_at, f"{name} not sent", error + earlier, status, message.id)
    if status == "sending":
        return Event(message.claimed_at or message.updated_at, f"{name} being sent", to, status,
                     message.id)
    if message.attempts:
        return Event(message.due_at, f"{name} to be tried again",
                     f"{to}; attempt {message.attempts} failed: {error}", status, message.id)
    waiting = "due to be sent" if message.due_at > now else "waiting to be sent"
    return Event(message.due_at, f"{name} {waiting}", to, status, message.id)


def _reminders_to_come(appointment, messages, ended_at, now):
    """The reminders of the appointment's present time that have no outbox row yet. A planned
    one that CLINIC_REMINDER_GAP will skip (reminders.gap_reason, the jobs' rule: another
    reminder of this time goes out less than the gap before it) is shown as such."""
    stamp = notices.stamp(appointment.start)
    written = {message.key for message in messages}
    # When this time's reminders went out or will, as the jobs' gap check sees them.
    earlier = [message.created_at for message in messages
               if message.kind in reminders.KINDS and message.status != "skipped"
               and message.key.endswith(f":{stamp}")]
    tz = clock.zone()
    due = []
    for offset in settings.get().reminder_offsets:
        label = reminders.label(offset)  # the key reminders.send_advance() writes
        due.append((f"reminder_{label}:{appointment.id}:{stamp}", f"{_words(label)} reminder",
                    reminders.due_at(appointment.start, offset, tz), ADVANCE_JOB))
    daily = _daily_due(appointment.start, tz)
    if daily is not None:
        due.append((f"reminder_daily:{appointment.id}:{stamp}", NAMES["reminder_daily"], daily,
                    DAILY_JOB))
    events = []
    for key, name, at, job in sorted(due, key=lambda item: item[2]):
        if key in written:
            continue
        if appointment.status in ACTIVE_STATUSES:
            if at > now:
                reason = reminders.gap_reason(at, earlier)
                if reason is None:
                    earlier.append(at)
                    events.append(Event(at, f"{name} planned", "", "planned"))
                else:
                    events.append(Event(at, f"{name} will not be sent", reason, "skipped"))
            else:
                events.append(Event(at, f"{name} due", f"the next run of the {job} job sends it "
                                    "or records why not", "pending"))
        elif ended_at is not None and at > ended_at:
            events.append(Event(at, f"{name} not sent", "the appointment was "
                                f"{ENDED[appointment.status]} before it was due", "skipped"))
        # Due before the visit ended and never written: the job was not running then. Nothing
        # to say that would help now.
    return events


def _daily_due(start, tz):
    """When the daily-reminders job first runs on the visit's day (clinic time), or None if it
    does not run that day."""
    try:
        plan = scheduler.get(DAILY_JOB).schedule()
    except scheduler.UnknownJob:
        return None
    lo, hi = clock.day_bounds(clock.local(start).date(), tz)
    first = plan.next(lo - timedelta(microseconds=1), tz, 1)[0]
    return first if first < hi else None


def sms_facts(message):
    """", 2 parts, 0.0075 USD": what the gateway said of a sent SMS."""
    facts = f", {message.segments} part{'' if message.segments == 1 else 's'}" \
        if message.segments else ""
    if message.price:
        facts += f", {message.price.lstrip('-')} {message.price_unit}".rstrip()
    return facts


def _name(message):
    sms = " SMS" if message.channel == "sms" else ""
    if message.kind == "reminder_advance":
        match = _KEY.match(message.key)
        label = match.group("prefix").removeprefix("reminder_") if match else ""
        return f"{_words(label)} reminder{sms}".lstrip()
    if message.kind.startswith("reminder_"):
        return NAMES.get(message.kind, message.kind) + sms
    name = NAMES.get(message.kind, message.kind.replace("_", " ").capitalize() + " email")
    return name.replace(" email", " SMS") if sms else name


def _words(label):
    """An offset's label (reminders.label: 24h, 90m) as the page says it: 24 h, 90 min."""
    return label.replace("h", " h").replace("m", " min")


def _start(key):
    """The appointment time an outbox key was written for, or None."""
    match = _KEY.match(key)
    if not match:
        return None
    return datetime.strptime(match.group("start"), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def _minute(instant):
    return instant.astimezone(UTC).replace(second=0, microsecond=0)


def _when(instant):
    return i18n.formatted(instant)
