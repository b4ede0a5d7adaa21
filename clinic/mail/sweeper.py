"""What the queue did not deliver: the minute sweep (the ``outbox-sweep`` job) and the hourly
retry of passing failures (``retry-failed``).

Huey drops a task that was running when its process died (docs/design.md), so the sweep
delivers the rows never tried (their task was lost, or they were due later) and hands back rows
a dead process left in ``sending``. A row whose attempt failed for a passing reason waits for
the retry, on its own slower clock.
"""

from clinic import clock
from clinic.mail import delivery
from clinic.mail.delivery import BATCH
from clinic.models import Message


def sweep(now=None, batch=BATCH):
    """Deliver what the queue did not; returns how many messages it tried to send. Run it every
    minute.

    1. Rows in ``sending`` for longer than delivery.stuck_after() go back to pending: the
       process that claimed them died mid-send. They are delivered in this sweep, though their
       claim counted an attempt (so a message that kills the process cannot loop for ever).
    2. Pending rows that are due and were never attempted (their task was lost, or they were due
       later) are delivered in batches of ``batch``, highest priority first, until none is left.
       Rows waiting after a transient failure are retry_failed()'s, on their own slower clock.
       delivery.deliver() claims each row, so sweeps that overlap each other or a
       send_messages task send every message once, and a message already sent is never picked
       up again.
    """
    at = now or clock.now()
    stuck = (Message.status == "sending") & (
        Message.claimed_at.is_null() | (Message.claimed_at < at - delivery.stuck_after()))
    # A dead process leaves at most SENDERS claims (CLAIM_BATCH rows each) per worker here.
    recovered = [row.id for row in Message.select(Message.id).where(stuck)]
    if recovered:
        (Message.update(status="pending", updated_at=at)
         .where(Message.id.in_(recovered), stuck).execute())
    never_tried = Message.attempts == 0
    which = (never_tried | Message.id.in_(recovered)) if recovered else never_tried
    return delivery.deliver_due(at, now, batch, which)["tried"]


def retry_failed(now=None, batch=BATCH):
    """Try again the due messages whose earlier attempt failed for a passing reason (connection
    refused, timeout, SMTP 4xx); run it every hour. Returns counts: tried, sent, failed (a 5xx
    now, or the last of MAX_ATTEMPTS), retry (pending again, later) and deferred.

    Each attempt's failure set a later due_at (RETRY_DELAYS: 10 minutes, then 3 hours), so with
    an hourly run the three attempts of a message fall within about 5 hours, well inside a day.
    Batches of ``batch`` rows, each over one SMTP connection, until none is due; stops when the
    server cannot be reached at all."""
    at = now or clock.now()
    counts = delivery.deliver_due(at, now, batch, Message.attempts > 0)
    return {key: counts[key] for key in ("tried", "sent", "failed", "retry", "deferred")}
