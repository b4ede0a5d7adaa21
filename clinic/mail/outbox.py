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
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from peewee import JOIN, chunked, fn

from clinic import clock, db, settings
from clinic.db import database
from clinic.errors import NotFound, check
from clinic.jobs.queue import URGENT
from clinic.mail import compose, errors, preferences, sender
from clinic.models import MESSAGE_STATUSES, Message, User
from clinic.settings import Setting
from huey_config import huey

log = logging.getLogger("clinic.mail.outbox")


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
    "no address", so the admin sees what could not be sent.

    An optional kind (reminders, review requests, announcements: clinic/preferences.py) that
    the patient ``user`` said no to is stored as skipped with the reason, and that row is
    returned; one they want carries their one-click unsubscribe link."""
    now = clock.now()
    choice = preferences.choice_of(kind)
    if choice and preferences.opted_out(kind, [user]):
        return skip(key, kind, recipient, preferences.reason(choice), user=user,
                    appointment=appointment, now=now)
    if choice and user is not None:
        context = {**(context or {}), "unsubscribe_url": preferences.unsubscribe_url(user, kind)}
    subject, text, html = compose.render(kind, **(context or {}))
    recipient = (recipient or "").strip()
    status, error = _address_status(recipient)
    due_at = due_at or now
    with database.atomic():
        inserted = Message.insert(
            key=key, kind=kind, recipient=recipient[:254], user=user, appointment=appointment,
            subject=subject[:300], text_body=text, html_body=html,
            attachments=list(attachments), message_id=compose.new_message_id(), status=status,
            last_error=error, priority=priority, due_at=due_at, created_at=now, updated_at=now,
        ).on_conflict_ignore().as_rowcount().execute()
        if not inserted:  # the key was taken: this message exists already
            return None
        message = Message.get(Message.key == key)
    if status == "pending" and due_at <= now:
        _send_after_commit([message.id])
    return message


def _address_status(recipient):
    """``(status, last_error)`` of a new row for ``recipient``: failed when it cannot be sent."""
    if not recipient:
        return "failed", "no address"
    if not compose.valid_address(recipient):
        return "failed", f"invalid address: {compose.clean_header(recipient)!r}"
    return "pending", ""


def skip(key, kind, recipient, reason, user=None, appointment=None, now=None):
    """Record that the message ``key`` will not be sent, and why (a reminder whose moment passed).
    Returns the new row, or None when the key was taken already."""
    now = now or clock.now()
    with database.atomic():
        inserted = Message.insert(
            key=key, kind=kind, recipient=(recipient or "")[:254], user=user,
            appointment=appointment, subject="", message_id=compose.new_message_id(),
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
    Message-ID. Returns False when the message is not failed, or its body was already removed by
    the clean-up (it would go out empty)."""
    now = now or clock.now()
    with database.atomic():
        changed = (Message.update(status="pending", attempts=0, last_error="", due_at=now,
                                  claimed_at=None, updated_at=now)
                   .where(Message.id == message_id, Message.status == "failed",
                          (Message.text_body != "") | (Message.html_body != ""))
                   .execute())
    if changed:
        _send_after_commit([message_id])
    return bool(changed)


SEND_BATCH = 100  # messages one send_messages task delivers over one SMTP connection


def _send_after_commit(ids, priority=None, batch=SEND_BATCH):
    """Queue the delivery of ``ids`` once the transaction that wrote them commits (nothing if it
    rolls back). Every message written in one transaction block goes out in tasks of at most
    ``batch`` ids, each over one SMTP connection: a reminder job writing 5,000 rows queues 50
    tasks, not 5,000 tasks with 5,000 connections."""
    # The innermost transaction block: enqueue() calls this outside its own, so the messages of
    # many enqueue() calls in one of the caller's go out together.
    transaction = database.top_transaction()
    if transaction is None:  # autocommit: the rows are already committed
        _queue_send(ids, priority)
        return
    # A new transaction is a new object: nothing kept on it outlives it, rolled back or not.
    pending = getattr(transaction, "clinic_outbox_pending", None)
    if pending is None:
        pending = transaction.clinic_outbox_pending = {}

        def send():
            transaction.clinic_outbox_pending = None  # a later commit of it starts afresh
            for (task_priority, size), group in pending.items():
                for start in range(0, len(group), size):
                    _queue_send(group[start:start + size], task_priority)

        database.after_commit(send)
    pending.setdefault((priority, batch), []).extend(ids)


def _queue_send(ids, priority=None):
    try:
        if priority is None:
            send_messages(ids)
        else:
            send_messages(ids, priority=priority)
    except Exception:  # the row is committed: the sweeper sends it within a minute
        log.exception("could not queue messages %s; the sweeper will send them", ids)


def claim(message_id, now):
    """Take a pending, due message for sending. True only for the one caller whose conditional
    UPDATE changed the row; everyone else must leave it alone. Under CLINIC_MAIL_RATE, also
    False while ``limited()`` says the message must wait (checked and claimed in one
    transaction, so senders in other threads and processes cannot both take the last place)."""
    update = (Message.update(status="sending", claimed_at=now, attempts=Message.attempts + 1,
                             updated_at=now)
              .where(Message.id == message_id, Message.status == "pending",
                     Message.due_at <= now))
    if not rate():
        return update.execute() == 1
    with database.atomic():
        _serialise_claims()
        row = Message.select(Message.priority).where(Message.id == message_id).first()
        if row is None or limited(now, row.priority) is not None:
            return False
        return update.execute() == 1


CLAIM_BATCH = 20  # messages claimed by one UPDATE


def deliver(ids, now=None):
    """Send the messages ``ids`` over one SMTP connection; returns counts: sent, failed, retry
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
    messages = _pending(ids)
    step = 1 if rate() else CLAIM_BATCH
    with sender.Sender() as mailer:
        for lo in range(0, len(messages), step):
            at = now or clock.now()  # a long batch claims each chunk at its own time
            chunk = messages[lo:lo + step]
            if step == 1:
                claimed = [chunk[0]] if claim(chunk[0].id, at) else []
                wait = None if claimed else limited(at, chunk[0].priority)
                if wait is not None:  # CLINIC_MAIL_RATE: the rest waits, pending, till then
                    counts["deferred"] = _hold([m.id for m in messages[lo:]], wait, at)
                    break
            else:
                taken = _claim_many([m.id for m in chunk], at)
                claimed = [m for m in chunk if m.id in taken]
            stopped_at = _send_claimed(mailer, claimed, at, counts)
            if stopped_at is not None:  # the server is away: the rest stay pending
                counts["deferred"] = len(messages) - messages.index(stopped_at) - 1
                break
    counts["passed"] = len(ids) - sum(counts.values())
    return counts


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
                mailer.send(compose.build(message, now=at))
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
                _mark(message, at, "sent")
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


def _mark(message, at, status, error=""):
    # Guarded by the claim: a row the sweeper handed to someone else is theirs to mark.
    with _marking:
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
    # A dead process leaves at most SENDERS claims (CLAIM_BATCH rows each) per worker here.
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


SENDERS = 2  # SMTP connections a backlog goes out over at once


def _deliver_due(at, now, batch, which):
    """Deliver the pending rows due at ``at`` that match ``which``, ``batch`` at a time, highest
    priority first, SENDERS batches at once over a connection each (one under CLINIC_MAIL_RATE):
    while one waits for the server's answer the next is built, and a server with several
    cores takes them side by side. Returns the summed counts of deliver() and how many were
    tried."""
    totals = dict.fromkeys(("tried", "sent", "failed", "retry", "passed", "deferred"), 0)
    senders = 1 if rate() else SENDERS
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


# -- for the admin's messages page (clinic/views/messages.py) -------------------------------------

LISTED = (Message.id, Message.kind, Message.recipient, Message.user, Message.appointment,
          Message.subject, Message.status, Message.attempts, Message.last_error, Message.due_at,
          Message.sent_at, Message.created_at)  # not the bodies: a page lists 25 of them


def search(status="", kind="", recipient="", day_from="", day_to="", limit=25, offset=0):
    """Messages for the admin's outbox page, newest first, without their bodies. Filters: a
    status, a kind, part of the recipient's address or name, clinic-local days created (both
    included). Raises Invalid (with the field) for a status or a date it does not know.

    Newest first, in an order an index gives, so a page never sorts the table: with a kind by
    creation (the (kind, created_at) index), with a status by when they were last due (the
    (status, due_at) index; for nearly all messages that is when they were made), else by id."""
    errors = {}
    if status and status not in MESSAGE_STATUSES:
        errors["status"] = "Choose a status from the list."
    since, before = clock.days_between(day_from, day_to, errors)
    check(errors)
    query = Message.select(*LISTED)
    if status:
        query = query.where(Message.status == status)
    if kind:
        query = query.where(Message.kind == kind)
    needle = (recipient or "").strip().lower()
    if needle:
        named = User.select(User.id).where(fn.LOWER(User.name).contains(needle))
        query = query.where(fn.LOWER(Message.recipient).contains(needle)
                            | Message.user.in_(named))
    if since:
        query = query.where(Message.created_at >= since)
    if before:
        query = query.where(Message.created_at < before)
    if kind:
        order = (Message.created_at.desc(), Message.id.desc())
    elif status:
        order = (Message.due_at.desc(), Message.id.desc())
    else:
        order = (Message.id.desc(),)
    return query.order_by(*order).limit(limit).offset(offset)


def kinds():
    """Every kind of message in the outbox, for the page's filter (read from the kind index)."""
    return [row[0] for row in Message.select(Message.kind).distinct()
            .order_by(Message.kind).tuples()]


def message_for(message_id):
    """The message with this id, or NotFound."""
    message = Message.get_or_none(Message.id == message_id)
    if message is None:
        raise NotFound("No such message.")
    return message


def headers(message):
    """The message's headers as ``[(name, value)]``, as delivery writes them (dated when it was
    sent, or is due). A message that cannot be built (no valid address, an attachment gone)
    shows what the row says."""
    try:
        built = compose.build(message, now=message.sent_at or message.due_at)
    except errors.PermanentError:
        return [("From", str(compose.from_address())), ("To", message.recipient),
                ("Subject", message.subject), ("Message-ID", message.message_id)]
    return [(name, str(value)) for name, value in built.items()
            if name not in ("MIME-Version", "Content-Type", "Content-Transfer-Encoding")]


# -- many at once (announcements) -----------------------------------------------------------------


INSERT_BATCH = 500  # rows one INSERT writes: well within SQLite's limit of bound values


def enqueue_many(kind, items, priority=0, task_priority=None, now=None, batch=None):
    """Store many emails of ``kind`` in ONE transaction (an announcement writes 500 at a time,
    a reminder run all it found due); ``items`` are dicts with ``key``, ``recipient``,
    ``context``, ``user`` (an id) and optionally ``appointment`` (an id) and ``reason``. Each is
    treated as enqueue() treats one: a key taken already is left alone (nothing is sent twice),
    a patient who said no to the kind gets a skipped row with the reason, a missing address a
    failed row; an item with a ``reason`` is stored as skipped with it, as skip() does.
    Delivery of the new pending rows is queued after the commit as send_messages tasks of up to
    ``batch`` ids (default: one task for them all), with ``task_priority``. Returns counts:
    queued, skipped, failed, existing."""
    now = now or clock.now()
    items = list(items)
    choice = preferences.choice_of(kind)
    keys = [item["key"] for item in items]
    taken = {key for (key,) in Message.select(Message.key).where(Message.key.in_(keys)).tuples()}
    fresh = [item for item in items if item["key"] not in taken]
    refused = preferences.opted_out(kind, [item.get("user") for item in fresh
                                           if not item.get("reason")])
    s = settings.get()
    rows = []
    for item in fresh:  # rendered before the transaction: it holds the write lock meanwhile
        user, recipient = item.get("user"), (item.get("recipient") or "").strip()
        row = {"key": item["key"], "kind": kind, "recipient": recipient[:254], "user": user,
               "appointment": item.get("appointment"), "message_id": compose.new_message_id(s),
               "priority": priority, "due_at": now, "created_at": now, "updated_at": now}
        if item.get("reason") or (user is not None and user in refused):
            row.update(subject="", text_body="", html_body="", status="skipped",
                       last_error=item.get("reason") or preferences.reason(choice))
        else:
            context = dict(item.get("context") or {})
            if choice and user is not None:
                context["unsubscribe_url"] = preferences.unsubscribe_url(user, kind)
            subject, text, html = compose.render(kind, **context)
            status, error = _address_status(recipient)
            row.update(subject=subject[:300], text_body=text, html_body=html, status=status,
                       last_error=error)
        rows.append(row)
    counts = {"queued": 0, "skipped": 0, "failed": 0, "existing": len(taken)}
    with database.atomic():
        inserted = []
        for some in chunked(rows, INSERT_BATCH):
            # RETURNING names only the rows inserted: a key someone took meanwhile is not ours.
            inserted += (Message.insert_many(some).on_conflict_ignore()
                         .returning(Message.id, Message.key).tuples().execute())
        status = {row["key"]: row["status"] for row in rows}
        counts["existing"] += len(rows) - len(inserted)
        pending = []
        for message_id, key in sorted(inserted):
            counts[{"pending": "queued"}.get(status[key], status[key])] += 1
            if status[key] == "pending":
                pending.append(message_id)
        if pending:
            _send_after_commit(pending, task_priority, batch=batch or len(pending))
    return counts


# -- the sending rate (CLINIC_MAIL_RATE) -----------------------------------------------------------
# A sliding minute counted from the outbox's own claim times (a sent message's sent_at is its
# claim time), so it holds across threads, processes and restarts. A message over the limit is
# not failed: it stays pending with a later due_at, and send_due() is queued for that moment.
# While the limit bites, mail of higher priority (confirmations, cancellations, reminders) that
# is due goes before bulk mail (announcements, priority below 0).

WINDOW = timedelta(minutes=1)
PAUSE = timedelta(seconds=2)  # how long bulk mail waits while more urgent mail is due
_RATE_LOCK = 7_400_117  # PostgreSQL advisory lock: one claimer at a time under a rate


def rate():
    """CLINIC_MAIL_RATE: the most messages sent in any minute; 0 for no limit."""
    return settings.get().values.get("mail_rate") or 0


def limited(now, priority=0):
    """None when a message of ``priority`` may be sent at ``now``; else when to try again:

    1. The last minute's claims (every attempt counts: the provider counts them too) have used
       the rate: again when the oldest of the latest ``rate`` claims leaves the minute.
    2. A message of higher priority that was never tried is due: it goes first, and this one
       waits PAUSE (the sender of that message, or send_due(), takes the place meanwhile).
    """
    limit = rate()
    if not limit:
        return None
    latest = (Message.select(Message.claimed_at)
              .where(Message.claimed_at > now - WINDOW)
              .order_by(Message.claimed_at.desc())
              .offset(limit - 1).limit(1).first())
    if latest is not None:
        return max(latest.claimed_at + WINDOW, now)
    urgent = (Message.select(Message.id)
              .where(Message.status == "pending", Message.due_at <= now, Message.attempts == 0,
                     Message.priority > priority)
              .exists())
    return now + PAUSE if urgent else None


def _serialise_claims():
    # SQLite: the transaction began IMMEDIATE, so claimers already take turns. PostgreSQL reads
    # a snapshot per statement: two claimers could each count a free place and both take it.
    if db.is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_RATE_LOCK,))


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
    return _deliver_due(at, now, batch, Message.attempts == 0)


# -- the tasks -------------------------------------------------------------------------------------
# Delivery is queued by enqueue() once the row is committed; sweep() (an interval job: every
# minute) delivers whatever a lost task or a retry leaves pending. Under CLINIC_MAIL_RATE,
# send_due_messages is queued for the moment there is room again.


@huey.task(priority=URGENT)
def send_messages(ids):
    """Deliver these outbox rows now. Returns nothing: Huey would keep every result."""
    deliver(ids)


@huey.task(priority=URGENT)
def send_due_messages():
    """Deliver the messages that waited for the rate limit. Returns nothing."""
    send_due()
