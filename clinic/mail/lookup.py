"""The outbox as the admin's Messages page reads it (clinic/web/pages/messages.py): the list with
its filters, one message and the headers it goes out with.
"""

from peewee import fn

from clinic import filters
from clinic.errors import NotFound
from clinic.i18n import N_, _
from clinic.mail import compose, errors, gateway
from clinic.models import CHANNELS, MESSAGE_STATUSES, Message, User

LISTED = (Message.id, Message.kind, Message.recipient, Message.user, Message.appointment,
          Message.subject, Message.status, Message.attempts, Message.last_error, Message.due_at,
          Message.sent_at, Message.created_at, Message.channel, Message.segments,
          Message.price, Message.price_unit, Message.delivery)  # not the bodies: a page lists 25


def search(status="", kind="", recipient="", day_from="", day_to="", limit=25, offset=0,
           channel=""):
    """Messages for the admin's outbox page, newest first, without their bodies. Filters: a
    status, a kind, a channel (email, sms), part of the recipient's address, phone or name,
    clinic-local days created (both included). Raises Invalid (with the field) for a status, a
    channel or a date it does not know.

    Newest first, in an order an index gives, so a page never sorts the table: with a kind by
    creation (the (kind, created_at) index), with a status by when they were last due (the
    (status, due_at) index; for nearly all messages that is when they were made), else by id."""
    needle = (recipient or "").strip().lower()
    named = User.select(User.id).where(fn.LOWER(User.name).contains(needle))
    if kind:
        order = (Message.created_at.desc(), Message.id.desc())
    elif status:
        order = (Message.due_at.desc(), Message.id.desc())
    else:
        order = (Message.id.desc(),)
    return filters.page(
        Message.select(*LISTED), Message.created_at, day_from, day_to,
        choices={"status": (status, MESSAGE_STATUSES, "Choose a status from the list."),
                 "channel": (channel, CHANNELS, "Choose email or sms.")},
        where=[Message.status == status if status else None,
               Message.channel == channel if channel else None,
               Message.kind == kind if kind else None,
               (fn.LOWER(Message.recipient).contains(needle) | Message.user.in_(named))
               if needle else None],
        order=order, limit=limit, offset=offset)


# Each kind of email in words, for the Messages pages (one place: the list, its filter and a
# message's page all say the same); marked here, translated by kind_words().
KIND_WORDS = {
    "confirmation": N_("Booking confirmation"),
    "rescheduled": N_("New time"),
    "cancellation": N_("Cancellation"),
    "reminder_daily": N_("Reminder on the day"),
    "reminder_advance": N_("Reminder before the visit"),
    "review_request": N_("Review request"),
    "review_reminder": N_("Review reminder"),
    "announcement": N_("Announcement"),
    "history_export": N_("History export"),
    "monthly_report": N_("Monthly report"),
    "password_reset": N_("Password reset"),
    "email_change": N_("New email address"),
    "account_changed": N_("Account change notice"),
    "waitlist_offer": N_("Waitlist offer"),
    "test": N_("Test email"),
}


def kind_words(kind):
    """``kind`` as the Messages pages say it; an unknown kind with its underscores as spaces."""
    words = KIND_WORDS.get(kind)
    return _(words) if words else kind.replace("_", " ").capitalize()


def kinds():
    """Every kind of message in the outbox, for the page's filter (read from the kind index)."""
    return [row[0] for row in Message.select(Message.kind).distinct()
            .order_by(Message.kind).tuples()]


def message_for(message_id):
    """The message with this id, or NotFound."""
    message = Message.get_or_none(Message.id == message_id)
    if message is None:
        raise NotFound(_("No such message."))
    return message


def headers(message):
    """The message's headers as ``[(name, value)]``, as delivery writes them (dated when it was
    sent, or is due). A message that cannot be built (no valid address, an attachment gone)
    shows what the row says. An SMS: what the gateway is sent and said."""
    if message.channel == "sms":
        c = gateway.config()
        rows = [("To", message.recipient), ("From", c.sender if c else "(no gateway: a file)"),
                ("Segments", str(message.segments))]
        if message.gateway_id:
            rows.append(("Gateway SID", message.gateway_id))
        if message.delivery:
            rows.append(("Delivery", message.delivery))
        if message.price:
            rows.append(("Price", f"{message.price.lstrip('-')} {message.price_unit}".strip()))
        return rows
    try:
        built = compose.build(message, now=message.sent_at or message.due_at)
    except errors.PermanentError:
        return [("From", str(compose.from_address())), ("To", message.recipient),
                ("Subject", message.subject), ("Message-ID", message.message_id)]
    return [(name, str(value)) for name, value in built.items()
            if name not in ("MIME-Version", "Content-Type", "Content-Transfer-Encoding")]
