"""The outbox: every email is a row in ``message`` before anything tries to send it, so a crash, a
restart or a lost queue task loses nothing, and the row's unique key makes a job that runs twice
send nothing twice.

A message's life::

    pending --claim--> sending --> sent
       ^                  |-----> failed    permanent (SMTP 5xx, no address), or 3 attempts
       |____ later _______|                 transient (refused, timeout, SMTP 4xx)
    pending --withdraw--> skipped           its appointment was cancelled or moved

``enqueue()`` renders the email and writes the row; once the surrounding transaction commits it
puts a ``send_messages`` task on the queue, so a booking never waits for SMTP and a rolled-back
booking sends nothing. Huey drops a task that was running when the process died (DESIGN.md), so
``sweep()``, run every minute, delivers what was never tried (its task was lost, or it was due
later) and rows that a dead process left in ``sending``. A message whose attempt failed for a
passing reason waits for ``retry_failed()``, run every hour: three attempts, growing delays.

At the SMTP server itself delivery is at least once: a process killed after the server took a
message but before the row says ``sent`` sends it again when the sweeper hands it back. The second
copy has the same Message-ID, which lets mail systems recognise it.
"""

import logging
from datetime import timedelta

from peewee import JOIN

from clinic import clock, mail, settings
from clinic.db import database
from clinic.models import Message, User

log = logging.getLogger("clinic.outbox")

MAX_ATTEMPTS = 3
RETRY_DELAYS = (timedelta(minutes=10), timedelta(hours=3))  # after the 1st and the 2nd attempt
BATCH = 100


def stuck_after():
    """How long a row may stay in ``sending`` before the sweeper takes its sender for dead: far
    longer than one send can take, each of whose steps is bounded by the SMTP timeout."""
    return max(timedelta(minutes=10), 20 * settings.get().smtp_timeout)


def enqueue(kind, key, recipient, context=None, user=None, appointment=None, priority=0,
            due_at=None, attachments=()):
    """Render the email ``kind`` now and store it under the unique ``key``; returns the new
    Message, or None when a message with that key exists already (it is not sent again).

    Delivery is queued after the surrounding transaction commits (nothing if it rolls back); a
    message due later is left to the sweeper. With no ``recipient`` the row is stored as failed,
    "no address", so the admin sees what could not be sent."""
    now = clock.now()
    subject, text, html = mail.render(kind, **(context or {}))
    recipient = (recipient or "").strip()
    status, error = "pending", ""
    if not recipient:
        status, error = "failed", "no address"
    elif not mail.valid_address(recipient):
        status, error = "failed", f"invalid address: {mail.clean_header(recipient)!r}"
    due_at = due_at or now
    with database.atomic():
        inserted = Message.insert(
            key=key, kind=kind, recipient=recipient[:254], user=user, appointment=appointment,
            subject=subject[:300], text_body=text, html_body=html,
            attachments=list(attachments), message_id=mail.new_message_id(), status=status,
            last_error=error, priority=priority, due_at=due_at, created_at=now, updated_at=now,
        ).on_conflict_ignore().as_rowcount().execute()
        if not inserted:  # the key was taken: this message exists already
            return None
        message = Message.get(Message.key == key)
        if status == "pending" and due_at <= now:
            _send_after_commit([message.id])
    return message


def skip(key, kind, recipient, reason, user=None, appointment=None, now=None):
    """Record that the message ``key`` will not be sent, and why (a reminder whose moment passed).
    Returns the new row, or None when the key was taken already."""
    now = now or clock.now()
    with database.atomic():
        inserted = Message.insert(
            key=key, kind=kind, recipient=(recipient or "")[:254], user=user,
            appointment=appointment, subject="", message_id=mail.new_message_id(),
            status="skipped", last_error=reason, due_at=now, created_at=now, updated_at=now,
        ).on_conflict_ignore().as_rowcount().execute()
        return Message.get(Message.key == key) if inserted else None


def withdraw(appointment_id, kinds, reason, now=None):
    """Skip the messages of ``kinds`` about an appointment that are still pending (it was
    cancelled or moved); returns how many. One already being sent is past stopping."""
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    now = now or clock.now()
    return (Message.update(status="skipped", last_error=reason, updated_at=now)
            .where(Message.appointment == appointment_id, Message.kind.in_(kinds),
                   Message.status == "pending")
            .execute())


def resend(message_id, now=None):
    """Put a failed message back to pending with its attempts reset and queue it; it keeps its
    Message-ID. Returns False when the message is not failed."""
    now = now or clock.now()
    with database.atomic():
        changed = (Message.update(status="pending", attempts=0, last_error="", due_at=now,
                                  claimed_at=None, updated_at=now)
                   .where(Message.id == message_id, Message.status == "failed")
                   .execute())
        if changed:
            _send_after_commit([message_id])
    return bool(changed)


def _send_after_commit(ids):
    def send():
        from clinic import tasks  # tasks imports this module

        try:
            tasks.send_messages(ids)
        except Exception:  # the row is committed: the sweeper sends it within a minute
            log.exception("could not queue messages %s; the sweeper will send them", ids)

    database.after_commit(send)


def claim(message_id, now):
    """Take a pending, due message for sending. True only for the one caller whose conditional
    UPDATE changed the row; everyone else must leave it alone."""
    return (Message.update(status="sending", claimed_at=now, attempts=Message.attempts + 1,
                           updated_at=now)
            .where(Message.id == message_id, Message.status == "pending", Message.due_at <= now)
            .execute()) == 1


def deliver(ids, now=None):
    """Send the messages ``ids`` over one SMTP connection; returns counts: sent, failed, retry
    (pending again, for later), passed (not pending and due, or claimed by someone else) and
    deferred (left pending because the server could not be reached).

    1. Read those that are pending, highest priority first.
    2. Claim each just before sending it: of two deliveries of the same ids, one wins each row.
    3. Send, then mark it sent, failed with the reason (a permanent error), or pending again with
       a later due_at (a transient error; failed with the last error after MAX_ATTEMPTS).
    4. If the server cannot be reached at all, stop: the rest stay pending for the sweeper rather
       than each waiting out the same timeout.
    """
    ids = list(ids)
    counts = dict.fromkeys(("sent", "failed", "retry", "passed", "deferred"), 0)
    messages = list(Message.select(Message, User)
                    .join(User, JOIN.LEFT_OUTER, on=(Message.user == User.id))
                    .where(Message.id.in_(ids), Message.status == "pending")
                    .order_by(Message.priority.desc(), Message.id))
    with mail.Sender() as sender:
        for done, message in enumerate(messages):
            at = now or clock.now()  # a long batch claims each row at its own time
            if not claim(message.id, at):
                continue
            try:
                sender.send(mail.build(message, now=at))
            except mail.PermanentError as exc:
                _mark(message, at, "failed", str(exc))
                counts["failed"] += 1
            except mail.TransientError as exc:
                counts[_retry_later(message, at, str(exc))] += 1
                if isinstance(exc, mail.Unavailable):
                    counts["deferred"] = len(messages) - done - 1
                    break
            except Exception as exc:  # a bug: retried like a transient error, so never stuck
                log.exception("sending message %s failed", message.id)
                counts[_retry_later(message, at, f"internal error: {exc!r}")] += 1
            else:
                _mark(message, at, "sent")
                counts["sent"] += 1
    counts["passed"] = len(ids) - sum(counts.values())
    return counts


def _mark(message, at, status, error=""):
    # Guarded by the claim: a row the sweeper handed to someone else is theirs to mark.
    (Message.update(status=status, last_error=error, updated_at=at,
                    sent_at=at if status == "sent" else None)
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


def sweep(now=None, batch=BATCH):
    """Deliver what the queue did not; returns how many messages it tried to send. Run it every
    minute.

    1. Rows in ``sending`` for longer than stuck_after() go back to pending: the process that
       claimed them died mid-send. They are delivered in this sweep, though their claim counted
       an attempt (so a message that kills the process cannot loop for ever).
    2. Pending rows that are due and were never attempted (their task was lost, or they were due
       later) are delivered in batches of ``batch``, highest priority first, until none is left.
       Rows waiting after a transient failure are retry_failed()'s, on their own slower clock.
       deliver() claims each row, so sweeps that overlap each other or a send_messages task send
       every message once, and a message already sent is never picked up again.
    """
    at = now or clock.now()
    stuck = (Message.status == "sending") & (
        Message.claimed_at.is_null() | (Message.claimed_at < at - stuck_after()))
    # Claims are taken one message at a time, so a dead process leaves one row per worker here.
    recovered = [row.id for row in Message.select(Message.id).where(stuck)]
    if recovered:
        (Message.update(status="pending", updated_at=at)
         .where(Message.id.in_(recovered), stuck).execute())
    never_tried = Message.attempts == 0
    which = (never_tried | Message.id.in_(recovered)) if recovered else never_tried
    return _deliver_due(at, now, batch, which)["tried"]


def retry_failed(now=None, batch=BATCH):
    """Try again the due messages whose earlier attempt failed for a passing reason (connection
    refused, timeout, SMTP 4xx); run it every hour. Returns counts: tried, sent, failed (a 5xx
    now, or the last of MAX_ATTEMPTS), retry (pending again, later) and deferred.

    Each attempt's failure set a later due_at (RETRY_DELAYS: 10 minutes, then 3 hours), so with
    an hourly run the three attempts of a message fall within about 5 hours, well inside a day.
    Batches of ``batch`` rows, each over one SMTP connection, until none is due; stops when the
    server cannot be reached at all."""
    at = now or clock.now()
    counts = _deliver_due(at, now, batch, Message.attempts > 0)
    return {key: counts[key] for key in ("tried", "sent", "failed", "retry", "deferred")}


def _deliver_due(at, now, batch, which):
    """Deliver the pending rows due at ``at`` that match ``which``, ``batch`` at a time, highest
    priority first; returns the summed counts of deliver() and how many were tried."""
    totals = dict.fromkeys(("tried", "sent", "failed", "retry", "passed", "deferred"), 0)
    while True:
        ids = [row.id for row in Message.select(Message.id)
               .where(Message.status == "pending", Message.due_at <= at, which)
               .order_by(Message.priority.desc(), Message.due_at, Message.id)
               .limit(batch)]
        if not ids:
            break
        counts = deliver(ids, now)
        for key, value in counts.items():
            totals[key] += value
        done = counts["sent"] + counts["failed"] + counts["retry"]
        totals["tried"] += done
        if counts["deferred"] or not done:  # the server is away, or others took the rows
            break
    return totals
