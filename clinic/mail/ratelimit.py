"""The sending rates, CLINIC_MAIL_RATE for email and CLINIC_SMS_RATE for SMS (registered in
clinic/mail/gateway.py): no more messages of a channel in any minute than the provider's quota
allows.

A sliding minute counted from the outbox's own claim times (a sent message's sent_at is its claim
time), so it holds across threads, processes and restarts. A message over the limit is not
failed: delivery leaves it pending with a later due_at and queues send_due_messages for that
moment (clinic/mail/delivery.py). While the limit bites, mail of higher priority (confirmations,
cancellations, reminders) that is due goes before bulk mail (announcements, priority below 0).
"""

from datetime import timedelta

from clinic import db, settings
from clinic.db import database
from clinic.models import Message
from clinic.settings import Setting


def _rate(raw):
    value = int(raw.strip() or "0")
    if value < 0:
        raise ValueError("expected a number of messages per minute, 0 for no limit")
    return value


settings.register(
    Setting("mail_rate", "0", _rate,
            "Most emails sent in any minute, for a mail provider with a quota (0 or empty: no "
            "limit). Confirmations, cancellations and reminders go before announcements."),
)

WINDOW = timedelta(minutes=1)
PAUSE = timedelta(seconds=2)  # how long bulk mail waits while more urgent mail is due
_RATE_LOCK = 7_400_117  # PostgreSQL advisory lock: one claimer at a time under a rate


RATES = {"email": "mail_rate", "sms": "sms_rate"}


def rate(channel="email"):
    """The channel's rate (CLINIC_MAIL_RATE, CLINIC_SMS_RATE): the most messages sent in any
    minute; 0 for no limit."""
    return settings.get().values.get(RATES[channel]) or 0


def limited(now, priority=0, channel="email"):
    """None when a message of ``priority`` may be sent by ``channel`` at ``now``; else when to
    try again (the claims and messages of that channel only):

    1. The last minute's claims (every attempt counts: the provider counts them too) have used
       the rate: again when the oldest of the latest ``rate`` claims leaves the minute.
    2. A message of higher priority that was never tried is due: it goes first, and this one
       waits PAUSE (the sender of that message, or send_due(), takes the place meanwhile).
    """
    limit = rate(channel)
    if not limit:
        return None
    latest = (Message.select(Message.claimed_at)
              .where(Message.claimed_at > now - WINDOW, Message.channel == channel)
              .order_by(Message.claimed_at.desc())
              .offset(limit - 1).limit(1).first())
    if latest is not None:
        return max(latest.claimed_at + WINDOW, now)
    urgent = (Message.select(Message.id)
              .where(Message.status == "pending", Message.due_at <= now, Message.attempts == 0,
                     Message.priority > priority, Message.channel == channel)
              .exists())
    return now + PAUSE if urgent else None


def take_turn():
    """Inside a transaction: wait until no other claimer under the rate is between counting the
    minute's claims and claiming, so two cannot both take the last place."""
    # SQLite: the transaction began IMMEDIATE, so claimers already take turns. PostgreSQL reads
    # a snapshot per statement: two claimers could each count a free place and both take it.
    if db.is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_RATE_LOCK,))
