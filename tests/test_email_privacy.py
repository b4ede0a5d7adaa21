"""No email says what a patient is being treated for where others may read it: every kind of
email the clinic sends (every template in templates/emails/) is made through the code that sends
it, for a patient whose visit reason, symptoms and diagnosis carry one distinctive word; the word
is in no subject, and in no body except the doctor's own monthly report. The patient reads their
medical details after signing in (or in the export they asked for, as an attachment)."""

from datetime import datetime, timedelta
from pathlib import Path

import time_machine

from clinic import (
    accounts,
    announcements,
    appointments,
    clock,
    exports,
    reminders,
    reports,
    reviews,
    waitlist,
)
from clinic.mail import outbox
from clinic.models import Message
from tests.conftest import PASSWORD, TZ, make_patient, slot

SECRET = "Xanthogranuloma"  # the distinctive diagnosis
RECORD = {"visit_type": "Consultation", "symptoms": f"{SECRET} on the left eyelid",
          "diagnosis": SECRET, "treatment": f"{SECRET} excision", "prescription": "",
          "notes": f"Follow up on the {SECRET}"}
MORNING = datetime(2026, 3, 4, 8, 0, tzinfo=TZ)  # a Wednesday, 08:00 in the clinic
EMAILS = Path(__file__).resolve().parent.parent / "templates" / "emails"
# Bodies where a diagnosis belongs: the doctor's report on their own visits.
FOR_DOCTORS = {"monthly_report"}


def every_kind():
    return {path.name.removesuffix(".subject.txt") for path in EMAILS.glob("*.subject.txt")}


def test_no_subject_and_no_patients_email_names_the_diagnosis(app, alice, carol, erin):
    with time_machine.travel(MORNING, tick=False):
        make_every_kind(alice, carol, erin)
    messages = list(Message.select().where(Message.status != "skipped"))
    assert {m.kind for m in messages} == every_kind(), "a kind of email is not covered here"
    for message in messages:
        assert SECRET.lower() not in message.subject.lower(), message.kind
        if message.kind not in FOR_DOCTORS:
            assert SECRET.lower() not in message.text_body.lower(), message.kind
            assert SECRET.lower() not in message.html_body.lower(), message.kind
    report = next(m for m in messages if m.kind == "monthly_report")
    assert SECRET in report.text_body  # the test would see it if it were there
    export = next(m for m in messages if m.kind == "history_export")
    assert export.attachments and export.attachments[0]["content_type"] == "text/csv"


def make_every_kind(alice, carol, erin):
    now = clock.now()
    # Booked, moved and cancelled: confirmation, rescheduled, cancellation, waitlist offer.
    moved = appointments.book(alice.id, carol.id, slot(3, "10:00"), reason=SECRET)
    appointments.reschedule(moved, slot(3, "11:00"), alice)
    cancelled = appointments.book(alice.id, carol.id, slot(4, "10:00"), reason=SECRET)
    # A patient waiting for that day: the freed slot's waitlist offer.
    day = clock.local(cancelled.start).date().isoformat()
    waitlist.join(make_patient("wanda@example.com", "Wanda Wait").id, carol.id, day, day)
    appointments.cancel(cancelled, alice)
    # A visit this afternoon, booked last week: the daily reminder; and one tomorrow: its
    # advance reminder (this afternoon's would fall within CLINIC_REMINDER_GAP of the daily).
    start = slot(0, "15:00")
    appointments.book(alice.id, carol.id, start, reason=SECRET, now=start - timedelta(days=7))
    reminders.send_daily(now=now)
    tomorrow = slot(1, "15:00")
    appointments.book(alice.id, carol.id, tomorrow, reason=SECRET,
                      now=tomorrow - timedelta(days=7))
    reminders.send_advance(now=tomorrow - timedelta(days=1))
    # A visit yesterday, completed with the distinctive record: review request and reminder,
    # the doctor's monthly report, the patient's export.
    seen = appointments.book(alice.id, carol.id, slot(-1, "10:00"), reason=SECRET,
                             now=now - timedelta(days=3))
    appointments.complete(seen, carol, RECORD, now=now - timedelta(hours=3))
    reviews.send_requests(now=now)
    Message.update(status="sent", sent_at=now).where(Message.kind == "review_request").execute()
    reviews.send_reminders(now=now + timedelta(days=7))
    reports.make(clock.local(seen.start).date().replace(day=1), [carol], now=now)
    record, _ = exports.start(alice)
    exports.build(record.task_id)
    # What the clinic writes itself: an announcement, a test email.
    announcement, _ = announcements.start(erin, "Opening hours", "We open at 8 from Monday.",
                                          {"type": "all"})
    announcements.send(announcement.id)
    outbox.enqueue("test", "test:privacy", erin.email)
    # What a patient asks for about the account: a reset link, a new address's confirmation.
    accounts.request_reset(alice.email, "127.0.0.1")
    accounts.update_profile(alice, {"email": "alice.other@example.com"})
    # What the account's owner is told of a change: here, a new password.
    accounts.change_password(alice, PASSWORD, "another good password", "127.0.0.1", None)
