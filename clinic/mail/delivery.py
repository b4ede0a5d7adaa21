"""Delivering outbox rows: claim them, send each over one connection per channel (SMTP for email,
the SMS gateway's HTTP for SMS: SENDERS_BY_CHANNEL), mark each at once.

A row is claimed with a conditional UPDATE (pending -> sending) just before it is sent, so of two
deliveries of the same rows one wins each row. It is marked sent as soon as the server took it;
failed with the reason for a permanent error; pending again, due later (RETRY_DELAYS), for a
passing one, until MAX_ATTEMPTS. Under CLINIC_MAIL_RATE or CLINIC_SMS_RATE
(clinic/mail/ratelimit.py) what has no room waits, pending, and send_due_messages is queued for
when there is room again.

send_messages is the task the outbox queues after a row commits (clinic/mail/outbox.py); the
sweeper (clinic/mail/sweeper.py) delivers what a lost task or a retry leaves pending.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from peewee import JOIN

from clinic import clock, db, settings
from clinic.db import database
from clinic.jobs.queue import URGENT
from clinic.mail import compose, errors, gateway, ratelimit, sender
from clinic.models import Message, User
from huey_config import huey

log = logging.getLogger("clinic.mail.delivery")

MAX_ATTEMPTS = 3
RETRY_DELAYS = (timedelta(minutes=10), timedelta(hours=3))  # after the 1st and the 2nd attempt
BATCH = 100


def stuck_after():
    """How long a row may stay in ``sending`` before the sweeper takes its sender for dead: far
    longer than one send can take, each of whose steps is bounded by the SMTP or SMS timeout."""
    s = settings.get()
    return max(timedelta(minutes=10), 20 * s.smtp_timeout, 20 * s.sms_timeout)


class _Mailer:
    """The email channel: builds each row into a MIME message and sends it over SMTP."""

    def __init__(self):
        self.sender = sender.Sender()

    def __enter__(self):
        self.sender.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.sender.__exit__(*exc_info)

    def send(self, message, at):
        self.sender.send(compose.build(message, now=at))
        return {}


class _Texter:
    """The SMS channel: posts each row to the gateway; returns what to record of its answer."""

    def __init__(self):
        self.gateway = gateway.Gateway()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.gateway.close()

    def send(self, message, at):
        receipt = self.gateway.send(message)
        return {"gateway_id": receipt.sid, "segments": receipt.segments or message.segments,
                "price": receipt.price, "price_unit": receipt.price_unit,
                "delivery": receipt.status if receipt.status in ("queued", "sent") else ""}


SENDERS_BY_CHANNEL = {"email": _Mailer, "sms": _Texter}


def claim(message_id, now, channel="email"):
    """Take a pending, due message for sending. True only for the one caller whose conditional
    UPDATE changed the row; everyone else must leave it alone. Under the channel's rate, also
    False while ``limited()`` says the message must wait (checked and claimed in one
    transaction, so senders in other threads and processes cannot both take the last place)."""
    update = (Message.update(status="sending", claimed_at=now, attempts=Message.attempts + 1,
                             updated_at=now)
              .where(Message.id == message_id, Message.status == "pending",
                     Message.due_at <= now))
    if not ratelimit.rate(channel):
        return update.execute() == 1
    with database.atomic():
        ratelimit.take_turn()
        row = Message.select(Message.priority).where(Message.id == message_id).first()
        if row is None or ratelimit.limited(now, row.priority, channel) is not None:
            return False
        return update.execute() == 1


CLAIM_BATCH = 20  # messages claimed by one UPDATE


def deliver(ids, now=None):
    """Send the messages ``ids``, the emails over one SMTP connection and the SMS over one
    connection to the gateway, each channel on its own (a gateway that is away does not hold up
    email); returns counts: sent, failed, retry
    (pending again, for later), passed (not pending and due, or claimed by someone else) and
    deferred (left pending because the server could not be reached, or for CLINIC_MAIL_RATE).

    1. Read those that are pending, highest priority first.
    2. Claim them CLAIM_BATCH at a time, just before sending them, with one conditional UPDATE:
       of two deliveries of the same ids, one wins each row. Under CLINIC_MAIL_RATE, one at a
       time (claim()), as the rate counts claims.
    3. Send each claimed one and mark it at once: sent as soon as the server took it (so a
       process killed later in the claim cannot leave it to be sent again), failed with the
       reason (a permanent error), or pending again with a later due_at (a transient error;
       failed with the last error after MAX_ATTEMPTS).
    4. If the server cannot be reached at all, stop: the rest of the claim goes back to pending
       untried, and the rest stay pending, for the sweeper rather than each waiting out the
       same timeout.
    5. If CLINIC_MAIL_RATE is used up (or more urgent mail is due), stop: the rest stay pending,
       due when there is room again (limited), and send_due() is queued for then.

    A process killed mid-claim leaves the claim's unsent rows in ``sending``: the sweeper hands
    them back after stuck_after(). Only the one in flight when it died can go twice (with the
    same Message-ID).
    """
    ids = list(ids)
    counts = dict.fromkeys(("sent", "failed", "retry", "passed", "deferred"), 0)
    pending = _pending(ids)
    for channel, make in SENDERS_BY_CHANNEL.items():
        messages = [message for message in pending if message.channel == channel]
        if messages:
            _deliver_channel(channel, make, messages, now, counts)
    counts["passed"] = len(ids) - sum(counts.values())
    return counts


def _deliver_channel(channel, make, messages, now, counts):
    """deliver()'s steps for the ``messages`` of one channel, over one ``make()`` sender."""
    step = 1 if ratelimit.rate(channel) else CLAIM_BATCH
    with make() as mailer:
        for lo in range(0, len(messages), step):
            at = now or clock.now()  # a long batch claims each chunk at its own time
            chunk = messages[lo:lo + step]
            if step == 1:
                claimed = [chunk[0]] if claim(chunk[0].id, at, channel) else []
                wait = None if claimed else ratelimit.limited(at, chunk[0].priority, channel)
                if wait is not None:  # the channel's rate: the rest waits, pending, till then
                    counts["deferred"] += _hold([m.id for m in messages[lo:]], wait, at)
                    break
            else:
                taken = _claim_many([m.id for m in chunk], at)
                claimed = [m for m in chunk if m.id in taken]
            stopped_at = _send_claimed(mailer, claimed, at, counts)
            if stopped_at is not None:  # the server is away: the rest stay pending
                counts["deferred"] += len(messages) - messages.index(stopped_at) - 1
                break


@huey.task(priority=URGENT)
def send_messages(ids):
    """Deliver these outbox rows now. Returns nothing: Huey would keep every result."""
    deliver(ids)


def _pending(ids):
    """The messages ``ids`` still pending, highest priority first, each with its user's name."""
    return list(Message.select(Message, User.id, User.name)
                .join(User, JOIN.LEFT_OUTER)
                .where(Message.id.in_(ids), Message.status == "pending")
                .order_by(Message.priority.desc(), Message.id))


def _claim_many(ids, at):
    """Claim the pending, due ``ids`` in one conditional UPDATE; returns the ids this call
    claimed (those it changed)."""
    claimed = (Message.update(status="sending", claimed_at=at, attempts=Message.attempts + 1,
                              updated_at=at)
               .where(Message.id.in_(ids), Message.status == "pending", Message.due_at <= at)
               .returning(Message.id))
    return {message_id for (message_id,) in claimed.tuples()}


def _send_claimed(mailer, claimed, at, counts):
    """Build and send the ``claimed`` messages one by one, each marked as soon as the server has
    answered; returns the one at which the server could not be reached, else None. The claimed
    rows not tried (the server is away, or the worker is stopped) go back to pending; the one
    being sent when the worker is stopped stays claimed, as the server may have it, until the
    sweeper hands it back.

    The claim's rows share one claimed_at, and the sweeper takes back a row claimed longer than
    stuck_after() ago. Against a slow server, the last rows of a claim could reach that age
    while still waiting their turn here, and go out twice: once half that time has passed, the
    untried rest goes back to pending instead, for the next claim."""
    began = clock.now()
    deadline = stuck_after() / 2
    tried = 0
    try:
        for message in claimed:
            if clock.now() - began > deadline:
                return None
            tried += 1
            try:
                receipt = mailer.send(message, at)
            except errors.PermanentError as error:
                _mark(message, at, "failed", str(error))
                counts["failed"] += 1
            except errors.TransientError as error:
                counts[_retry_later(message, at, str(error))] += 1
                if isinstance(error, errors.Unavailable):
                    return message
            except Exception as error:  # a bug in building it: retried like a transient error
                log.error("building message %s failed", message.id, exc_info=error)
                counts[_retry_later(message, at, f"internal error: {error!r}")] += 1
            else:
                _mark(message, at, "sent", receipt=receipt)
                counts["sent"] += 1
        return None
    finally:
        _release([message.id for message in claimed[tried:]], at)


def _release(ids, at):
    """Give claimed messages that were not tried back to pending, their attempt not counted."""
    if ids:
        (Message.update(status="pending", attempts=Message.attempts - 1, updated_at=at)
         .where(Message.id.in_(ids), Message.status == "sending", Message.claimed_at == at)
         .execute())


# Senders in other threads mark their messages one at a time: two commits meeting in SQLite
# wait in its busy handler, which sleeps for milliseconds; this lock wakes the next at once.
_marking = threading.Lock()


def _mark(message, at, status, error="", receipt=None):
    # Guarded by the claim: a row the sweeper handed to someone else is theirs to mark.
    with _marking:
        changes = {"status": status, "last_error": error, "updated_at": at,
                   "sent_at": at if status == "sent" else None, **(receipt or {})}
        if status == "sent" and message.kind in compose.SECRET_LINK_KINDS:
            changes.update(text_body="", html_body="")  # its link is nobody else's to read
        (Message.update(changes)
         .where(Message.id == message.id, Message.status == "sending", Message.claimed_at == at)
         .execute())


def _retry_later(message, at, error):
    """Back to pending with a growing delay, or failed once it has had MAX_ATTEMPTS."""
    attempts = message.attempts + 1  # the claim counted this one
    if attempts >= MAX_ATTEMPTS:
        _mark(message, at, "failed", f"gave up after {attempts} attempts: {error}")
        return "failed"
    (Message.update(status="pending", due_at=at + RETRY_DELAYS[attempts - 1], last_error=error,
                    updated_at=at)
     .where(Message.id == message.id, Message.status == "sending", Message.claimed_at == at)
     .execute())
    return "retry"


SENDERS = 2  # SMTP connections a backlog goes out over at once


def deliver_due(at, now, batch, which):
    """Deliver the pending rows due at ``at`` that match ``which``, ``batch`` at a time, highest
    priority first, SENDERS batches at once over a connection each (one under CLINIC_MAIL_RATE):
    while one waits for the server's answer the next is built, and a server with several
    cores takes them side by side. Returns the summed counts of deliver() and how many were
    tried."""
    totals = dict.fromkeys(("tried", "sent", "failed", "retry", "passed", "deferred"), 0)
    senders = 1 if ratelimit.rate("email") or ratelimit.rate("sms") else SENDERS
    while True:
        ids = [row.id for row in Message.select(Message.id)
               .where(Message.status == "pending", Message.due_at <= at, which)
               .order_by(Message.priority.desc(), Message.due_at, Message.id)
               .limit(batch * senders)]
        if not ids:
            break
        done = deferred = 0
        for counts in _deliver_together([ids[lo:lo + batch] for lo in range(0, len(ids), batch)],
                                        now):
            for key, value in counts.items():
                totals[key] += value
            done += counts["sent"] + counts["failed"] + counts["retry"]
            deferred += counts["deferred"]
        totals["tried"] += done
        if deferred or not done:
            break  # the server is away, the rate is used up, or others took the rows
    return totals


def _deliver_together(groups, now):
    """deliver() each group of ids, the first in this thread and each other in a thread of its
    own with its own database connection; returns their counts."""
    if len(groups) == 1:
        return [deliver(groups[0], now)]

    def deliver_apart(ids):
        with db.connection():
            return deliver(ids, now)

    with ThreadPoolExecutor(len(groups) - 1, thread_name_prefix="outbox") as pool:
        others = [pool.submit(deliver_apart, ids) for ids in groups[1:]]
        first = deliver(groups[0], now)
        return [first] + [future.result() for future in others]


def _hold(ids, until, now):
    """Leave the pending ``ids`` for ``until`` (the rate limit); returns how many. send_due() is
    queued for then, so they go as soon as there is room, highest priority first."""
    held = (Message.update(due_at=until, updated_at=now)
            .where(Message.id.in_(ids), Message.status == "pending", Message.due_at < until)
            .execute())
    _wake_at(until)
    return held


_planned = {"at": None}
_planned_lock = threading.Lock()


def forget_wake():
    """Forget the send_due() this process has queued, once its queue was emptied (a test's),
    so the next hold queues one again."""
    with _planned_lock:
        _planned["at"] = None


def _wake_at(when):
    """Queue send_due() for ``when``, unless this process has one queued for no later (that one
    queues the next itself if the limit still bites). Other processes have their own; the
    sweeper is there whatever happens to these."""
    with _planned_lock:
        planned = _planned["at"]
        if planned is not None and clock.now() < planned <= when:
            return
        _planned["at"] = when
    try:
        send_due_messages.schedule(eta=when)
    except Exception:
        log.exception("could not queue the delivery due at %s; the sweeper will do it", when)


def send_due(now=None, batch=BATCH):
    """Deliver the due messages never tried yet, highest priority first, until none is left or
    the rate is used up; returns deliver()'s summed counts with "tried". What the rate limit
    queues for when there is room again; sweep() does the same every minute."""
    at = now or clock.now()
    return deliver_due(at, now, batch, Message.attempts == 0)


@huey.task(priority=URGENT)
def send_due_messages():
    """Deliver the messages that waited for the rate limit. Returns nothing."""
    send_due()
