"""Confirmation, rescheduled and cancellation emails (clinic/notices.py) and their calendar
invites: written with the booking, delivered after it, to a real SMTP server."""

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from huey.signals import SIGNAL_COMPLETE

from clinic import appointments, clock, db, reminders, settings
from clinic.jobs.queue import URGENT
from clinic.mail import delivery, notices, sweeper
from clinic.models import Appointment, Message
from huey_config import huey
from tests.conftest import login, slot


def rows(kind=None):
    query = Message.select().order_by(Message.id)
    return list(query.where(Message.kind == kind) if kind else query)


def delivered(smtp, kind_subject):
    return [r.message for r in smtp.messages if kind_subject in r.message["Subject"]]


def text_of(message):
    return message.get_body(("plain",)).get_content()


def html_of(message):
    return message.get_body(("html",)).get_content()


def calendar_part(message):
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    return part


def ics_lines(raw):
    """The content lines of an .ics (bytes): CRLF-separated, unfolded."""
    text = raw.decode("utf-8")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # no bare LF
    assert "\r" not in text.replace("\r\n", "")  # no bare CR
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75, line
    return text.replace("\r\n ", "").split("\r\n")[:-1]


def ics_fields(lines):
    """{NAME: value} of the VEVENT and VCALENDAR properties (parameters dropped)."""
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.split(";")[0], value)
    return fields


def link_path(text):
    match = re.search(r"https?://[^/\s]+(/visit/[A-Za-z0-9_.-]+)", text)
    assert match, text
    return match.group(1)


def signed_in(client, user):
    login(client, user)
    client.get("/patient")  # the CSRF token of the new session
    return client


def post_booking(browser, doctor, start, reason=""):
    return browser.post("/patient/appointments", {
        "doctor_id": doctor.id, "start": clock.local(start).isoformat(), "reason": reason,
        "date": clock.local(start).date().isoformat()})


# -- booking ------------------------------------------------------------------------------------


def test_booking_returns_before_the_confirmation_is_sent(smtp_settings, smtp, client, alice,
                                                         carol):
    browser = signed_in(client, alice)
    start = slot(3, "10:30")
    response = post_booking(browser, carol, start, reason="Chest pain since Monday")
    assert response.status == 303
    appointment = Appointment.get()
    (confirmation,) = rows("confirmation")
    assert confirmation.status == "pending" and confirmation.attempts == 0
    assert confirmation.key == f"confirmation:{appointment.id}:{notices.stamp(start)}"
    assert confirmation.priority == URGENT
    assert smtp.messages == []  # the response did not wait for SMTP
    assert [task.args[0] for task in huey.pending()] == [[confirmation.id]]  # queued after commit

    assert delivery.deliver([confirmation.id])["sent"] == 1
    (received,) = smtp.messages
    message = received.message
    assert received.rcpt_tos == ["alice@example.com"]
    local = clock.local(start)
    assert message["Subject"] == f"Your appointment on {local:%a %d %b %Y} at 10:30 is booked"
    text = text_of(message)
    assert f"{local:%a %d %b %Y}, 10:30–11:00 (Berlin time)" in text
    assert "Dr Carol Clark, Cardiology" in text
    assert "Test Clinic, 1 Test Street, Berlin" in text
    assert "Dr Carol Clark, Cardiology" in html_of(message)
    assert "Chest pain" not in received.raw.decode("utf-8", "replace")

    page = client.__class__(f"http://{client.host}:{client.port}").get(link_path(text))
    assert page.status == 200  # a browser that never signed in
    assert "Dr Carol Clark" in page.text and "10:30" in page.text

    part = calendar_part(message)
    assert part.get_param("method") == "REQUEST"
    assert part.get_filename() == "appointment.ics"
    fields = ics_fields(ics_lines(part.get_payload(decode=True)))
    assert fields["METHOD"] == "REQUEST" and fields["SEQUENCE"] == "0"
    assert fields["DTSTART"] == start.strftime("%Y%m%dT%H%M%SZ")
    assert fields["DTEND"] == (start + timedelta(minutes=30)).strftime("%Y%m%dT%H%M%SZ")
    assert fields["UID"].startswith(f"appointment-{appointment.id}-")
    assert fields["LOCATION"] == r"1 Test Street\, Berlin"
    assert fields["STATUS"] == "CONFIRMED"
    assert "Cardiology" not in part.get_payload(decode=True).decode()


@pytest.fixture
def consumer(consumer):
    """The real consumer (conftest.py); ``.sent`` is set when a send_messages task has
    finished."""
    sent = threading.Event()

    def finished(signal_name, task, *args):
        if task.name.endswith("send_messages"):
            sent.set()

    huey.signal(SIGNAL_COMPLETE)(finished)
    consumer.sent = sent
    yield consumer
    huey.disconnect_signal(finished, SIGNAL_COMPLETE)


def test_the_consumer_delivers_the_confirmation_of_a_booking(smtp_settings, smtp, consumer,
                                                             client, alice, carol):
    browser = signed_in(client, alice)
    assert post_booking(browser, carol, slot(2, "11:00")).status == 303
    assert consumer.sent.wait(15), "no send_messages task ran"
    (received,) = smtp.messages
    assert received.message["Subject"].endswith("at 11:00 is booked")
    assert Message.get(Message.kind == "confirmation").status == "sent"


def test_a_rolled_back_booking_sends_nothing(smtp_settings, smtp, alice, carol):
    with db.database.atomic() as transaction:
        appointments.book(alice.id, carol.id, slot(2, "09:00"))
        assert len(rows("confirmation")) == 1
        transaction.rollback()
    assert rows() == [] and Appointment.select().count() == 0
    assert huey.pending() == []
    assert sweeper.sweep() == 0
    assert smtp.messages == []


def test_a_failed_booking_writes_no_confirmation(app, alice, bob, carol):
    start = slot(2, "09:00")
    appointments.book(alice.id, carol.id, start)
    with pytest.raises(Exception, match="just taken"):
        appointments.book(bob.id, carol.id, start)
    assert [m.recipient for m in rows("confirmation")] == ["alice@example.com"]


def test_a_second_call_for_the_same_booking_writes_nothing(app, alice, carol):
    appointment = appointments.book(alice.id, carol.id, slot(2, "09:00"))
    notices.booked(appointment)
    assert len(rows()) == 1


def test_notices_leave_out_the_reason_for_the_visit(app, alice, carol):
    appointment = appointments.book(alice.id, carol.id, slot(2, "09:00"), "Depression, HIV test")
    moved = appointments.reschedule(appointment, slot(2, "10:00"), alice)
    appointments.cancel(moved, alice)
    assert [m.kind for m in rows()] == ["confirmation", "rescheduled", "cancellation"]
    for message in rows():
        everything = message.subject + message.text_body + message.html_body + str(
            message.attachments)
        assert "Depression" not in everything and "HIV" not in everything
        assert "Cardiology" not in message.subject


# -- rescheduling -------------------------------------------------------------------------------


def test_rescheduling_sends_the_new_time_and_updates_the_same_invite(smtp_settings, smtp, alice,
                                                                     carol):
    first = slot(3, "09:00")
    appointment = appointments.book(alice.id, carol.id, first)
    sweeper.sweep()
    moved = appointments.reschedule(appointment, slot(4, "15:00"), alice)
    sweeper.sweep()
    back = appointments.reschedule(moved, first, alice)  # back to the first time: a new notice
    sweeper.sweep()
    assert [(m.kind, m.status) for m in rows()] == [
        ("confirmation", "sent"), ("rescheduled", "sent"), ("rescheduled", "sent")]
    invites = []
    for received in smtp.messages:
        fields = ics_fields(ics_lines(calendar_part(received.message).get_payload(decode=True)))
        invites.append((fields["UID"], fields["SEQUENCE"], fields["DTSTART"]))
    uid = invites[0][0]
    assert invites == [(uid, "0", f"{first:%Y%m%dT%H%M%SZ}"),
                       (uid, "1", f"{moved.start:%Y%m%dT%H%M%SZ}"),
                       (uid, "2", f"{back.start:%Y%m%dT%H%M%SZ}")]
    last = smtp.messages[-1].message
    local = clock.local(first)
    assert last["Subject"] == f"Your appointment is moved to {local:%a %d %b %Y} at 09:00"
    assert f"{local:%a %d %b %Y}, 09:00–09:30 (Berlin time)" in text_of(last)


def test_rescheduling_withdraws_what_was_waiting_for_the_old_time(smtp_settings, smtp, alice,
                                                                  carol):
    start = slot(1, "16:00")
    appointment = appointments.book(alice.id, carol.id, start, now=start - timedelta(days=3))
    assert reminders.send_advance(now=start - timedelta(hours=23))["sent"] == 1
    waiting = [m.id for m in rows()]  # the confirmation and the 24 h reminder, both unsent
    appointments.reschedule(appointment, slot(2, "16:00"), alice)
    for message in map(Message.get_by_id, waiting):
        assert (message.status, message.last_error) == (
            "skipped", "appointment moved to another time")
    sweeper.sweep()
    assert [r.message["Subject"].split(" ")[:4] for r in smtp.messages] == [
        ["Your", "appointment", "is", "moved"]]


# -- cancelling ---------------------------------------------------------------------------------


def test_cancelling_sends_a_cancellation_and_withdraws_waiting_reminders(smtp_settings, smtp,
                                                                         alice, carol):
    start = slot(1, "16:00")
    appointment = appointments.book(alice.id, carol.id, start, now=start - timedelta(days=3))
    sweeper.sweep()  # the confirmation went out
    assert reminders.send_advance(now=start - timedelta(hours=23))["sent"] == 1
    appointments.cancel(appointment, alice)

    by_kind = {m.kind: m for m in rows()}
    assert by_kind["confirmation"].status == "sent"  # what went out stays as it was
    reminder = by_kind["reminder_advance"]
    assert (reminder.status, reminder.last_error) == ("skipped", "appointment cancelled")
    cancellation = by_kind["cancellation"]
    assert (cancellation.status, cancellation.key) == ("pending", f"cancellation:{appointment.id}")

    sweeper.sweep()
    subjects = [r.message["Subject"] for r in smtp.messages]
    local = clock.local(start)
    assert subjects[1:] == [f"Your appointment on {local:%a %d %b %Y} at 16:00 is cancelled"]
    message = smtp.messages[1].message
    part = calendar_part(message)
    assert part.get_param("method") == "CANCEL"
    fields = ics_fields(ics_lines(part.get_payload(decode=True)))
    first = ics_fields(ics_lines(calendar_part(smtp.messages[0].message).get_payload(
        decode=True)))
    assert (fields["METHOD"], fields["STATUS"], fields["SEQUENCE"]) == (
        "CANCEL", "CANCELLED", "1")
    assert fields["UID"] == first["UID"]
    assert "/visit/" not in text_of(message)  # nothing left to manage


def test_an_unsent_confirmation_is_withdrawn_when_the_booking_is_cancelled(app, alice, carol):
    appointment = appointments.book(alice.id, carol.id, slot(2, "09:00"))
    appointments.cancel(appointment, alice)
    assert [(m.kind, m.status) for m in rows()] == [("confirmation", "skipped"),
                                                    ("cancellation", "pending")]


# -- the invite ---------------------------------------------------------------------------------


def test_the_invite_escapes_text_and_folds_long_lines(app, alice, carol):
    carol.name = "Dr Carol Clark, Jr.; the \\ first\nsecond line"
    carol.save()
    alice.name = 'Alice "Ally" Adams; Ünïcödé ' + "ü" * 60
    alice.save()
    settings.use(settings.get().replace(address="Straße 1, 10115 Berlin; Hof " + "ö" * 80))
    appointment = appointments.book(alice.id, carol.id, slot(2, "09:00"))
    visit = Appointment.with_people().where(Appointment.id == appointment.id).get()
    raw = notices.invite(visit, "REQUEST", 3, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    lines = ics_lines(raw.encode("utf-8"))
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    fields = ics_fields(lines)
    assert fields["SUMMARY"] == (r"Appointment with Dr Carol Clark\, Jr.\; the \\ first\nsecond "
                                 r"line at Test Clinic")
    assert fields["LOCATION"] == r"Straße 1\, 10115 Berlin\; Hof " + "ö" * 80
    assert fields["DTSTAMP"] == "20260102T030405Z" and fields["SEQUENCE"] == "3"
    attendee = next(line for line in lines if line.startswith("ATTENDEE"))
    assert attendee.startswith('ATTENDEE;CN="Alice Ally Adams; Ünïcödé ' + "ü" * 60 + '";')
    assert attendee.endswith(":mailto:alice@example.com")
    assert raw.count("\r\n ") >= 2  # the long lines were folded


@pytest.mark.parametrize("line", ["x" * 75, "x" * 76, "ü" * 40, "a" + "€" * 60, "x" * 300])
def test_folding_keeps_lines_within_75_octets_and_characters_whole(line):
    folded = notices.fold(line)
    parts = folded.split("\r\n ")
    assert all(len(p.encode("utf-8")) <= (75 if i == 0 else 74) for i, p in enumerate(parts))
    assert "".join(parts) == line
    assert (folded == line) == (len(line.encode("utf-8")) <= 75)
