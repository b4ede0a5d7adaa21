"""The outbox: every email and SMS is a row in ``message`` before anything tries to send it, so a
crash, a restart or a lost queue task loses nothing, and the row's unique key makes a job that
runs twice send nothing twice. This module writes the rows and queues their delivery.

A kind that has an SMS (clinic/mail/sms.py) goes by the channels the patient chose
(``channels_for``): the first channel's row takes the message's key, another's the key with
``:<channel>`` after it, so a job that looks for the key finds it whichever way it went.

A message's life::

    pending --claim--> sending --> sent
       ^                  |-----> failed    permanent (SMTP 5xx, no address), or 3 attempts
       |____ later _______|                 transient (refused, timeout, SMTP 4xx)
    pending --withdraw--> skipped           its appointment was cancelled or moved

``enqueue()`` renders the email and writes the row; once the surrounding transaction commits it
puts a ``send_messages`` task on the queue (clinic/mail/delivery.py: claim, send, mark), so a
booking never waits for SMTP and a rolled-back booking sends nothing. Huey drops a task that was
running when the process died (docs/design.md), so the sweeper (clinic/mail/sweeper.py), run
every minute, delivers what was never tried and rows that a dead process left in ``sending``; a
message whose attempt failed for a passing reason waits for its hourly retry: three attempts,
growing delays. CLINIC_MAIL_RATE is clinic/mail/ratelimit.py's; the admin's Messages page reads
the rows through clinic/mail/lookup.py.

At the SMTP server itself delivery is at least once: a process killed after the server took a
message but before the row says ``sent`` sends it again when the sweeper hands it back. The second
copy has the same Message-ID, which lets mail systems recognise it.
"""

import logging

from peewee import chunked

from clinic import clock, settings
from clinic.db import database
from clinic.mail import compose, preferences, sms
from clinic.mail.delivery import send_messages
from clinic.models import Message, Patient, User

log = logging.getLogger("clinic.mail.outbox")

NO_EMAIL = "the patient has no email address"


# -- channels -------------------------------------------------------------------------------------


def channels_for(user):
    """The channels a message to ``user`` (a User, an id, or None) goes by, in order: ("email",),
    ("sms",) or ("email", "sms"), as the patient chose; email for anyone else, and for a
    patient whose phone is gone."""
    return channels_of([user]).get(getattr(user, "id", user), (("email",), ""))[0]


def channels_of(users):
    """``{user id: (channels, phone)}`` for the patients among ``users`` (Users or ids) who
    chose SMS: one query. Everyone left out goes by email only."""
    ids = {getattr(u, "id", u) for u in users if u is not None}
    if not ids:
        return {}
    found = {}
    for user_id, channel, phone in (Patient.select(Patient.user, Patient.channel, Patient.phone)
                                    .where(Patient.user.in_(ids), Patient.channel != "email",
                                           Patient.phone != "").tuples()):
        found[user_id] = (("sms",) if channel == "sms" else ("email", "sms"), sms.e164(phone))
    return found


def _routes(kind, key, user):
    """``[(channel, key, phone)]``: where a message of ``kind`` under ``key`` goes (as
    _by_channel spreads many)."""
    chosen, phone = channels_of([user]).get(getattr(user, "id", user), (("email",), "")) \
        if sms.has_text(kind) else (("email",), "")
    return [(channel, key if n == 0 else f"{key}:{channel}", phone)
            for n, channel in enumerate(chosen)]


def enqueue(kind, key, recipient, context=None, user=None, appointment=None, priority=0,
            due_at=None, attachments=()):
    """Write the message ``kind`` under the unique ``key`` by each channel the patient ``user``
    chose (channels_for: the email to ``recipient``, the SMS to their phone); returns the first
    channel's new Message, or None when a message with that key exists already (it is not sent
    again)."""
    first = None
    for n, (channel, row_key, phone) in enumerate(_routes(kind, key, user)):
        if channel == "sms":
            message = _enqueue_sms(kind, row_key, phone, context, user, appointment, priority,
                                   due_at)
        else:
            message = _enqueue_email(kind, row_key, recipient, context, user, appointment,
                                     priority, due_at, attachments)
        first = message if n == 0 else first
    return first


def _enqueue_sms(kind, key, phone, context, user, appointment, priority, due_at):
    """The SMS of ``kind`` to ``phone``: skipped with the reason when the patient said no to
    the kind or the number replied STOP."""
    now = clock.now()
    choice = preferences.choice_of(kind)
    if choice and preferences.opted_out(kind, [user]):
        return skip(key, kind, phone, preferences.reason(choice), user=user,
                    appointment=appointment, now=now, channel="sms")
    if sms.opted_out([phone]):
        return skip(key, kind, phone, sms.stop_reason(phone), user=user,
                    appointment=appointment, now=now, channel="sms")
    text, segments = sms.render(kind, context, getattr(appointment, "id", appointment),
                                getattr(user, "id", user),
                                language=languages_of([user]).get(_id(user)))
    due_at = due_at or now
    with database.atomic():
        inserted = Message.insert(
            key=key, kind=kind, channel="sms", recipient=phone, user=user,
            appointment=appointment, subject="", text_body=text, segments=segments,
            message_id=compose.new_message_id(), status="pending", priority=priority,
            due_at=due_at, created_at=now, updated_at=now,
        ).on_conflict_ignore().as_rowcount().execute()
        if not inserted:
            return None
        message = Message.get(Message.key == key)
    if due_at <= now:
        _send_after_commit([message.id])
    return message


def _enqueue_email(kind, key, recipient, context=None, user=None, appointment=None, priority=0,
                   due_at=None, attachments=()):
    """Render the email ``kind`` now and store it under the unique ``key``; returns the new
    Message, or None when a message with that key exists already (it is not sent again).

    Delivery is queued after the surrounding transaction commits (nothing if it rolls back); a
    message due later is left to the sweeper. With an empty ``recipient`` the row is stored as
    failed, "no address", so the admin sees what could not be sent; ``None`` (a user whose email
    is NULL: a patient without an address) is stored as skipped, NO_EMAIL.

    An optional kind (reminders, review requests, announcements: clinic/preferences.py) that
    the patient ``user`` said no to is stored as skipped with the reason, and that row is
    returned; one they want carries their one-click unsubscribe link."""
    now = clock.now()
    if recipient is None:  # the user has no address (registered at the desk without one)
        return skip(key, kind, "", NO_EMAIL, user=user, appointment=appointment, now=now)
    choice = preferences.choice_of(kind)
    if choice and preferences.opted_out(kind, [user]):
        return skip(key, kind, recipient, preferences.reason(choice), user=user,
                    appointment=appointment, now=now)
    if choice and user is not None:
        context = {**(context or {}), "unsubscribe_url": preferences.unsubscribe_url(user, kind)}
    subject, text, html = compose.render(kind, language=languages_of([user]).get(_id(user)),
                                         **(context or {}))
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


def _id(user):
    return user.id if isinstance(user, User) else user


def languages_of(users):
    """``{user id: language}`` of the users (User rows or ids; None left out): each email is
    written in its recipient's language."""
    known = {user.id: user.language for user in users if isinstance(user, User)}
    ids = [user for user in users if user is not None and not isinstance(user, User)]
    if ids:
        known.update(User.select(User.id, User.language).where(User.id.in_(ids)).tuples())
    return known


def _address_status(recipient):
    """``(status, last_error)`` of a new row for ``recipient``: failed when it cannot be sent."""
    if not recipient:
        return "failed", "no address"
    if not compose.valid_address(recipient):
        return "failed", f"invalid address: {compose.clean_header(recipient)!r}"
    return "pending", ""


def skip(key, kind, recipient, reason, user=None, appointment=None, now=None, channel="email"):
    """Record that the message ``key`` will not be sent, and why (a reminder whose moment passed).
    Returns the new row, or None when the key was taken already."""
    now = now or clock.now()
    with database.atomic():
        inserted = Message.insert(
            key=key, kind=kind, channel=channel, recipient=(recipient or "")[:254], user=user,
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
                                  claimed_at=None, updated_at=now, gateway_id="", delivery="")
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
    items = _by_channel(kind, list(items))
    choice = preferences.choice_of(kind)
    keys = [item["key"] for item in items]
    taken = {key for (key,) in Message.select(Message.key).where(Message.key.in_(keys)).tuples()}
    fresh = [item for item in items if item["key"] not in taken]
    refused = preferences.opted_out(kind, [item.get("user") for item in fresh
                                           if not item.get("reason")])
    stopped = sms.opted_out([item["recipient"] for item in fresh if item["channel"] == "sms"])
    s = settings.get()
    language = languages_of([item.get("user") for item in fresh])
    rows = []
    for item in fresh:  # rendered before the transaction: it holds the write lock meanwhile
        user, recipient = item.get("user"), (item.get("recipient") or "").strip()
        channel = item["channel"]
        row = {"key": item["key"], "kind": kind, "channel": channel, "segments": 0,
               "recipient": recipient[:254], "user": user,
               "appointment": item.get("appointment"), "message_id": compose.new_message_id(s),
               "priority": priority, "due_at": now, "created_at": now, "updated_at": now}
        reason = item.get("reason") or (preferences.reason(choice)
                                        if user is not None and user in refused else None)
        if not reason and item.get("recipient", "") is None:
            reason = NO_EMAIL  # a patient the desk registered without an address
        if not reason and channel == "sms" and recipient in stopped:
            reason = sms.stop_reason(recipient)
        if reason:
            row.update(subject="", text_body="", html_body="", status="skipped",
                       last_error=reason)
        elif channel == "sms":
            text, segments = sms.render(kind, item.get("context"), item.get("appointment"), user,
                                        language=language.get(user))
            row.update(subject="", text_body=text, html_body="", segments=segments,
                       status="pending", last_error="")
        else:
            context = dict(item.get("context") or {})
            if choice and user is not None:
                context["unsubscribe_url"] = preferences.unsubscribe_url(user, kind)
            subject, text, html = compose.render(kind, language=language.get(user), **context)
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


def _by_channel(kind, items):
    """``items`` with one item per channel each patient chose (its ``channel``, key and
    recipient set): an SMS item goes to the patient's phone under the key ``_routes`` gives."""
    if not sms.has_text(kind):
        return [{**item, "channel": "email"} for item in items]
    chosen = channels_of([item.get("user") for item in items])
    spread = []
    for item in items:
        channels, phone = chosen.get(item.get("user"), (("email",), ""))
        for n, channel in enumerate(channels):
            spread.append({**item, "channel": channel,
                           "key": item["key"] if n == 0 else f"{item['key']}:{channel}",
                           "recipient": phone if channel == "sms" else item.get("recipient")})
    return spread

