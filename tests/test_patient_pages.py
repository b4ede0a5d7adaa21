"""The patient's pages, through HTTP: my appointments, finding a doctor, booking, cancelling,
rescheduling and the medical history; who may see them, and what happens when it cannot be
done."""

from datetime import timedelta

import pytest
import time_machine

from clinic import appointments, clock, people
from clinic.models import Appointment, Treatment
from tests.conftest import login, slot

GRID_STARTS = 16  # every doctor works 09:00-17:00 in 30-minute slots


def offered(instant):
    """How a slot's button carries its start: the ISO instant in the clinic's zone."""
    return f'value="{clock.local(instant).isoformat()}"'


def signed_in(client, user):
    login(client, user)
    client.get("/patient")  # sign-in renews the CSRF secret: pick up the new token
    return client


@pytest.fixture
def as_alice(client, alice, carol, dave):
    return signed_in(client, alice)


def book_for(patient, doctor, start, reason=""):
    return appointments.book(patient.id, doctor.id, start, reason)


def post_booking(browser, doctor, start, reason="", **extra):
    data = {"doctor_id": doctor.id, "start": clock.local(start).isoformat(), "reason": reason,
            "date": clock.local(start).date().isoformat(), **extra}
    return browser.post("/patient/appointments", data)


# -- who may see the pages ----------------------------------------------------------------------


def patient_pages(doctor, appointment):
    return ["/patient", "/patient/doctors", f"/patient/doctors/{doctor.id}", "/patient/history",
            f"/patient/appointments/{appointment.id}",
            f"/patient/appointments/{appointment.id}/cancel",
            f"/patient/appointments/{appointment.id}/reschedule"]


def test_every_page_opens_for_the_patient(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    for path in patient_pages(carol, appointment):
        response = as_alice.get(path)
        assert response.status == 200, (path, response)
        assert "Traceback" not in response.text


def test_anonymous_visitors_are_sent_to_sign_in(client, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    for path in patient_pages(carol, appointment):
        response = client.get(path)
        assert response.status == 303, path
        assert "/login?next=" in response.location, path


@pytest.mark.parametrize("who", ["carol", "erin"])
def test_doctors_and_admins_may_not_use_the_patient_pages(new_client, everyone, who):
    appointment = book_for(everyone["alice"], everyone["carol"], slot(1, "10:00"))
    browser = new_client()
    login(browser, everyone[who])
    browser.get("/login", follow=True)  # a page with the fresh CSRF token
    for path in patient_pages(everyone["carol"], appointment):
        response = browser.get(path)
        assert response.status == 403, path
        assert "Alice" not in response.text
    response = post_booking(browser, everyone["carol"], slot(1, "11:00"))
    assert response.status == 403
    response = browser.post(f"/patient/appointments/{appointment.id}/cancel")
    assert response.status == 403
    assert Appointment.select().count() == 1
    assert Appointment.get_by_id(appointment.id).status == "booked"


def test_alice_cannot_see_or_change_bobs_appointment(as_alice, bob, carol):
    start = slot(1, "10:00")
    bobs = book_for(bob, carol, start, "Bob's private reason")
    for path in (f"/patient/appointments/{bobs.id}", f"/patient/appointments/{bobs.id}/cancel",
                 f"/patient/appointments/{bobs.id}/reschedule"):
        response = as_alice.get(path)
        assert response.status == 404, path
        assert "Bob" not in response.text
    assert as_alice.post(f"/patient/appointments/{bobs.id}/cancel").status == 404
    response = as_alice.post(f"/patient/appointments/{bobs.id}/reschedule",
                             {"start": clock.local(slot(1, "11:00")).isoformat()})
    assert response.status == 404
    after = Appointment.get_by_id(bobs.id)
    assert (after.status, after.start, after.patient_id) == ("booked", start, bob.id)
    assert "Bob" not in as_alice.get("/patient").text
    assert "Bob" not in as_alice.get("/patient/history").text


# -- my appointments ----------------------------------------------------------------------------


def test_my_appointments_lists_upcoming_and_past(as_alice, alice, bob, carol, dave):
    upcoming = book_for(alice, carol, slot(2, "11:30"), "Check-up")
    past_start = slot(-3, "09:00")
    past = appointments.book(alice.id, dave.id, past_start, now=past_start - timedelta(days=1))
    cancelled = appointments.cancel(book_for(alice, dave, slot(4, "14:00")), alice)
    book_for(bob, carol, slot(1, "10:00"), "Not Alice's")

    page = as_alice.get("/patient").text
    upcoming_part, past_part = page.split("Past and cancelled")
    assert clock.local(upcoming.start).strftime("%a %d %b %Y, %H:%M") in upcoming_part
    assert "Dr Carol Clark" in upcoming_part and "Cardiology" in upcoming_part
    assert "Check-up" in upcoming_part
    assert f"/patient/appointments/{upcoming.id}/cancel" in upcoming_part
    assert f"/patient/appointments/{upcoming.id}/reschedule" in upcoming_part
    assert f"/patient/appointments/{past.id}" in past_part
    assert f"/patient/appointments/{cancelled.id}" in past_part
    assert "status-cancelled" in past_part and "Dr Dave Davis" in past_part
    assert "Not Alice&#39;s" not in page
    assert 'href="/patient/doctors"' in page and 'href="/patient/history"' in page


def test_my_appointments_says_to_call_after_the_cutoff(as_alice, alice, carol):
    soon = book_for(alice, carol, slot(1, "10:00"))
    later = book_for(alice, carol, slot(1, "15:00"))
    with time_machine.travel(soon.start - timedelta(hours=1), tick=False):
        page = as_alice.get("/patient").text
    assert f"/patient/appointments/{soon.id}/cancel" not in page
    assert f"/patient/appointments/{later.id}/cancel" in page
    assert "Online changes close 2 hours before the start" in page
    assert "please call the clinic" in page


def test_my_appointments_with_nothing_booked_invites_to_book(as_alice):
    page = as_alice.get("/patient").text
    assert "You have no upcoming appointments." in page


# -- finding a doctor and a time ----------------------------------------------------------------


def test_find_a_doctor_by_specialization(as_alice):
    page = as_alice.get("/patient/doctors?specialization=Cardiology").text
    assert "Dr Carol Clark" in page and "Dr Dave Davis" not in page
    assert '<option value="Cardiology" selected>' in page
    assert '<option value="Dermatology">' in page
    page = as_alice.get("/patient/doctors").text
    assert "Dr Carol Clark" in page and "Dr Dave Davis" in page


def test_find_a_doctor_links_to_their_free_times(as_alice, carol):
    page = as_alice.get("/patient/doctors?specialization=cardiology").text
    assert f'href="/patient/doctors/{carol.id}"' in page


def test_find_a_doctor_with_unknown_specialization_says_so(as_alice):
    page = as_alice.get("/patient/doctors?specialization=%3Cb%3EDentistry").text
    assert "No doctors found for “&lt;b&gt;Dentistry”." in page
    assert "Dr Carol Clark" not in page


def test_inactive_doctors_are_not_offered(as_alice, carol):
    people.set_active(carol.id, False)
    page = as_alice.get("/patient/doctors").text
    assert "Dr Carol Clark" not in page and "Dr Dave Davis" in page
    assert as_alice.get(f"/patient/doctors/{carol.id}").status == 404


def test_unknown_doctor_is_404(as_alice, alice):
    assert as_alice.get("/patient/doctors/99999").status == 404
    assert as_alice.get(f"/patient/doctors/{alice.id}").status == 404  # a patient, not a doctor
    assert as_alice.get("/patient/doctors/abc").status == 404


def test_slots_page_offers_the_free_times_of_the_day(as_alice, bob, carol):
    taken = book_for(bob, carol, slot(1, "10:00"))
    day = clock.local(taken.start).date()
    response = as_alice.get(f"/patient/doctors/{carol.id}?date={day.isoformat()}")
    assert response.status == 200
    page = response.text
    assert offered(slot(1, "09:00")) in page and offered(slot(1, "16:30")) in page
    assert offered(taken.start) not in page
    assert page.count('name="start"') == GRID_STARTS - 1
    assert f'?date={(day + timedelta(days=1)).isoformat()}"' in page
    assert f'?date={(day - timedelta(days=1)).isoformat()}"' in page
    assert 'name="reason"' in page and 'method="post"' in page


def test_slots_page_defaults_to_today_and_has_no_previous_day(as_alice, carol):
    today = clock.local().date()
    page = as_alice.get(f"/patient/doctors/{carol.id}").text
    assert f'name="date" type="date" min="{today.isoformat()}"' in page
    assert f'value="{today.isoformat()}"' in page
    assert "Previous day" not in page
    assert f'?date={(today + timedelta(days=1)).isoformat()}"' in page


def test_slots_page_for_a_past_day_offers_nothing(as_alice, carol):
    day = (clock.local() - timedelta(days=2)).date()
    page = as_alice.get(f"/patient/doctors/{carol.id}?date={day.isoformat()}").text
    assert 'name="start"' not in page
    assert "This day has passed." in page


def test_slots_page_with_a_bad_date_shows_a_form_error(as_alice, carol):
    response = as_alice.get(f"/patient/doctors/{carol.id}?date=next%20tuesday")
    assert response.status == 400
    assert "Enter the date as YYYY-MM-DD." in response.text
    assert 'value="next tuesday"' in response.text  # kept, to correct
    assert "Traceback" not in response.text


# -- booking ------------------------------------------------------------------------------------


def test_booking_a_free_slot(as_alice, alice, carol):
    start = slot(1, "11:00")
    response = post_booking(as_alice, carol, start, "Chest pain when climbing stairs")
    assert response.status == 303
    appointment = Appointment.get()
    assert response.location.endswith(f"/patient/appointments/{appointment.id}")
    assert (appointment.patient_id, appointment.doctor_id, appointment.start) == (
        alice.id, carol.id, start)
    assert appointment.reason == "Chest pain when climbing stairs"
    page = as_alice.get(response.location).text
    assert "Booked: " + clock.local(start).strftime("%a %d %b %Y, %H:%M") in page
    assert "Chest pain when climbing stairs" in page
    home = as_alice.get("/patient").text.split("Past and cancelled")[0]
    assert f"/patient/appointments/{appointment.id}" in home
    slots = as_alice.get(f"/patient/doctors/{carol.id}?date={clock.local(start).date()}").text
    assert offered(start) not in slots


def test_booking_a_taken_slot_explains_and_keeps_the_reason(as_alice, bob, carol):
    start = slot(1, "10:00")
    book_for(bob, carol, start)
    response = post_booking(as_alice, carol, start, "Headache & dizziness")
    assert response.status == 409
    assert appointments.SLOT_TAKEN in response.text
    assert ">Headache &amp; dizziness</textarea>" in response.text
    assert offered(slot(1, "10:30")) in response.text  # the other times, to choose again
    assert Appointment.select().count() == 1


def test_a_second_click_on_the_same_time_says_it_is_already_booked(as_alice, carol):
    start = slot(1, "10:00")
    assert post_booking(as_alice, carol, start, "Back pain").status == 303
    again = post_booking(as_alice, carol, start, "Back pain")
    assert again.status == 409
    assert "You already booked this time" in again.text
    assert "someone else" not in again.text
    assert Appointment.select().count() == 1


@pytest.mark.parametrize("start, message", [
    (lambda: slot(-1, "10:00"), "That time has already passed."),
    (lambda: slot(1, "10:10"), "The doctor does not see patients at that time."),
    (lambda: slot(1, "07:00"), "The doctor does not see patients at that time."),
    (lambda: slot(120, "10:00"), "That time is too far ahead to book."),
])
def test_booking_a_time_that_is_not_offered_is_refused(as_alice, carol, start, message):
    response = post_booking(as_alice, carol, start(), "My reason")
    assert response.status == 400
    assert message in response.text
    assert ">My reason</textarea>" in response.text
    assert Appointment.select().count() == 0


def test_booking_with_an_inactive_doctor_is_refused(as_alice, carol):
    as_alice.get(f"/patient/doctors/{carol.id}")
    people.set_active(carol.id, False)
    response = post_booking(as_alice, carol, slot(1, "10:00"))
    assert response.status == 400
    assert "This doctor is not taking bookings." in response.text
    assert Appointment.select().count() == 0


def test_booking_with_a_garbled_start_is_refused(as_alice, carol):
    response = as_alice.post("/patient/appointments", {"doctor_id": carol.id,
                                                       "start": "tomorrow morning"})
    assert response.status == 400
    assert "start must be an ISO 8601 date and time" in response.text
    assert Appointment.select().count() == 0


def test_booking_twice_at_once_is_refused(as_alice, alice, carol, dave):
    start = slot(1, "10:00")
    book_for(alice, carol, start)
    response = post_booking(as_alice, dave, start)
    assert response.status == 409
    assert "You already have an appointment at that time." in response.text
    assert Appointment.select().count() == 1


def test_booking_with_a_too_long_reason_says_so_next_to_it(as_alice, carol):
    response = post_booking(as_alice, carol, slot(1, "10:00"), "x" * 2001)
    assert response.status == 400
    assert "The reason is too long." in response.text
    assert '<p class="error" id="e-reason">Keep it under 2000 characters.</p>' in response.text
    assert Appointment.select().count() == 0


def test_booking_without_csrf_token_is_refused(as_alice, carol):
    data = {"doctor_id": carol.id, "start": clock.local(slot(1, "10:00")).isoformat()}
    response = as_alice.post("/patient/appointments", data, csrf=False)
    assert response.status == 403
    assert "Form expired" in response.text
    assert Appointment.select().count() == 0


def test_reason_is_shown_escaped(as_alice, carol):
    response = post_booking(as_alice, carol, slot(1, "10:00"), '<script>alert("x")</script>')
    assert response.status == 303
    for path in (response.location, "/patient"):
        page = as_alice.get(path).text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page, path
        assert "<script>alert" not in page, path


# -- details, cancelling ------------------------------------------------------------------------


def test_appointment_details(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"), "Follow-up")
    page = as_alice.get(f"/patient/appointments/{appointment.id}").text
    assert clock.local(appointment.start).strftime("%a %d %b %Y, %H:%M") in page
    assert "Dr Carol Clark (Cardiology)" in page and "Follow-up" in page
    assert "status-booked" in page
    assert f"/patient/appointments/{appointment.id}/cancel" in page
    assert f"/patient/appointments/{appointment.id}/reschedule" in page
    assert "Treatment" not in page


def test_unknown_appointment_is_404(as_alice):
    assert as_alice.get("/patient/appointments/99999").status == 404
    assert as_alice.post("/patient/appointments/99999/cancel").status == 404


def test_cancel_before_the_cutoff(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    confirm = as_alice.get(f"/patient/appointments/{appointment.id}/cancel")
    assert confirm.status == 200
    assert "Cancel this appointment?" in confirm.text
    assert f'action="/patient/appointments/{appointment.id}/cancel"' in confirm.text
    assert Appointment.get_by_id(appointment.id).status == "booked"  # asking changes nothing

    response = as_alice.post(f"/patient/appointments/{appointment.id}/cancel")
    assert response.status == 303 and response.location.endswith("/patient")
    assert Appointment.get_by_id(appointment.id).status == "cancelled"
    page = as_alice.get("/patient").text
    assert "is cancelled." in page
    assert "You have no upcoming appointments." in page
    day = clock.local(appointment.start).date()
    slots = as_alice.get(f"/patient/doctors/{carol.id}?date={day}")  # the time is free again
    assert offered(appointment.start) in slots.text


def test_cancel_after_the_cutoff_is_refused(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    as_alice.get(f"/patient/appointments/{appointment.id}/cancel")
    with time_machine.travel(appointment.start - timedelta(minutes=119), tick=False):
        page = as_alice.get(f"/patient/appointments/{appointment.id}")
        assert f"/patient/appointments/{appointment.id}/cancel" not in page.text
        assert "please call the clinic" in page.text
        confirm = as_alice.get(f"/patient/appointments/{appointment.id}/cancel")
        assert confirm.status == 409
        response = as_alice.post(f"/patient/appointments/{appointment.id}/cancel")
    assert response.status == 409
    assert "Appointments can be changed online until 2 hours before they start." in response.text
    assert "Please call the clinic." in response.text
    assert Appointment.get_by_id(appointment.id).status == "booked"


def test_cancel_just_before_the_cutoff_works(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    with time_machine.travel(appointment.start - timedelta(minutes=121), tick=False):
        as_alice.get(f"/patient/appointments/{appointment.id}/cancel")
        response = as_alice.post(f"/patient/appointments/{appointment.id}/cancel")
    assert response.status == 303
    assert Appointment.get_by_id(appointment.id).status == "cancelled"


def test_cancelling_twice_says_why(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    as_alice.get(f"/patient/appointments/{appointment.id}/cancel")
    assert as_alice.post(f"/patient/appointments/{appointment.id}/cancel").status == 303
    response = as_alice.post(f"/patient/appointments/{appointment.id}/cancel")
    assert response.status == 409
    assert "This appointment is cancelled and can no longer be changed." in response.text


def test_cancel_without_csrf_token_is_refused(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    response = as_alice.post(f"/patient/appointments/{appointment.id}/cancel", csrf=False)
    assert response.status == 403
    assert Appointment.get_by_id(appointment.id).status == "booked"


# -- rescheduling -------------------------------------------------------------------------------


def test_reschedule_offers_the_same_doctors_times_on_the_appointments_day(as_alice, alice, bob,
                                                                          carol):
    appointment = book_for(alice, carol, slot(2, "10:00"))
    taken = book_for(bob, carol, slot(2, "11:00"))
    page = as_alice.get(f"/patient/appointments/{appointment.id}/reschedule").text
    assert "Reschedule your appointment" in page and "Dr Carol Clark" in page
    assert f'action="/patient/appointments/{appointment.id}/reschedule"' in page
    assert offered(slot(2, "10:30")) in page
    assert offered(taken.start) not in page
    assert "10:00 (yours)" in page  # its own time is shown, not offered
    assert offered(appointment.start) not in page
    assert 'name="reason"' not in page


def test_reschedule_moves_the_appointment_and_frees_the_old_slot(as_alice, alice, carol):
    old_start, new_start = slot(1, "10:00"), slot(2, "15:30")
    appointment = book_for(alice, carol, old_start, "Keep me")
    as_alice.get(f"/patient/appointments/{appointment.id}/reschedule"
                 f"?date={clock.local(new_start).date()}")
    response = as_alice.post(f"/patient/appointments/{appointment.id}/reschedule",
                             {"start": clock.local(new_start).isoformat()})
    assert response.status == 303
    assert response.location.endswith(f"/patient/appointments/{appointment.id}")
    moved = Appointment.get_by_id(appointment.id)
    assert (moved.start, moved.status, moved.reason) == (new_start, "booked", "Keep me")
    assert Appointment.select().count() == 1
    page = as_alice.get(response.location).text
    assert "moved to " + clock.local(new_start).strftime("%a %d %b %Y, %H:%M") in page
    old_day = as_alice.get(f"/patient/doctors/{carol.id}?date={clock.local(old_start).date()}")
    assert offered(old_start) in old_day.text
    new_day = as_alice.get(f"/patient/doctors/{carol.id}?date={clock.local(new_start).date()}")
    assert offered(new_start) not in new_day.text


def test_reschedule_to_a_taken_slot_explains(as_alice, alice, bob, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    taken = book_for(bob, carol, slot(1, "11:00"))
    as_alice.get(f"/patient/appointments/{appointment.id}/reschedule")
    response = as_alice.post(f"/patient/appointments/{appointment.id}/reschedule",
                             {"start": clock.local(taken.start).isoformat(),
                              "date": clock.local(taken.start).date().isoformat()})
    assert response.status == 409
    assert appointments.SLOT_TAKEN in response.text
    assert offered(slot(1, "11:30")) in response.text
    assert Appointment.get_by_id(appointment.id).start == appointment.start


def test_reschedule_after_the_cutoff_is_refused(as_alice, alice, carol):
    appointment = book_for(alice, carol, slot(1, "10:00"))
    as_alice.get(f"/patient/appointments/{appointment.id}/reschedule")
    with time_machine.travel(appointment.start - timedelta(hours=1), tick=False):
        page = as_alice.get(f"/patient/appointments/{appointment.id}/reschedule")
        assert page.status == 409
        assert "Please call the clinic." in page.text
        response = as_alice.post(f"/patient/appointments/{appointment.id}/reschedule",
                                 {"start": clock.local(slot(1, "15:00")).isoformat()})
    assert response.status == 409
    assert "Appointments can be changed online until 2 hours before they start." in response.text
    assert Appointment.get_by_id(appointment.id).start == appointment.start


# -- medical history ----------------------------------------------------------------------------


def test_history_shows_each_completed_visit_with_its_treatment(as_alice, alice, bob, carol,
                                                               dave):
    visit = book_for(alice, carol, slot(1, "10:00"), "Palpitations")
    later = book_for(alice, dave, slot(3, "14:00"))
    bobs = book_for(bob, carol, slot(1, "11:00"))
    record = {"visit_type": "Consultation", "symptoms": "Racing heart at night",
              "diagnosis": "Benign <ectopic> beats", "treatment": "Reassurance",
              "prescription": "Magnesium 400 mg daily", "notes": "Come back in 6 months"}
    with time_machine.travel(bobs.start + timedelta(minutes=20), tick=False):
        appointments.complete(visit, carol, record)
        appointments.complete(bobs, carol, {"visit_type": "Bob's visit",
                                            "diagnosis": "Bob's diagnosis"})
    assert Treatment.select().count() == 2

    page = as_alice.get("/patient/history").text
    assert clock.local(visit.start).strftime("%a %d %b %Y") in page
    assert "Dr Carol Clark" in page and "Cardiology" in page
    for label, value in [("Visit type", "Consultation"), ("Symptoms", "Racing heart at night"),
                         ("Diagnosis", "Benign &lt;ectopic&gt; beats"),
                         ("Treatment", "Reassurance"),
                         ("Prescription", "Magnesium 400 mg daily"),
                         ("Notes", "Come back in 6 months")]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page
    assert "Bob" not in page
    assert f"/patient/appointments/{later.id}" not in page  # not completed yet

    details = as_alice.get(f"/patient/appointments/{visit.id}").text
    assert "status-completed" in details and "Magnesium 400 mg daily" in details
    assert f"/patient/appointments/{visit.id}/cancel" not in details


def test_history_with_no_visits_says_so(as_alice):
    assert "No completed visits yet." in as_alice.get("/patient/history").text


def test_the_menu_folds_behind_one_line_and_the_time_zone_reads_as_a_place(as_alice, new_client):
    page = as_alice.get("/patient").text
    menu = page.split('<details class="menu">')[1].split("</details>")[0]
    assert "<summary>Menu</summary>" in menu and 'href="/patient/doctors"' in menu
    assert '<nav class="wide" aria-label="Menu">' in page
    assert "Times are Berlin time." in page and "Times are in" not in page
    assert "Times are" not in new_client().get("/login").text  # no times shown there
