"""An appointment's timeline (clinic/timeline.py) and where it shows: its confirmation, its
reminders planned before they are due, sent once the job ran, not sent with the reason after a
cancellation; in time order; on the admin's page and on its own doctor's page only."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from clinic import appointments, reminders, settings, timeline
from clinic.mail import sweeper
from clinic.models import Appointment, Message
from huey_config import huey
from tests.conftest import TZ, login

MORNING = datetime(2031, 3, 12, 8, 0, tzinfo=TZ)  # a Wednesday
VISIT = datetime(2031, 3, 14, 10, 0, tzinfo=TZ)  # Friday 10:00


def local(*args):
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


def at(now, change, *args):
    """Make a change at ``now``: the emails it writes are stamped with the clock."""
    with time_machine.travel(now, tick=False):
        return change(*args, now=now)


def book(patient, doctor, start, now=MORNING):
    return at(now, appointments.book, patient.id, doctor.id, start, "Private reason")


def events(appointment, now):
    appt = Appointment.with_people().where(Appointment.id == appointment.id).get()
    return timeline.for_appointment(appt, now=now)


def story(appointment, now):
    """The timeline as (local time, what, status) rows."""
    return [(e.at.astimezone(TZ).strftime("%d %H:%M"), e.what, e.status)
            for e in events(appointment, now)]


def find(appointment, now, what):
    found = [e for e in events(appointment, now) if e.what == what]
    assert len(found) == 1, (what, story(appointment, now))
    return found[0]


def in_order(appointment, now):
    times = [e.at for e in events(appointment, now)]
    return times == sorted(times)


@pytest.fixture
def booked(smtp_settings, smtp, alice, carol):
    """Alice's visit with Carol on Friday 10:00, booked on Wednesday 08:00, its confirmation
    sent."""
    appt = book(alice, carol, VISIT)
    huey.flush()
    sweeper.sweep(now=MORNING)
    return appt


def test_a_new_booking_shows_its_confirmation_and_the_reminders_to_come(booked, smtp):
    now = MORNING + timedelta(minutes=1)
    assert story(booked, now) == [
        ("12 08:00", "Booked", "done"),
        ("12 08:00", "Confirmation email sent", "sent"),
        ("13 10:00", "24 h reminder planned", "planned"),
        ("14 08:00", "2 h reminder planned", "planned"),
        # CLINIC_REMINDER_GAP (6 h): one reminder at 08:00, not two.
        ("14 08:00", "Reminder on the day will not be sent", "skipped"),
    ]
    assert find(booked, now, "Reminder on the day will not be sent").detail == (
        "a reminder went out at 08:00, less than 6 h before")
    assert find(booked, now, "Booked").detail == "for Fri 14 Mar 2031, 10:00 with Dr Carol Clark"
    assert find(booked, now, "Confirmation email sent").detail == "to alice@example.com"
    assert in_order(booked, now)
    assert len(smtp.messages) == 1


def test_a_reminder_is_sent_once_the_job_ran(booked, smtp):
    due = local(2031, 3, 13, 10, 0)
    assert find(booked, due - timedelta(minutes=1), "24 h reminder planned").status == "planned"
    assert at(due, reminders.send_advance) == {"sent": 1, "skipped": 0}
    assert find(booked, due, "24 h reminder waiting to be sent").status == "pending"
    sweeper.sweep(now=due)
    sent = find(booked, due, "24 h reminder sent")
    assert (sent.at, sent.status, sent.detail) == (due, "sent", "to alice@example.com")
    assert sent.message_id == Message.get(Message.kind == "reminder_advance").id
    assert "24 h reminder planned" not in [e.what for e in events(booked, due)]
    assert in_order(booked, due)


def test_planned_reminders_the_gap_will_skip_are_shown_as_such(booked):
    settings.use(settings.get().replace(reminder_gap=timedelta(hours=23)))
    now = MORNING + timedelta(minutes=1)
    assert story(booked, now)[2:] == [
        ("13 10:00", "24 h reminder planned", "planned"),
        ("14 08:00", "2 h reminder will not be sent", "skipped"),
        ("14 08:00", "Reminder on the day will not be sent", "skipped"),
    ]
    # Once the 24 h one went out, its row is what the later ones are measured from.
    due = local(2031, 3, 13, 10, 0)
    assert at(due, reminders.send_advance) == {"sent": 1, "skipped": 0}
    later = story(booked, due + timedelta(minutes=5))
    assert ("14 08:00", "2 h reminder will not be sent", "skipped") in later
    assert find(booked, due, "2 h reminder will not be sent").detail == (
        "a reminder went out at 10:00, less than 23 h before")
    # And the job does skip it when its time comes, for the same reason.
    assert at(local(2031, 3, 14, 8, 0), reminders.send_advance) == {"sent": 0, "skipped": 1}


def test_with_a_short_gap_only_reminders_at_the_same_moment_are_skipped(booked):
    settings.use(settings.get().replace(reminder_gap=timedelta(minutes=30),
                                        reminder_offsets=[timedelta(days=1),
                                                          timedelta(hours=1)]))
    whats = [what for _, what, _ in story(booked, MORNING + timedelta(minutes=1))]
    assert whats[2:] == ["24 h reminder planned", "Reminder on the day planned",
                         "1 h reminder planned"]  # 08:00 and 09:00: more than 30 min apart


def test_a_reminder_due_but_not_yet_run_says_the_job_will_decide(booked):
    later = local(2031, 3, 13, 10, 3)  # the job runs every 5 minutes
    due = find(booked, later, "24 h reminder due")
    assert due.status == "pending"
    assert due.detail == ("the next run of the advance-reminders job sends it or records why "
                          "not")


def test_after_a_cancellation_the_reminders_to_come_are_not_sent_and_say_why(booked, erin):
    sent_at = local(2031, 3, 13, 10, 0)
    at(sent_at, reminders.send_advance)
    sweeper.sweep(now=sent_at)
    cancelled_at = local(2031, 3, 13, 18, 0)
    at(cancelled_at, appointments.cancel, booked, erin)
    sweeper.sweep(now=cancelled_at)
    assert story(booked, cancelled_at) == [
        ("12 08:00", "Booked", "done"),
        ("12 08:00", "Confirmation email sent", "sent"),
        ("13 10:00", "24 h reminder sent", "sent"),
        ("13 18:00", "Cancelled", "done"),
        ("13 18:00", "Cancellation email sent", "sent"),
        ("14 08:00", "2 h reminder not sent", "skipped"),
        ("14 08:00", "Reminder on the day not sent", "skipped"),
    ]
    skipped = find(booked, cancelled_at, "2 h reminder not sent")
    assert skipped.detail == "the appointment was cancelled before it was due"
    assert in_order(booked, cancelled_at)


def test_a_reminder_waiting_when_the_visit_is_cancelled_is_withdrawn_with_the_reason(booked,
                                                                                     erin):
    due = local(2031, 3, 13, 10, 0)
    at(due, reminders.send_advance)  # written, not yet delivered
    at(due + timedelta(seconds=1), appointments.cancel, booked, erin)
    withdrawn = find(booked, due, "24 h reminder not sent")
    assert (withdrawn.status, withdrawn.detail) == ("skipped", "appointment cancelled")
    assert withdrawn.message_id is not None


def test_a_reminder_skipped_by_the_job_shows_the_reason_from_its_row(smtp_settings, alice,
                                                                     carol):
    booked_at = local(2031, 3, 14, 7, 0)  # three hours before the visit
    appt = book(alice, carol, VISIT, now=booked_at)
    run = local(2031, 3, 14, 8, 0)
    at(run, reminders.send_advance)
    skipped = find(appt, run, "24 h reminder not sent")
    assert (skipped.status, skipped.detail) == ("skipped", "booked less than 24 h ahead")
    assert find(appt, run, "2 h reminder waiting to be sent").status == "pending"


def test_a_failed_confirmation_shows_the_error(smtp_settings, smtp, alice, carol):
    smtp.answer("550")
    appt = book(alice, carol, VISIT)
    sweeper.sweep(now=MORNING)
    failed = find(appt, MORNING, "Confirmation email failed")
    assert failed.status == "failed"
    assert failed.detail.startswith("to alice@example.com: recipient refused: 550")


def test_a_move_shows_the_new_time_and_what_was_about_the_old_one(booked, erin):
    moved_at = local(2031, 3, 12, 12, 0)
    new_start = local(2031, 3, 15, 11, 0)
    at(moved_at, appointments.reschedule, booked, new_start, erin)
    sweeper.sweep(now=moved_at)
    moved = find(booked, moved_at, "Moved")
    assert moved.detail == "to Sat 15 Mar 2031, 11:00"
    old = find(booked, moved_at, "Confirmation email sent")
    assert old.detail == "to alice@example.com (for the earlier time Fri 14 Mar 2031, 10:00)"
    assert find(booked, moved_at, "New-time email sent").detail == "to alice@example.com"
    assert find(booked, moved_at, "Booked").detail == ("for Fri 14 Mar 2031, 10:00 with "
                                                       "Dr Carol Clark")
    planned = find(booked, moved_at, "24 h reminder planned")
    assert planned.at == local(2031, 3, 14, 11, 0)  # of the new time


def test_a_whole_day_reminder_keeps_the_clinic_time_across_a_clock_change(smtp_settings, alice,
                                                                          carol):
    """The reminder jobs' rule (reminders.due_at): 24 h before a 09:00 visit is 09:00 the day
    before, also when the clocks went forward in between (23 real hours)."""
    now = local(2031, 3, 27, 8, 0)
    appt = book(alice, carol, local(2031, 3, 30, 9, 0), now=now)  # clocks go forward at 02:00
    planned = find(appt, now, "24 h reminder planned")
    assert planned.at == local(2031, 3, 29, 9, 0)
    assert planned.at == appt.start - timedelta(hours=23)


def test_the_reminders_planned_follow_the_settings(booked):
    settings.use(settings.get().replace(reminder_offsets=(timedelta(hours=3),)))
    whats = [e.what for e in events(booked, MORNING)]
    assert "3 h reminder planned" in whats
    assert "24 h reminder planned" not in whats and "2 h reminder planned" not in whats


def test_completion_no_show_and_review_are_on_the_timeline(smtp_settings, alice, bob, carol):
    done = book(alice, carol, VISIT)
    missed = book(bob, carol, VISIT + timedelta(hours=1))
    visit_day = local(2031, 3, 14, 10, 20)
    appointments.complete(done, carol, {"visit_type": "Checkup", "diagnosis": "Secret"},
                          now=visit_day)
    appointments.mark_no_show(missed, carol, now=local(2031, 3, 14, 11, 30))
    assert find(done, visit_day, "Visit completed").at == visit_day
    assert find(missed, visit_day, "Marked as missed (no-show)").at == local(2031, 3, 14, 11, 30)
    everything = " ".join(f"{e.what} {e.detail}" for e in events(done, visit_day))
    assert "Secret" not in everything and "Private reason" not in everything


# -- on the pages ---------------------------------------------------------------------------------


@pytest.fixture
def morning():
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


def test_the_admin_sees_the_timeline_with_links_to_the_messages(morning, smtp_settings,
                                                                new_client, alice, carol, erin):
    appt = book(alice, carol, VISIT)
    sweeper.sweep()
    admin = new_client()
    login(admin, erin)
    page = admin.get(f"/admin/appointments/{appt.id}").text
    assert 'id="timeline"' in page
    assert "Confirmation email sent" in page and "24 h reminder planned" in page
    confirmation = Message.get(Message.kind == "confirmation")
    assert f'href="/admin/messages/{confirmation.id}"' in page
    assert page.index("Confirmation email sent") < page.index("24 h reminder planned")
    # The words say the state: no badge beside them repeating "sent" or "planned".
    assert '<span class="what">Confirmation email sent</span>\n' in page
    assert "status-sent" not in page.split('id="timeline"')[1]


def test_a_doctor_sees_the_timeline_of_their_own_appointments_only(morning, smtp_settings,
                                                                   new_client, alice, carol,
                                                                   dave):
    appt = book(alice, carol, VISIT)
    sweeper.sweep()
    own = new_client()
    login(own, carol)
    page = own.get(f"/doctor/appointments/{appt.id}")
    assert page.status == 200
    assert "Confirmation email sent" in page.text and "2 h reminder planned" in page.text
    assert "/admin/messages/" not in page.text  # the admin's pages are not theirs
    other = new_client()
    login(other, dave)
    response = other.get(f"/doctor/appointments/{appt.id}")
    assert response.status == 404
    assert "Confirmation email" not in response.text
