"""The review-reminders job (reviews.send_reminders): once, 7 days after a review request that was
sent and got no review; real SMTP, time passed in."""

import re
from datetime import timedelta

import pytest

from clinic import clock, reviews, signing
from clinic.jobs import scheduler
from clinic.mail import preferences, sweeper
from clinic.models import Message
from tests.test_reviews import completed_visit

DAY = timedelta(days=1)
LINK = re.compile(r"https?://[^/\s]+/review/([A-Za-z0-9_.-]+)")


@pytest.fixture
def asked(smtp_settings, smtp, alice, carol):
    """alice's visit with carol, completed this morning; its review request sent now."""
    now = clock.now()
    visit = completed_visit(alice, carol, now - timedelta(hours=3))
    assert reviews.send_requests(now=now) == {"requested": 1}
    sweeper.sweep()
    request = Message.get(Message.kind == "review_request")
    assert request.status == "sent"
    smtp.messages.clear()
    return visit, request.sent_at


def test_one_reminder_goes_7_days_after_an_unanswered_request(asked, smtp, alice):
    visit, sent_at = asked
    assert reviews.send_reminders(now=sent_at + 6 * DAY) == {"reminded": 0}
    week = sent_at + 7 * DAY
    assert reviews.send_reminders(now=week) == {"reminded": 1}
    assert reviews.send_reminders(now=week + DAY) == {"reminded": 0}  # once
    sweeper.sweep()
    (received,) = smtp.messages
    assert received.rcpt_tos == [alice.email]
    assert received.message["Subject"] == "A minute for your visit to Test Clinic?"
    text = received.message.get_body(("plain",)).get_content()
    token = LINK.search(text).group(1)
    assert signing.unsign("review", token, now=week) == {"appointment": visit.id}
    assert "only reminder" in text
    for medical in ("Arrhythmia", "Beta blockers", "Chest pain"):
        assert medical not in received.raw.decode()
    assert received.message["List-Unsubscribe"]  # review requests can be refused


def test_no_reminder_once_the_visit_is_reviewed(asked, smtp):
    visit, sent_at = asked
    token = reviews.review_url(visit.id, sent_at).rsplit("/", 1)[1]
    reviews.submit(token, 5, "Great", now=sent_at + DAY)
    assert reviews.send_reminders(now=sent_at + 7 * DAY) == {"reminded": 0}


def test_no_reminder_for_a_request_that_was_never_sent(smtp_settings, smtp, alice, carol):
    now = clock.now()
    completed_visit(alice, carol, now - timedelta(hours=3))
    reviews.send_requests(now=now)
    Message.update(status="failed", last_error="550 no such user").execute()
    assert reviews.send_reminders(now=now + 8 * DAY) == {"reminded": 0}


def test_a_request_found_too_late_gets_no_reminder(asked):
    _, sent_at = asked
    assert reviews.send_reminders(now=sent_at + 15 * DAY) == {"reminded": 0}


def test_a_patient_who_opted_out_of_reviews_gets_a_skipped_row_instead(asked, smtp, alice):
    _, sent_at = asked
    preferences.save(alice, {"reviews": False})
    assert reviews.send_reminders(now=sent_at + 7 * DAY) == {"reminded": 0}
    row = Message.get(Message.kind == "review_reminder")
    assert (row.status, row.last_error) == ("skipped", "the patient opted out of review requests")
    assert reviews.send_reminders(now=sent_at + 8 * DAY) == {"reminded": 0}


def test_the_job_is_declared_with_its_schedule_setting(app):
    job = scheduler.get("review-reminders")
    assert job.setting == "review_reminder_at" and job.resolve() is reviews.send_reminders
    assert "CLINIC_REVIEW_REMINDER_AT" in {row["setting"] for row in scheduler.listing()}
