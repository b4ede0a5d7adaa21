"""The outbox (clinic/mail/): every email a row first, delivered once, retried when it may
pass, failed with the reason when it cannot, against a real SMTP server and a real database."""

import re
import smtplib
import threading
from datetime import timedelta

import pytest
import time_machine

from clinic import accounts, clock, db, settings
from clinic.mail import compose, delivery, outbox, sender, sweeper
from clinic.models import Appointment, Message, User
from huey_config import huey
from tests.conftest import slot
from tests.test_mail import free_port


def add(key, recipient="alice@example.com", **fields):
    return outbox.enqueue("test", key, recipient, **fields)


def status(message):
    return Message.get_by_id(message.id).status


def reload(message):
    return Message.get_by_id(message.id)


def queued():
    """The ids of the send_messages tasks waiting in the queue, in order."""
    return [task.args[0] for task in huey.pending()]


def in_threads(n, work):
    """Run ``work()`` in ``n`` threads released together; returns their results."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = work()
        finally:
            db.database.close()  # each thread had its own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# -- enqueue --------------------------------------------------------------------------------------


def test_enqueue_stores_the_rendered_email_and_queues_it_after_commit(app):
    with db.database.atomic():
        message = add("test:1", context={"name": "Alice <3"})
        assert queued() == []  # not before the commit
    assert queued() == [[message.id]]
    message = reload(message)
    assert message.status == "pending" and message.attempts == 0
    assert message.subject == "Test email from Test Clinic"
    assert "Hello Alice <3," in message.text_body
    assert "Hello Alice &lt;3," in message.html_body
    assert re.fullmatch(r"<[0-9a-f]{32}@localhost>", message.message_id)


def test_a_rolled_back_enqueue_leaves_nothing_to_send(smtp_settings, smtp):
    with db.database.atomic() as transaction:
        add("test:1")
        transaction.rollback()
    assert Message.select().count() == 0
    assert queued() == []
    assert sweeper.sweep() == 0
    assert smtp.messages == []


def test_the_queued_task_delivers_the_message(smtp_settings, smtp):
    message = add("test:1")
    task = huey.dequeue()  # what the consumer would do, without one
    assert task.name.endswith("send_messages")
    huey.execute(task)
    assert reload(message).status == "sent"
    assert smtp.message_ids() == [message.message_id]
    assert smtp.messages[0].rcpt_tos == ["alice@example.com"]


def test_one_key_is_one_row_and_one_email(smtp_settings, smtp):
    first = add("reminder:7:24h")
    assert add("reminder:7:24h") is None
    assert Message.select().count() == 1
    sweeper.sweep()
    assert add("reminder:7:24h") is None  # also once it has been sent
    sweeper.sweep()
    assert smtp.message_ids() == [first.message_id]


def test_a_user_without_an_address_gets_a_skipped_row_and_no_email(smtp_settings, smtp):
    """None is a patient registered at the desk without email: not a failure to look into."""
    message = add("test:1", recipient=None)
    assert (message.status, message.last_error) == ("skipped", outbox.NO_EMAIL)
    assert queued() == []
    assert sweeper.sweep() == 0
    assert smtp.messages == []


def test_many_at_once_skip_the_users_without_an_address(smtp_settings, smtp):
    counts = outbox.enqueue_many("test", [
        {"key": "test:1", "recipient": None, "context": {}},
        {"key": "test:2", "recipient": "bob@example.com", "context": {}}])
    assert (counts["queued"], counts["skipped"]) == (1, 1)
    skipped = Message.get(Message.key == "test:1")
    assert (skipped.status, skipped.last_error) == ("skipped", outbox.NO_EMAIL)


@pytest.mark.parametrize("recipient, reason", [
    ("", "no address"),
    ("alice@example.com\r\nBcc: evil@example.com", "invalid address")])
def test_without_a_usable_address_the_message_fails_at_once(smtp_settings, smtp, recipient,
                                                            reason):
    message = add("test:1", recipient=recipient)
    assert message.status == "failed" and message.last_error.startswith(reason)
    assert queued() == []
    assert sweeper.sweep() == 0
    assert smtp.messages == []


# -- deliver --------------------------------------------------------------------------------------


def test_delivering_no_ids_sends_nothing_on_every_backend(smtp_settings, smtp):
    """PostgreSQL refuses ``IN ()``: an empty list of ids must still be a query it takes (peewee
    writes it as 0 = 1), as the send_messages task runs it."""
    nothing = {"sent": 0, "failed": 0, "retry": 0, "passed": 0, "deferred": 0}
    assert delivery.deliver([]) == nothing
    delivery.send_messages.call_local([])  # the task's own function, as a worker runs it
    assert outbox.enqueue_many("test", []) == {"queued": 0, "skipped": 0, "failed": 0,
                                               "existing": 0}
    assert queued() == [] and smtp.messages == []


def test_a_message_holding_a_sign_in_link_keeps_no_body_once_sent(smtp_settings, smtp, alice):
    """A reset or email-change link is for its recipient alone: once the server has the
    message, the row keeps what it was (subject, recipient, status, times), not the link."""
    reset = accounts.request_reset(alice.email, "127.0.0.1")
    accounts.update_profile(alice, {"email": "alice.new@example.com"})
    change = Message.get(Message.kind == "email_change")
    confirmation = add("test:1")
    assert {m.kind for m in map(reload, (reset, change))} == set(compose.SECRET_LINK_KINDS)
    assert "/reset/" in reload(reset).text_body  # kept while it waits to be sent
    assert delivery.deliver([reset.id, change.id, confirmation.id])["sent"] == 3
    for message in (reset, change):
        sent = reload(message)
        assert (sent.text_body, sent.html_body) == ("", "")
        assert sent.status == "sent" and sent.sent_at is not None
        assert (sent.subject, sent.recipient) == (message.subject, message.recipient)
    assert reload(confirmation).text_body == confirmation.text_body  # other kinds keep theirs
    links = [r.message.get_body(("plain",)).get_content() for r in smtp.messages[:2]]
    assert any("/reset/" in text for text in links)  # the recipient got it whole
    assert any("/account/email/" in text for text in links)


def test_a_batch_is_sent_over_one_connection(smtp_settings, smtp):
    messages = [add(f"test:{n}") for n in range(5)]
    now = clock.now()
    counts = delivery.deliver([m.id for m in messages], now=now)
    assert counts == {"sent": 5, "failed": 0, "retry": 0, "passed": 0, "deferred": 0}
    assert smtp.connections == 1
    assert sorted(smtp.message_ids()) == sorted(m.message_id for m in messages)
    for message in map(reload, messages):
        assert (message.status, message.sent_at, message.attempts) == ("sent", now, 1)


def test_4xx_is_retried_with_growing_delays_then_failed(smtp_settings, smtp):
    smtp.answer("451")
    message = add("test:1")
    t0 = clock.now()
    assert delivery.deliver([message.id], now=t0)["retry"] == 1
    first = reload(message)
    assert (first.status, first.attempts) == ("pending", 1)
    assert "451" in first.last_error
    assert first.due_at == t0 + delivery.RETRY_DELAYS[0]

    assert sweeper.retry_failed(now=first.due_at - timedelta(seconds=1))["tried"] == 0  # not yet
    assert sweeper.retry_failed(now=first.due_at)["tried"] == 1
    second = reload(message)
    assert (second.status, second.attempts) == ("pending", 2)
    assert second.due_at == first.due_at + delivery.RETRY_DELAYS[1]
    assert delivery.RETRY_DELAYS[1] > delivery.RETRY_DELAYS[0]

    assert sweeper.retry_failed(now=second.due_at)["tried"] == 1
    last = reload(message)
    assert (last.status, last.attempts) == ("failed", 3)
    assert last.last_error.startswith("gave up after 3 attempts: recipient refused: 451")
    assert last.due_at - t0 < timedelta(hours=24)
    assert sweeper.retry_failed(now=t0 + timedelta(days=2))["tried"] == 0  # no fourth attempt
    assert smtp.messages == []


def test_5xx_fails_at_once_with_the_reason(smtp_settings, smtp):
    smtp.answer("550")
    message = add("test:1")
    assert delivery.deliver([message.id])["failed"] == 1
    failed = reload(message)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error == "recipient refused: 550 5.1.1 No such user here"
    smtp.answer("accept")
    assert sweeper.sweep(now=clock.now() + timedelta(days=1)) == 0
    assert smtp.messages == []


def test_a_timeout_is_retried_later_with_the_same_message_id(smtp_settings, smtp):
    settings.use(settings.get().replace(smtp_timeout=timedelta(seconds=1)))
    smtp.answer("hang")
    message = add("test:1")
    t0 = clock.now()
    assert delivery.deliver([message.id], now=t0)["retry"] == 1
    assert reload(message).last_error == "the SMTP server did not answer in time"
    smtp.answer("accept")
    assert sweeper.retry_failed(now=t0 + delivery.RETRY_DELAYS[0])["tried"] == 1
    assert reload(message).status == "sent"
    # The server may have kept the unanswered copy: the resent one is recognisably the same.
    assert [r.message["Message-ID"] for r in smtp.unanswered] == smtp.message_ids() == [
        message.message_id]


def test_an_unreachable_server_stops_the_batch(smtp_settings, smtp):
    messages = [add(f"test:{n}") for n in range(3)]
    settings.use(settings.get().replace(smtp_port=free_port()))
    counts = delivery.deliver([m.id for m in messages])
    assert counts == {"sent": 0, "failed": 0, "retry": 1, "passed": 0, "deferred": 2}
    assert [reload(m).attempts for m in messages] == [1, 0, 0]
    assert "refused" in reload(messages[0]).last_error


def test_two_deliveries_of_the_same_ids_send_each_message_once(smtp_settings, smtp):
    ids = [add(f"test:{n}").id for n in range(20)]
    results = in_threads(2, lambda: delivery.deliver(ids))
    assert sum(r["sent"] for r in results) == 20
    assert sum(r["passed"] for r in results) == 20
    assert len(smtp.messages) == 20
    assert len(set(smtp.message_ids())) == 20


def test_overlapping_sweeps_send_each_message_once(smtp_settings, smtp):
    for n in range(30):
        add(f"test:{n}")
    tried = in_threads(3, sweeper.sweep)
    assert sum(tried) == 30
    assert len(smtp.messages) == 30
    assert len(set(smtp.message_ids())) == 30
    assert Message.select().where(Message.status == "sent").count() == 30


def test_a_message_left_sending_by_a_crash_is_delivered_once_by_the_sweeper(smtp_settings,
                                                                             smtp):
    now = clock.now()
    crashed = add("test:crashed", due_at=now - timedelta(hours=1))
    busy = add("test:busy", due_at=now - timedelta(hours=1))
    # Claimed by a process that died 15 minutes ago, and by one still sending.
    delivery.claim(crashed.id, now - timedelta(minutes=15))
    delivery.claim(busy.id, now - timedelta(minutes=1))
    assert sweeper.sweep(now=now) == 1
    assert smtp.message_ids() == [crashed.message_id]
    assert (reload(crashed).status, reload(busy).status) == ("sent", "sending")
    assert sweeper.sweep(now=now + timedelta(minutes=1)) == 0
    assert len(smtp.messages) == 1


def test_sweep_sends_later_messages_when_due_and_urgent_ones_first(smtp_settings, smtp):
    bulk = add("test:bulk", priority=0)
    urgent = add("test:urgent", priority=100)
    now = clock.now()
    later = add("test:later", due_at=now + timedelta(hours=1))
    assert queued() == [[bulk.id], [urgent.id]]  # one due later waits for the sweeper
    assert sweeper.sweep(now=now) == 2
    assert smtp.message_ids() == [urgent.message_id, bulk.message_id]
    assert sweeper.sweep(now=now + timedelta(hours=1)) == 1
    assert smtp.message_ids()[-1] == later.message_id


def test_without_smtp_host_messages_are_delivered_as_eml_files(app):
    message = add("test:1")
    assert sweeper.sweep() == 1
    assert reload(message).status == "sent"
    files = list((settings.get().data_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    assert message.message_id.strip("<>").split("@")[0] in files[0].name


def test_a_name_typed_by_a_user_adds_no_recipient(smtp_settings, smtp):
    eve = User.create(email="eve@example.com", name="Eve\r\nBcc: evil@example.com",
                      role="patient", password_hash="-")
    add("test:1", recipient=eve.email, user=eve, context={"name": eve.name})
    sweeper.sweep()
    (received,) = smtp.messages
    assert received.rcpt_tos == ["eve@example.com"]
    assert "Bcc" not in received.message
    assert received.message["To"].addresses[0].display_name == "Eve Bcc evil example.com"


# -- withdraw, skip, resend -----------------------------------------------------------------------


def test_withdraw_skips_the_appointments_pending_messages_with_the_reason(app, alice, bob, carol):
    start = slot(2)
    visit = Appointment.create(patient=alice, doctor=carol, start=start,
                               end=start + timedelta(minutes=30))
    other = Appointment.create(patient=bob, doctor=carol, start=start + timedelta(hours=1),
                               end=start + timedelta(hours=1, minutes=30))
    due = {"due_at": start - timedelta(hours=24)}
    reminder = add("reminder:1", appointment=visit, **due)
    confirmation = add("confirmation:1", appointment=visit)
    delivery.deliver([confirmation.id])
    others = add("reminder:2", appointment=other, **due)
    Message.update(kind="reminder").where(Message.key.startswith("reminder")).execute()

    assert outbox.withdraw(visit.id, ["reminder", "confirmation"], "appointment cancelled") == 1
    assert (status(reminder), reload(reminder).last_error) == ("skipped", "appointment cancelled")
    assert status(confirmation) == "sent"  # what went out stays as it was
    assert status(others) == "pending"  # another appointment's
    assert sweeper.sweep(now=start) == 1  # only the other appointment's reminder


def test_skip_records_the_reason_and_takes_the_key(app, alice):
    skipped = outbox.skip("reminder:9:2h", "reminder", alice.email, "the visit has passed",
                          user=alice)
    assert (skipped.status, skipped.last_error) == ("skipped", "the visit has passed")
    assert outbox.skip("reminder:9:2h", "reminder", alice.email, "again") is None
    assert add("reminder:9:2h") is None
    assert sweeper.sweep() == 0


def test_resend_puts_a_failed_message_back_with_its_message_id(smtp_settings, smtp, drain):
    smtp.answer("550")
    message = add("test:1")
    huey.flush()
    delivery.deliver([message.id])
    assert outbox.resend(message.id) is True
    again = reload(message)
    assert (again.status, again.attempts, again.last_error) == ("pending", 0, "")
    assert queued() == [[message.id]]
    smtp.answer("accept")
    drain()
    assert reload(message).status == "sent"
    assert smtp.message_ids() == [message.message_id]
    assert outbox.resend(message.id) is False  # a sent message is never sent again


def queued_sizes():
    return [len(ids) for ids in queued()]


def test_messages_written_in_one_transaction_are_delivered_in_batches(app):
    with db.database.atomic():
        for n in range(250):
            add(f"batch:{n}", f"patient{n}@example.com")
        assert queued_sizes() == []  # nothing before the commit
    assert queued_sizes() == [100, 100, 50]  # one task, and one SMTP connection, per hundred


def test_a_rolled_back_transaction_queues_no_delivery_and_leaves_no_state(app):
    with pytest.raises(RuntimeError), db.database.atomic():
        add("gone:1", "a@example.com")
        raise RuntimeError("booking failed")
    with db.database.atomic():
        add("kept:1", "b@example.com")
    assert queued_sizes() == [1]


def test_a_message_whose_body_the_clean_up_removed_is_not_resent_empty(app):
    message = add("emptied:1", "")  # no address: failed at once
    assert message is not None and Message.get_by_id(message.id).status == "failed"
    Message.update(text_body="", html_body="").where(Message.id == message.id).execute()
    assert outbox.resend(message.id) is False
    assert Message.get_by_id(message.id).status == "failed"


def test_a_batch_claims_a_claim_at_a_time_and_marks_each_message_as_the_server_takes_it(
        smtp_settings, smtp, clinic_settings):
    """What the server took is on record before the next message goes (the server looks as each
    arrives): a process killed mid-batch can leave only the message in flight to be sent again."""
    ids = [add(f"test:{n}").id for n in range(2 * delivery.CLAIM_BATCH + 1)]
    other = db.open_database(clinic_settings.database_url)
    seen_sent = []

    def look(received):
        with other.connection_context():
            seen_sent.append(other.execute_sql(
                "SELECT COUNT(*) FROM message WHERE status = 'sent'").fetchone()[0])

    smtp.on_message(look)
    counts = delivery.deliver(ids)
    assert counts["sent"] == len(ids) and len(smtp.messages) == len(ids)
    assert seen_sent == list(range(len(ids)))  # each committed before the next was sent
    sent = Message.select(Message.claimed_at).where(Message.status == "sent")
    assert sent.count() == len(ids)
    claims = {message.claimed_at for message in sent}
    assert len(claims) == 3  # CLAIM_BATCH rows a claim, each claim at its own time
    if hasattr(other, "close_all"):
        other.close_all()


def test_what_the_server_took_is_marked_sent_when_the_batch_breaks_off(smtp_settings, smtp,
                                                                      monkeypatch):
    messages = [add(f"test:{n}") for n in range(5)]
    third = messages[2].message_id
    send = sender.Sender.send

    def stopped_after_the_third(self, message):
        send(self, message)
        if message["Message-ID"] == third:
            raise KeyboardInterrupt  # the worker is stopped as the server takes the third

    monkeypatch.setattr(sender.Sender, "send", stopped_after_the_third)
    with pytest.raises(KeyboardInterrupt):
        delivery.deliver([m.id for m in messages])
    monkeypatch.undo()
    assert len(smtp.wait_for(3)) == 3
    # The two before it are sent. The third reached the server, but its row was not marked: it
    # stays claimed (the sweeper hands it back later). The fourth and fifth, claimed with it
    # but never tried, are pending as before.
    assert [(status(m), reload(m).attempts) for m in messages] == [
        ("sent", 1), ("sent", 1), ("sending", 1), ("pending", 0), ("pending", 0)]
    assert sweeper.sweep() == 2
    assert len(smtp.messages) == 5


def test_an_internal_error_while_sending_retries_that_message_and_sends_the_rest(
        smtp_settings, smtp, monkeypatch):
    messages = [add(f"test:{n}") for n in range(3)]
    second = messages[1].message_id
    send_message = smtplib.SMTP.send_message

    def sending(self, message, *args, **kwargs):
        if message["Message-ID"] == second:
            raise ValueError("a bug")
        return send_message(self, message, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "send_message", sending)
    counts = delivery.deliver([m.id for m in messages])
    assert (counts["sent"], counts["retry"]) == (2, 1)
    assert [status(m) for m in messages] == ["sent", "pending", "sent"]
    assert reload(messages[1]).last_error == "internal error: ValueError: a bug"
    assert smtp.message_ids() == [messages[0].message_id, messages[2].message_id]


def test_a_claim_that_grows_old_against_a_slow_server_hands_back_its_untried_rest(
        smtp_settings, smtp, monkeypatch):
    """The sweeper takes back rows claimed longer than stuck_after() ago: a claim's last rows must
    not wait their turn that long, or they would go out twice."""
    messages = [add(f"test:{n}") for n in range(5)]
    with time_machine.travel(clock.now(), tick=False) as traveller:
        # A server taking its time: by the fourth's turn the claim is 0.6 old, past half.
        smtp.on_message(lambda received: traveller.shift(delivery.stuck_after() * 0.2))
        counts = delivery.deliver([m.id for m in messages])
        assert counts["sent"] == 3 and len(smtp.messages) == 3
        assert [status(m) for m in messages] == ["sent", "sent", "sent", "pending", "pending"]
        assert [reload(m).attempts for m in messages[3:]] == [0, 0]
        smtp.on_message(None)
        assert sweeper.sweep() == 2
    assert sorted(smtp.message_ids()) == sorted(m.message_id for m in Message.select())


def test_a_backlog_goes_out_over_several_connections_each_message_once(smtp_settings, smtp):
    assert delivery.SENDERS > 1
    for n in range(45):
        add(f"test:{n}")
    assert sweeper.sweep(batch=10) == 45
    assert smtp.connections == 5  # batches of 10, SENDERS of them at a time
    assert sorted(smtp.message_ids()) == sorted(m.message_id for m in Message.select())
    assert Message.select().where(Message.status == "sent").count() == 45
