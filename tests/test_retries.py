"""Retries (sweeper.retry_failed, the hourly retry-failed job): a passing failure is tried again,
at most 3 times within a day, 100 at a time; a permanent one fails at once with the reason.
Against a real SMTP server (tests/smtp.py) that accepts, answers 4xx or 5xx, hangs, or is gone."""

from datetime import timedelta

import time_machine

from clinic import clock, settings
from clinic.jobs import scheduler
from clinic.mail import compose, delivery, outbox, sweeper
from clinic.models import JobState, Message
from tests.test_mail import free_port

HOUR = timedelta(hours=1)


def add(key, recipient="alice@example.com"):
    return outbox.enqueue("test", key, recipient)


def reload(message):
    return Message.get_by_id(message.id)


def first_attempt_fails(smtp, mode, n=1):
    """``n`` messages whose first attempt (their send task) met ``mode``; returns them and t0."""
    smtp.answer(mode)
    messages = [add(f"test:{i}") for i in range(n)]
    t0 = clock.now()
    delivery.deliver([m.id for m in messages], now=t0)
    return messages, t0


def test_a_4xx_is_retried_by_the_hourly_job_and_then_accepted(smtp_settings, smtp):
    (message,), t0 = first_attempt_fails(smtp, "451")
    failed = reload(message)
    assert (failed.status, failed.attempts) == ("pending", 1)
    assert failed.last_error == "recipient refused: 451 4.7.1 Greylisted, try again later"
    smtp.answer("accept")
    assert sweeper.sweep(now=t0 + HOUR) == 0  # the minute sweep leaves it to the retry job
    assert sweeper.retry_failed(now=t0 + HOUR) == {"tried": 1, "sent": 1, "failed": 0,
                                                  "retry": 0, "deferred": 0}
    sent = reload(message)
    assert (sent.status, sent.attempts, sent.sent_at) == ("sent", 2, t0 + HOUR)
    assert smtp.message_ids() == [message.message_id]
    assert sweeper.retry_failed(now=t0 + 2 * HOUR)["tried"] == 0


def test_a_5xx_fails_at_once_with_the_reason_and_is_never_retried(smtp_settings, smtp):
    (message,), t0 = first_attempt_fails(smtp, "550")
    failed = reload(message)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error == "recipient refused: 550 5.1.1 No such user here"
    smtp.answer("accept")
    for hour in range(1, 25):
        assert sweeper.retry_failed(now=t0 + hour * HOUR)["tried"] == 0
    assert smtp.messages == [] and smtp.connections == 1


def test_a_message_without_an_address_fails_at_once_and_is_never_tried(smtp_settings, smtp):
    message = add("test:1", recipient="")
    assert (reload(message).status, reload(message).last_error) == ("failed", "no address")
    assert sweeper.retry_failed(now=clock.now() + HOUR)["tried"] == 0
    assert smtp.connections == 0


def test_at_most_three_attempts_with_growing_delays_within_24_hours(smtp_settings, smtp):
    (message,), t0 = first_attempt_fails(smtp, "451")
    tried_at = [0]  # hours after t0
    for hour in range(1, 49):  # two days of hourly runs
        if sweeper.retry_failed(now=t0 + hour * HOUR)["tried"]:
            tried_at.append(hour)
    assert len(tried_at) == 3 and smtp.connections == 3
    gaps = [b - a for a, b in zip(tried_at, tried_at[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[0] < gaps[1]
    assert tried_at[-1] < 24
    last = reload(message)
    assert (last.status, last.attempts) == ("failed", 3)
    assert last.last_error.startswith("gave up after 3 attempts: recipient refused: 451")


def test_a_refused_connection_is_retried_later(smtp_settings, smtp):
    port = smtp.port
    settings.use(settings.get().replace(smtp_port=free_port()))
    message = add("test:1")
    t0 = clock.now()
    assert delivery.deliver([message.id], now=t0)["retry"] == 1
    assert "refused" in reload(message).last_error
    settings.use(settings.get().replace(smtp_port=port))
    assert sweeper.retry_failed(now=t0 + HOUR)["sent"] == 1
    assert smtp.message_ids() == [message.message_id]


def test_a_timeout_is_retried_later(smtp_settings, smtp):
    settings.use(settings.get().replace(smtp_timeout=timedelta(seconds=1)))
    (message,), t0 = first_attempt_fails(smtp, "hang")
    assert reload(message).last_error == "the SMTP server did not answer in time"
    smtp.answer("accept")
    assert sweeper.retry_failed(now=t0 + HOUR)["sent"] == 1
    assert reload(message).status == "sent"


def test_retries_go_in_batches_of_100_each_over_one_connection(smtp_settings, smtp):
    t0 = clock.now()
    subject, text, html = compose.render("test")
    # 150 messages as their failed first attempts leave them (making them so is slow).
    Message.insert_many([
        {"key": f"test:{i}", "kind": "test", "recipient": "alice@example.com",
         "subject": subject, "text_body": text, "html_body": html,
         "message_id": compose.new_message_id(), "attempts": 1,
         "last_error": "recipient refused: 451", "due_at": t0} for i in range(150)]).execute()
    assert sweeper.sweep(now=t0 + HOUR) == 0
    result = sweeper.retry_failed(now=t0 + HOUR)
    assert result == {"tried": 150, "sent": 150, "failed": 0, "retry": 0, "deferred": 0}
    assert smtp.connections == 2
    assert len(set(smtp.message_ids())) == 150


def test_an_unreachable_server_stops_the_retry_run(smtp_settings, smtp):
    messages, t0 = first_attempt_fails(smtp, "451", n=3)
    settings.use(settings.get().replace(smtp_port=free_port()))
    result = sweeper.retry_failed(now=t0 + HOUR)
    assert (result["tried"], result["retry"], result["deferred"]) == (1, 1, 2)
    assert sorted(reload(m).attempts for m in messages) == [1, 1, 2]


def test_the_minute_sweep_still_delivers_what_a_crash_left_sending(smtp_settings, smtp):
    (message,), t0 = first_attempt_fails(smtp, "451")
    smtp.answer("accept")
    # The hourly job claimed it (a second attempt), then the process died mid-send.
    delivery.claim(message.id, t0 + HOUR)
    assert sweeper.sweep(now=t0 + HOUR + timedelta(minutes=5)) == 0  # maybe still sending
    assert sweeper.sweep(now=t0 + 2 * HOUR) == 1
    assert (reload(message).status, reload(message).attempts) == ("sent", 3)
    assert smtp.message_ids() == [message.message_id]


def test_the_retry_failed_job_runs_it_on_the_clock(smtp_settings, smtp):
    (message,), t0 = first_attempt_fails(smtp, "451")
    smtp.answer("accept")
    with time_machine.travel(t0 + HOUR, tick=False):
        assert scheduler.run("retry-failed")["sent"] == 1
    assert JobState.get_by_id("retry-failed").last_result == (
        "tried 1, sent 1, failed 0, retry 0, deferred 0")
    assert reload(message).sent_at == t0 + HOUR
