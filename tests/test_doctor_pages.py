"""The doctor's pages through HTTP: the day's schedule, what is coming, a patient's record,
recording a treatment, marking a no-show, and what a doctor may not see or do."""

from datetime import datetime

import pytest
import time_machine

from clinic import appointments
from clinic.models import Appointment, Treatment
from tests.conftest import TZ, login, make_patient, slot

# A Wednesday morning, before the first slot: "today" has slots still ahead of it.
MORNING = datetime(2031, 3, 12, 8, 0, tzinfo=TZ)

TREATMENT = {
    "visit_type": "Consultation",
    "symptoms": "Chest pain when climbing stairs",
    "diagnosis": "Stable angina",
    "treatment": "Rest; ECG done",
    "prescription": "Nitroglycerin spray",
    "notes": "Follow up in 4 weeks",
}


@pytest.fixture
def morning():
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


def book(patient, doctor, start, reason=""):
    return appointments.book(patient.id, doctor.id, start, reason)


def state(appointment):
    """What the database holds for an appointment: its status and whether it has a record."""
    status = Appointment.get_by_id(appointment.id).status
    return status, Treatment.select().where(Treatment.appointment == appointment.id).exists()


def doctor_client(new_client, doctor):
    browser = new_client()
    login(browser, doctor)
    return browser


# -- who may see the pages ----------------------------------------------------------------------


def test_doctor_pages_are_for_doctors_only(new_client, everyone):
    alice, carol = everyone["alice"], everyone["carol"]
    appt = book(alice, carol, slot(1), "Checkup")
    paths = ["/doctor", "/doctor/upcoming", f"/doctor/patients/{alice.id}",
             f"/doctor/appointments/{appt.id}"]
    for name in ("alice", "erin"):
        browser = new_client()
        login(browser, everyone[name])
        for path in paths:
            response = browser.get(path)
            assert response.status == 403, (name, path)
            assert "Checkup" not in response.text
    anonymous = new_client()
    for path in paths:
        response = anonymous.get(path)
        assert response.status == 303
        assert "/login?next=" in response.location


def test_posts_by_other_roles_change_nothing(new_client, everyone):
    alice, carol = everyone["alice"], everyone["carol"]
    appt = book(alice, carol, slot(1))
    browser = new_client()
    login(browser, everyone["erin"])
    browser.get("/admin")
    assert browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT).status == 403
    assert browser.post(f"/doctor/appointments/{appt.id}/no-show").status == 403
    assert state(appt) == ("booked", False)


# -- today and upcoming -------------------------------------------------------------------------


def test_today_shows_the_doctors_own_appointments_of_the_day_in_time_order(
        morning, new_client, alice, bob, carol, dave):
    book(alice, carol, slot(0, "11:00"), "Palpitations")
    book(bob, carol, slot(0, "09:30"), "Blood pressure")
    book(alice, dave, slot(0, "10:00"), "Rash on the arm")
    book(bob, carol, slot(1, "09:00"), "Next day visit")
    browser = doctor_client(new_client, carol)

    page = browser.get("/doctor").text

    assert "Today, Wed 12 Mar 2031" in page
    assert page.index("09:30") < page.index("Blood pressure") < page.index("11:00")
    assert page.index("Blood pressure") < page.index("Palpitations")
    assert f'href="/doctor/patients/{alice.id}">Alice Adams' in page
    assert f'href="/doctor/patients/{bob.id}">Bob Brown' in page
    assert "Rash on the arm" not in page  # dave's
    assert "Next day visit" not in page
    assert 'status-booked' in page


def test_today_can_step_to_another_day(morning, new_client, bob, carol):
    book(bob, carol, slot(1, "09:00"), "Next day visit")
    browser = doctor_client(new_client, carol)
    assert 'href="/doctor?date=2031-03-13"' in browser.get("/doctor").text

    page = browser.get("/doctor?date=2031-03-13").text

    assert "Thu 13 Mar 2031" in page and "Next day visit" in page
    assert browser.get("/doctor?date=13.03.2031").status == 400


def test_today_offers_no_show_only_once_the_visit_has_started(morning, new_client, alice, bob,
                                                                carol):
    started = book(alice, carol, slot(0, "09:00"))
    later = book(bob, carol, slot(0, "15:00"))
    morning.move_to(datetime(2031, 3, 12, 9, 10, tzinfo=TZ))
    page = doctor_client(new_client, carol).get("/doctor").text
    assert f"/doctor/appointments/{started.id}/no-show" in page
    assert f"/doctor/appointments/{later.id}/no-show" not in page


def test_upcoming_lists_future_active_appointments_grouped_by_day(morning, new_client, alice,
                                                                   bob, carol, dave):
    book(alice, carol, slot(1, "10:00"), "First")
    book(bob, carol, slot(1, "11:00"), "Second")
    book(alice, carol, slot(3, "09:00"), "Third")
    cancelled = book(bob, carol, slot(2, "09:00"), "Called off")
    appointments.cancel(cancelled, None)
    book(bob, dave, slot(2, "10:00"), "Seen by Dave")
    browser = doctor_client(new_client, carol)

    page = browser.get("/doctor/upcoming").text

    assert page.index("Thu 13 Mar 2031") < page.index("First") < page.index("Second")
    assert page.index("Second") < page.index("Sat 15 Mar 2031") < page.index("Third")
    assert "2 appointments" in page and "1 appointment<" in page
    assert "Called off" not in page and "Seen by Dave" not in page
    assert "Fri 14 Mar 2031" not in page


# -- a patient's record -------------------------------------------------------------------------


def test_patient_record_shows_details_visits_and_history_with_every_doctor(
        morning, new_client, alice, carol, dave):
    with_dave = book(alice, dave, slot(0, "09:00"), "Itchy skin")
    appointments.complete(with_dave, dave, {"visit_type": "Consultation",
                                            "diagnosis": "Contact dermatitis",
                                            "prescription": "Hydrocortisone cream"},
                          now=with_dave.end)
    book(alice, carol, slot(2, "10:00"), "Heart check")
    browser = doctor_client(new_client, carol)

    response = browser.get(f"/doctor/patients/{alice.id}")

    assert response.status == 200
    page = response.text
    assert "Alice Adams" in page and "alice@example.com" in page
    assert "+49 30 1234567" in page and "1980-05-17" in page
    assert "Heart check" in page  # a visit with carol
    assert "Contact dermatitis" in page and "Hydrocortisone cream" in page  # dave's, completed
    assert "Dr Dave Davis" in page
    assert f"/doctor/appointments/{with_dave.id}" not in page  # not carol's to open


def test_doctor_cannot_see_the_record_of_another_doctors_patient(morning, new_client, bob,
                                                                  carol, dave):
    visit = book(bob, dave, slot(0, "09:00"), "Mole check")
    appointments.complete(visit, dave, {"visit_type": "Check-up", "diagnosis": "Benign naevus"},
                          now=visit.end)
    browser = doctor_client(new_client, carol)

    response = browser.get(f"/doctor/patients/{bob.id}")

    assert response.status == 404
    assert "Benign naevus" not in response.text and "Bob Brown" not in response.text
    assert browser.get("/doctor/patients/999999").status == 404


def test_a_booking_with_the_doctor_opens_the_patients_record_to_them(morning, new_client, bob,
                                                                      carol, dave):
    visit = book(bob, dave, slot(0, "09:00"))
    appointments.complete(visit, dave, {"visit_type": "Check-up", "diagnosis": "Benign naevus"},
                          now=visit.end)
    browser = doctor_client(new_client, carol)
    assert browser.get(f"/doctor/patients/{bob.id}").status == 404

    book(bob, carol, slot(1, "10:00"))

    response = browser.get(f"/doctor/patients/{bob.id}")
    assert response.status == 200 and "Benign naevus" in response.text


# -- one appointment: completing it, marking a no-show ------------------------------------------


def test_doctor_cannot_open_complete_or_mark_another_doctors_appointment(morning, new_client,
                                                                        alice, carol, dave):
    appt = book(alice, dave, slot(0, "09:00"), "Seen by Dave")
    morning.move_to(datetime(2031, 3, 12, 9, 40, tzinfo=TZ))  # both actions would be allowed
    browser = doctor_client(new_client, carol)

    assert browser.get(f"/doctor/appointments/{appt.id}").status == 404
    assert browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT).status == 404
    assert browser.post(f"/doctor/appointments/{appt.id}/no-show").status == 404
    assert state(appt) == ("booked", False)
    assert browser.get("/doctor/appointments/999999").status == 404


def test_appointment_page_shows_the_visit_and_offers_the_form_from_its_start(morning, new_client,
                                                                           alice, carol):
    appt = book(alice, carol, slot(0, "10:00"), "Shortness of breath")
    browser = doctor_client(new_client, carol)
    page = browser.get(f"/doctor/appointments/{appt.id}").text
    assert "Shortness of breath" in page and "Alice Adams" in page
    assert f'action="/doctor/appointments/{appt.id}/complete"' not in page  # 08:00: too early
    assert "can be recorded from Wed 12 Mar 2031, 10:00 on" in page
    assert f"/doctor/appointments/{appt.id}/no-show" not in page  # not started yet

    morning.move_to(datetime(2031, 3, 12, 10, 0, tzinfo=TZ))
    page = browser.get(f"/doctor/appointments/{appt.id}").text
    assert f'action="/doctor/appointments/{appt.id}/complete"' in page
    for name in TREATMENT:
        assert f'name="{name}"' in page


@pytest.mark.parametrize("when", [datetime(2031, 3, 12, 9, 59, tzinfo=TZ),  # that morning
                                  datetime(2031, 3, 11, 16, 0, tzinfo=TZ)])  # the day before
def test_completing_before_the_visit_starts_is_refused(morning, new_client, alice, carol, when):
    appt = book(alice, carol, slot(0, "10:00"))
    browser = doctor_client(new_client, carol)
    browser.get("/doctor")
    morning.move_to(when)

    response = browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT)

    assert response.status == 409
    assert "A visit can be completed from its start on: Wed 12 Mar 2031, 10:00." in response.text
    assert "Chest pain when climbing stairs" in response.text  # what was typed is not lost
    assert state(appt) == ("booked", False)


def test_completing_on_the_visits_day_records_the_treatment(morning, new_client, alice, carol):
    appt = book(alice, carol, slot(1, "10:00"))
    browser = doctor_client(new_client, carol)
    morning.move_to(datetime(2031, 3, 13, 10, 25, tzinfo=TZ))
    browser.get(f"/doctor/appointments/{appt.id}")

    response = browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT)

    assert response.status == 303
    assert response.location.endswith(f"/doctor/appointments/{appt.id}")
    assert state(appt) == ("completed", True)
    record = Treatment.get(Treatment.appointment == appt.id)
    assert {name: getattr(record, name) for name in TREATMENT} == TREATMENT
    page = browser.get(response.location).text
    assert "Visit completed" in page and "Stable angina" in page
    assert f'action="/doctor/appointments/{appt.id}/complete"' not in page
    assert "Stable angina" in browser.get(f"/doctor/patients/{alice.id}").text

    again = browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT)
    assert again.status == 409 and "This appointment is completed." in again.text
    assert Treatment.select().count() == 1


def test_completing_without_a_visit_type_keeps_what_was_typed(morning, new_client, alice, carol):
    appt = book(alice, carol, slot(0, "10:00"))
    morning.move_to(datetime(2031, 3, 12, 10, 20, tzinfo=TZ))
    browser = doctor_client(new_client, carol)
    browser.get(f"/doctor/appointments/{appt.id}")

    response = browser.post(f"/doctor/appointments/{appt.id}/complete",
                            {**TREATMENT, "visit_type": "  ", "notes": "BP <140/90> & \"ok\""})

    assert response.status == 400
    assert 'id="e-visit_type">Enter the type of visit.' in response.text
    assert "BP &lt;140/90&gt; &amp; &#34;ok&#34;" in response.text
    assert "Nitroglycerin spray" in response.text
    assert state(appt) == ("booked", False)


def test_no_show_before_the_start_is_refused(morning, new_client, alice, carol):
    appt = book(alice, carol, slot(0, "10:00"))
    browser = doctor_client(new_client, carol)
    browser.get(f"/doctor/appointments/{appt.id}")

    response = browser.post(f"/doctor/appointments/{appt.id}/no-show")

    assert response.status == 409
    assert "only after it was due to start" in response.text
    assert state(appt) == ("booked", False)


def test_no_show_after_the_start_marks_the_appointment(morning, new_client, alice, carol):
    appt = book(alice, carol, slot(0, "10:00"))
    browser = doctor_client(new_client, carol)
    morning.move_to(datetime(2031, 3, 12, 10, 15, tzinfo=TZ))
    browser.get(f"/doctor/appointments/{appt.id}")

    response = browser.post(f"/doctor/appointments/{appt.id}/no-show")

    assert response.status == 303
    assert state(appt) == ("no_show", False)
    page = browser.get(response.location).text
    assert "status-no_show" in page and "marked as a no-show: they did not come" in page
    # The patient may have come after all: the record can still be written, the mark undone.
    assert f'action="/doctor/appointments/{appt.id}/complete"' in page
    assert f'action="/doctor/appointments/{appt.id}/undo-no-show"' in page


# -- a no-show completed later, or undone -------------------------------------------------------


def test_a_visit_the_job_marked_can_be_completed_that_evening_and_the_next_day(
        morning, new_client, alice, carol):
    appt = book(alice, carol, slot(0, "10:00"))
    assert appointments.mark_no_shows(now=datetime(2031, 3, 12, 11, 15, tzinfo=TZ)) == {
        "marked": 1}
    morning.move_to(datetime(2031, 3, 13, 18, 0, tzinfo=TZ))  # the next evening
    browser = doctor_client(new_client, carol)
    page = browser.get(f"/doctor/appointments/{appt.id}").text
    assert "If the patient came after all, record the visit" in page
    assert f'action="/doctor/appointments/{appt.id}/complete"' in page
    assert f'action="/doctor/appointments/{appt.id}/undo-no-show"' not in page  # not its day

    response = browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT)

    assert response.status == 303
    assert state(appt) == ("completed", True)
    assert "Stable angina" in browser.get(f"/doctor/patients/{alice.id}").text


def test_a_no_show_cannot_be_completed_two_days_later(morning, new_client, alice, carol):
    appt = book(alice, carol, slot(0, "10:00"))
    appointments.mark_no_shows(now=datetime(2031, 3, 12, 11, 15, tzinfo=TZ))
    # 00:30 Berlin on the 14th is still the 13th in UTC: the clinic's days count.
    morning.move_to(datetime(2031, 3, 14, 0, 30, tzinfo=TZ))
    browser = doctor_client(new_client, carol)
    page = browser.get(f"/doctor/appointments/{appt.id}").text
    assert f'action="/doctor/appointments/{appt.id}/complete"' not in page

    response = browser.post(f"/doctor/appointments/{appt.id}/complete", TREATMENT)

    assert response.status == 409
    assert "can be completed on its day and the next only" in response.text
    assert state(appt) == ("no_show", False)


@pytest.mark.parametrize("was", ["booked", "confirmed"])
def test_the_doctor_undoes_a_no_show_mark_that_day_and_the_job_leaves_it(
        morning, new_client, alice, carol, was):
    appt = book(alice, carol, slot(0, "10:00"))
    if was == "confirmed":
        appointments.confirm(appt)
    morning.move_to(datetime(2031, 3, 12, 10, 10, tzinfo=TZ))
    browser = doctor_client(new_client, carol)
    browser.get(f"/doctor/appointments/{appt.id}")
    assert browser.post(f"/doctor/appointments/{appt.id}/no-show").status == 303
    morning.move_to(datetime(2031, 3, 12, 10, 40, tzinfo=TZ))
    page = browser.get(f"/doctor/appointments/{appt.id}").text
    assert f"The visit goes back to {was}." in page

    response = browser.post(f"/doctor/appointments/{appt.id}/undo-no-show")

    assert response.status == 303
    assert state(appt) == (was, False)
    assert "The no-show mark is undone" in browser.get(response.location).text
    # The no-shows job would mark it again an hour after its start: not a visit undone.
    assert appointments.mark_no_shows(now=datetime(2031, 3, 12, 12, 0, tzinfo=TZ)) == {
        "marked": 0}
    assert state(appt) == (was, False)


def test_a_no_show_mark_cannot_be_undone_the_next_day_or_by_another_doctor(
        morning, new_client, alice, carol, dave):
    appt = book(alice, carol, slot(0, "10:00"))
    appointments.mark_no_shows(now=datetime(2031, 3, 12, 11, 15, tzinfo=TZ))
    other = doctor_client(new_client, dave)
    other.get("/doctor")
    assert other.post(f"/doctor/appointments/{appt.id}/undo-no-show").status == 404
    morning.move_to(datetime(2031, 3, 13, 9, 0, tzinfo=TZ))
    browser = doctor_client(new_client, carol)
    browser.get("/doctor")

    response = browser.post(f"/doctor/appointments/{appt.id}/undo-no-show")

    assert response.status == 409 and "undone on the visit&#39;s day only" in response.text
    assert state(appt) == ("no_show", False)


def test_post_without_csrf_token_changes_nothing(morning, new_client, alice, carol):
    appt = book(alice, carol, slot(0, "10:00"))
    morning.move_to(datetime(2031, 3, 12, 10, 15, tzinfo=TZ))
    browser = doctor_client(new_client, carol)
    assert browser.post(f"/doctor/appointments/{appt.id}/no-show", csrf=False).status == 403
    assert state(appt) == ("booked", False)


# -- escaping -----------------------------------------------------------------------------------


def test_text_typed_by_patients_is_escaped(morning, new_client, carol):
    mallory = make_patient("mallory@example.com", "<script>alert(1)</script>")
    appt = book(mallory, carol, slot(0, "10:00"), "<img src=x onerror=alert(2)>")
    browser = doctor_client(new_client, carol)
    for path in ("/doctor", "/doctor/upcoming", f"/doctor/patients/{mallory.id}",
                 f"/doctor/appointments/{appt.id}"):
        page = browser.get(path).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_the_schedule_follows_the_clinics_day_not_utc(new_client, alice, carol):
    # 00:30 in Berlin on 13 March is still 12 March in UTC.
    with time_machine.travel(datetime(2031, 3, 12, 23, 50, tzinfo=TZ), tick=False) as traveller:
        appt = book(alice, carol, slot(1, "09:00"), "Early visit")
        browser = doctor_client(new_client, carol)
        traveller.move_to(datetime(2031, 3, 13, 0, 30, tzinfo=TZ))
        page = browser.get("/doctor").text
        assert "Today, Thu 13 Mar 2031" in page and "Early visit" in page
        assert f"/doctor/appointments/{appt.id}" in page
