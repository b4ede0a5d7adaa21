"""The front desk's pages through HTTP: the day sheet, booking for a found or a new patient,
moving, cancelling, checking in, and the admin's staff page. Dana works at the desk; Erin is
the admin; Alice is a patient; Dr Carol and Dr Dave are doctors."""

import re
from urllib.parse import quote

import pytest
import time_machine

from clinic import appointments, people
from clinic.models import Appointment, AuditEntry, Session, User
from tests.conftest import PASSWORD, TZ, login
from tests.test_desk_api import MORNING, at


@pytest.fixture
def morning():
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


@pytest.fixture
def desk(morning, new_client, dana):
    browser = new_client()
    login(browser, dana)
    browser.get("/desk")  # the forms' CSRF token, as a browser has it
    return browser


def test_the_desk_lands_on_the_day_sheet(morning, new_client, dana):
    browser = new_client()
    response = browser.login(dana.email)
    assert response.location.endswith("/desk")
    sheet = browser.get("/desk")
    assert sheet.headers["cache-control"] == "no-store"  # patients' names: kept out of caches
    page = sheet.text
    assert 'href="/desk">Day sheet</a>' in page
    assert 'href="/admin/waitlist">Waitlist</a>' in page  # the desk keeps the waitlist too
    assert browser.get("/admin/waitlist").status == 200
    assert "/admin/doctors" not in page and "/doctor/upcoming" not in page


def test_the_sheet_has_a_column_per_working_doctor_with_visits_and_free_times(
        desk, alice, carol, dave):
    appointments.book(alice.id, carol.id, at("10:00"), "Knee")
    people.create_doctor("Dr Olga Off", "olga@example.com", PASSWORD, "Surgery", 30,
                         {"sun": [["09:00", "12:00"]]})  # not on Wednesdays
    page = desk.get("/desk").text
    columns = re.findall(r'<section class="sheet-column card" aria-label="([^"]+)"', page)
    assert columns == ["Dr Carol Clark", "Dr Dave Davis"]
    carol_column = page.split('aria-label="Dr Carol Clark"')[1].split("</section>")[0]
    assert "Alice Adams" in carol_column and "status-booked" in carol_column
    assert "Knee" not in page  # the reason stays with the doctor
    assert 'action="/desk/book"' in carol_column
    assert f'name="doctor_id" value="{carol.id}"' in carol_column
    free = re.findall(r'class="small free" type="submit" name="start" value="([^"]+)">'
                      r'(\d\d:\d\d)<', carol_column)
    assert [t for _, t in free][:3] == ["09:00", "09:30", "10:30"]  # 10:00 is taken
    assert free[0][0] == at("09:00").isoformat()


def test_the_sheet_reads_the_day_in_few_queries(desk, alice, carol, dave, statements):
    for hhmm in ("09:00", "10:00", "11:00"):
        appointments.book(alice.id, carol.id, at(hhmm))
        appointments.book(alice.id, dave.id, at(hhmm, days=1))
    from clinic import desk as day_sheet_module

    statements.clear()
    columns = day_sheet_module.day_sheet(MORNING.date())
    assert [len(c.visits) for c in columns] == [3, 0]
    # The doctors, and the day's appointments, time off and waitlist holds of all of them.
    assert len(statements) == 4


def test_the_day_picker_shows_another_day(desk, alice, dave):
    appointments.book(alice.id, dave.id, at("09:00", days=1))
    page = desk.get(f"/desk?date={at('09:00', days=1).date().isoformat()}").text
    assert "Alice Adams" in page
    assert desk.get("/desk?date=tomorrow").status == 400


def _book_url(doctor, start, q=""):
    return (f"/desk/book?doctor_id={doctor.id}&start={quote(start.isoformat())}"
            + (f"&q={quote(q)}" if q else ""))


def test_booking_for_a_found_patient(desk, dana, alice, carol):
    page = desk.get(_book_url(carol, at("10:00"), "adams")).text
    assert "Book for Alice Adams" in page
    response = desk.post("/desk/book", {"doctor_id": carol.id, "start": at("10:00").isoformat(),
                                        "patient_id": alice.id})
    assert response.status == 303, response
    assert response.location.endswith(f"/desk?date={MORNING.date().isoformat()}")
    visit = Appointment.get(Appointment.patient == alice.id)
    assert visit.start == at("10:00")
    assert AuditEntry.get(AuditEntry.action == "book appointment").user_id == dana.id
    assert "Booked Alice Adams at 10:00" in desk.get(response.location).text


def test_booking_for_a_new_patient_without_email_says_so(desk, carol):
    response = desk.post("/desk/book", {"doctor_id": carol.id, "start": at("10:00").isoformat(),
                                        "name": "Walter Walk-in", "email": "", "phone": ""})
    assert response.status == 303, response
    walter = User.get(User.name == "Walter Walk-in")
    assert walter.email is None
    page = desk.get(response.location).text
    assert "no email address" in page
    assert "no email</small>" in page


def test_a_bad_new_patient_books_nothing_and_keeps_what_was_typed(desk, carol):
    response = desk.post("/desk/book", {"doctor_id": carol.id, "start": at("10:00").isoformat(),
                                        "name": "Walter Walk-in", "phone": "0170 1234"})
    assert response.status == 400
    assert 'id="e-phone"' in response.text and 'value="Walter Walk-in"' in response.text
    assert not User.select().where(User.name == "Walter Walk-in").exists()
    assert Appointment.select().count() == 0


def test_a_taken_time_registers_nobody(desk, alice, carol):
    appointments.book(alice.id, carol.id, at("10:00"))
    response = desk.post("/desk/book", {"doctor_id": carol.id, "start": at("10:00").isoformat(),
                                        "name": "Walter Walk-in"})
    assert response.status == 409
    assert "just taken" in response.text
    assert not User.select().where(User.name == "Walter Walk-in").exists()


def test_moving_cancelling_and_checking_in_from_the_sheet(desk, dana, alice, carol):
    visit = appointments.book(alice.id, carol.id, at("09:30"))
    page = desk.get(f"/desk/appointments/{visit.id}/move").text
    assert f'value="{at("11:00").isoformat()}"' in page
    response = desk.post(f"/desk/appointments/{visit.id}/move",
                         {"start": at("11:00").isoformat()})
    assert response.status == 303, response
    assert Appointment.get_by_id(visit.id).start == at("11:00")
    assert desk.post(f"/desk/appointments/{visit.id}/check-in").status == 303
    assert Appointment.get_by_id(visit.id).status == "arrived"
    assert "status-arrived" in desk.get("/desk").text
    other = appointments.book(alice.id, carol.id, at("12:00"))
    assert desk.post(f"/desk/appointments/{other.id}/cancel").status == 303
    assert Appointment.get_by_id(other.id).status == "cancelled"
    actions = [e.action for e in AuditEntry.select().where(AuditEntry.user_id == dana.id)
               .order_by(AuditEntry.id)]
    assert actions == ["move appointment", "check in", "cancel appointment"]


def test_an_arrived_visit_shows_on_the_doctors_today_page(desk, new_client, alice, carol):
    visit = appointments.book(alice.id, carol.id, at("10:00"))
    desk.post(f"/desk/appointments/{visit.id}/check-in")
    doctor = new_client()
    login(doctor, carol)
    assert "status-arrived" in doctor.get("/doctor").text


def test_the_desk_may_not_open_records_and_the_refusals_are_logged(desk, dana, alice, carol):
    for path in (f"/doctor/patients/{alice.id}", f"/admin/patients/{alice.id}",
                 "/patient/history", "/admin/audit"):
        assert desk.get(path).status in (403, 404), path
    refusals = AuditEntry.select().where(AuditEntry.user_id == dana.id,
                                         AuditEntry.outcome == "refused")
    assert refusals.count() == 4
    assert {e.patient_id for e in refusals} == {alice.id, None}


def test_patients_and_doctors_may_not_open_the_desk(morning, new_client, alice, carol):
    for user in (alice, carol):
        browser = new_client()
        login(browser, user)
        assert browser.get("/desk").status == 403


# -- the admin's staff page -------------------------------------------------------------------


@pytest.fixture
def admin(morning, new_client, erin):
    browser = new_client()
    login(browser, erin)
    browser.get("/admin/staff")
    return browser


def test_an_admin_adds_deactivates_and_resets_a_desk_account(admin, new_client):
    response = admin.post("/admin/staff", {"name": "Dana Desk", "email": "dana@example.com",
                                           "password": PASSWORD, "role": "desk"})
    assert response.status == 303, response
    page = admin.get("/admin/staff").text
    assert "Dana Desk" in page and "Erin Admin" in page
    dana = User.get(User.email == "dana@example.com")
    browser = new_client()
    login(browser, dana)
    assert browser.get("/desk").status == 200

    assert admin.post(f"/admin/staff/{dana.id}/password", {"password": "short"}).status == 400
    assert admin.post(f"/admin/staff/{dana.id}/password",
                      {"password": "a new long one"}).status == 303
    assert not Session.select().where(Session.user == dana.id).exists()
    assert browser.get("/desk").status == 303  # signed out: back to sign in
    browser.login(dana.email, "a new long one")

    assert admin.post(f"/admin/staff/{dana.id}/deactivate").status == 303
    assert browser.get("/desk").status == 303
    assert not User.get_by_id(dana.id).active


def test_a_bad_staff_member_is_refused_beside_the_field(admin, alice):
    response = admin.post("/admin/staff", {"name": "X", "email": "alice@example.com",
                                           "password": PASSWORD, "role": "desk"})
    assert response.status == 400 and 'id="e-email"' in response.text
    response = admin.post("/admin/staff", {"name": "X", "email": "x@example.com",
                                           "password": PASSWORD, "role": "doctor"})
    assert response.status == 400 and 'id="e-role"' in response.text
    assert not User.select().where(User.email == "x@example.com").exists()


def test_the_staff_page_does_not_touch_patients_or_doctors(admin, alice, carol):
    assert admin.post(f"/admin/staff/{alice.id}/deactivate").status == 404
    assert admin.post(f"/admin/staff/{carol.id}/password",
                      {"password": "a new long one"}).status == 404
    assert User.get_by_id(alice.id).active


def test_the_demo_has_a_desk_sign_in(morning, new_client, app):
    from clinic import demo

    demo.create()
    browser = new_client()
    assert browser.login(demo.DESK, demo.PASSWORD).location.endswith("/desk")
    assert browser.get("/desk").text.count('class="sheet-column card"') >= 1


def test_the_desk_has_its_account_page(desk):
    page = desk.get("/account")
    assert page.status == 200 and "Dana Desk" in page.text


def test_a_patient_without_email_reads_so_on_the_admins_pages(admin, carol):
    walter = people.register_at_desk("Walter Walk-in")
    visit = appointments.book(walter.id, carol.id, at("10:00"))
    assert "no email" in admin.get("/admin/patients?q=walter").text
    assert "None" not in admin.get(f"/admin/appointments/{visit.id}").text
    assert "the patient gets no email" in admin.get(f"/admin/patients/{walter.id}").text


def test_the_desk_finds_and_registers_patients_on_their_page(desk, dana, alice):
    page = desk.get("/desk/patients?q=1980-05-17").text
    assert "Alice Adams" in page and "+49 30 1234567" in page
    assert 'href="/desk/patients">Patients</a>' in page
    assert "No patient matches" in desk.get("/desk/patients?q=nobody").text
    response = desk.post("/desk/patients", {"name": "Walter Walk-in", "phone": "+49 170 1234567"})
    assert response.status == 303, response
    page = desk.get(response.location).text
    assert "the clinic will send them no email" in page and "+491701234567" in page
    walter = User.get(User.name == "Walter Walk-in")
    assert AuditEntry.get(AuditEntry.action == "register patient").patient_id == walter.id
    response = desk.post("/desk/patients", {"name": "", "email": "alice@example.com"})
    assert response.status == 400
    assert 'id="e-name"' in response.text and 'id="e-email"' in response.text


def test_an_admins_cancellation_from_the_appointment_page_is_audited(admin, erin, alice, carol):
    visit = appointments.book(alice.id, carol.id, at("10:00"))
    admin.get(f"/admin/appointments/{visit.id}")
    assert admin.post(f"/admin/appointments/{visit.id}/cancel").status == 303
    entry = AuditEntry.get(AuditEntry.action == "cancel appointment")
    assert (entry.user_id, entry.patient_id) == (erin.id, alice.id)


def test_the_sheet_offers_no_time_in_time_off_or_held_for_the_waitlist(desk, alice, bob,
                                                                       carol):
    from clinic import desk as day_sheet_module
    from clinic import time_off, waitlist

    time_off.add(carol.id, at("09:00").strftime("%Y-%m-%dT%H:%M"),
                 at("10:00").strftime("%Y-%m-%dT%H:%M"), "Team meeting")
    visit = appointments.book(alice.id, carol.id, at("11:00"))
    waitlist.join(bob.id, carol.id, MORNING.date().isoformat(), MORNING.date().isoformat())
    appointments.cancel(visit, alice)  # 11:00 is now held for bob
    (column,) = [c for c in day_sheet_module.day_sheet(MORNING.date())
                 if c.doctor.user_id == carol.id]
    free = {start.astimezone(TZ).strftime("%H:%M") for start in column.free}
    assert not free & {"09:00", "09:30", "11:00"}
    assert {"10:00", "10:30", "11:30"} <= free


# -- a patient's page at the desk -------------------------------------------------------------


def test_the_sheet_and_the_search_lead_to_the_patients_page(desk, alice, carol):
    appointments.book(alice.id, carol.id, at("10:00"), "Knee")
    link = f'href="/desk/patients/{alice.id}"'
    assert link in desk.get("/desk").text
    assert link in desk.get("/desk/patients?q=adams").text
    assert link in desk.get(_book_url(carol, at("11:00"), "adams")).text
    page = desk.get(f"/desk/patients/{alice.id}").text
    assert 'value="+49301234567"' in page and 'value="1980-05-17"' in page
    assert 'name="channel" value="email" checked' in page
    assert "Dr Carol Clark" in page and "status-booked" in page  # her coming visit
    assert "Knee" not in page  # the reason stays with the doctor
    assert desk.get(f"/desk/patients/{carol.id}").status == 404  # not a patient
    assert desk.post(f"/desk/patients/{carol.id}", {"name": "X"}).status == 404


def test_the_desk_changes_how_a_patient_is_reached(desk, dana, alice):
    desk.get(f"/desk/patients/{alice.id}")
    response = desk.post(f"/desk/patients/{alice.id}", {
        "name": "Alice Adams", "email": "alice@example.com", "phone": "+49 170 1234567",
        "date_of_birth": "1980-05-17", "channel": "both"})
    assert response.status == 303, response
    assert response.location.endswith(f"/desk/patients/{alice.id}")
    page = desk.get(response.location).text
    assert "The details of Alice Adams are saved." in page
    assert 'name="channel" value="both" checked' in page
    patient = people.patient_contact(alice.id)
    assert (patient.phone, patient.channel) == ("+491701234567", "both")
    entry = AuditEntry.get(AuditEntry.action == "update patient")
    assert (entry.user_id, entry.patient_id, entry.reason) == (dana.id, alice.id,
                                                               "channel, phone")


def test_saving_the_page_chooses_no_language_for_the_patient(desk, alice):
    from clinic import settings

    settings.use(settings.get().replace(languages=("en", "de")))
    page = desk.get(f"/desk/patients/{alice.id}").text
    assert 'id="email"' in page and 'name="email"' not in page  # hers to change
    desk.post(f"/desk/patients/{alice.id}", {"name": "Alice Adams", "language": "en",
                                              "channel": "email"})
    assert User.get_by_id(alice.id).language == ""  # still not chosen
    desk.post(f"/desk/patients/{alice.id}", {"name": "Alice Adams", "language": "de",
                                              "channel": "email"})
    assert User.get_by_id(alice.id).language == "de"


def test_sms_without_a_phone_is_refused_on_the_form_and_keeps_what_was_typed(desk, alice):
    desk.get(f"/desk/patients/{alice.id}")
    response = desk.post(f"/desk/patients/{alice.id}", {
        "name": "Alice Zed", "email": "alice@example.com", "phone": "", "channel": "sms"})
    assert response.status == 400
    assert 'id="e-channel"' in response.text and "SMS needs a phone number" in response.text
    assert 'value="Alice Zed"' in response.text and 'value="sms" checked' in response.text
    assert User.get_by_id(alice.id).name == "Alice Adams"  # nothing written


def test_a_patient_registered_at_the_desk_may_read_sms_in_german(desk):
    from clinic import settings

    settings.use(settings.get().replace(languages=("en", "de")))
    page = desk.get("/desk/patients").text
    assert 'name="channel" value="email" checked' in page
    assert '<option value="en" lang="en" selected>' in page  # the clinic's first language
    response = desk.post("/desk/patients", {"name": "Walter Walk-in", "phone": "+49 170 1234567",
                                            "channel": "sms", "language": "de"})
    assert response.status == 303, response
    walter = people.patient_contact(User.get(User.name == "Walter Walk-in").id)
    assert (walter.channel, walter.user.language) == ("sms", "de")


def test_the_desk_page_of_a_stopped_number_says_so(desk, alice):
    from clinic.mail import sms

    sms.reply("+49301234567", "STOP")
    assert 'id="sms-stopped"' in desk.get(f"/desk/patients/{alice.id}").text


def test_only_staff_open_a_patients_page(morning, new_client, alice, bob, carol):
    for user in (bob, carol):
        other = new_client()
        login(other, user)
        assert other.get(f"/desk/patients/{alice.id}").status == 403
        other.get("/account")
        assert other.post(f"/desk/patients/{alice.id}", {"channel": "sms"}).status == 403
    anonymous = new_client()
    response = anonymous.get(f"/desk/patients/{alice.id}")
    assert response.status == 303 and "/login" in response.location
    assert people.patient_contact(alice.id).channel == "email"
