"""The admin's pages through HTTP: the dashboard and its cache, doctors (add, edit, deactivate),
patients and appointments (search, paging, details, cancelling)."""

import re
from datetime import datetime, timedelta

import pytest
import time_machine

from clinic import appointments, auth, people
from clinic.errors import Invalid
from clinic.models import Appointment, Doctor, Session, User
from clinic.web.inputs import PAGE_SIZE
from tests.conftest import PASSWORD, TZ, login, make_patient, slot

# A Wednesday morning in the middle of a month, before the first slot.
MORNING = datetime(2031, 3, 12, 8, 0, tzinfo=TZ)

NEW_DOCTOR = {
    "name": "Dr Frank Fischer",
    "email": "Frank@Example.com",
    "password": "long enough",
    "specialization": "Neurology",
    "slot_minutes": "20",
    # The weekly editor: Monday morning and afternoon, Wednesday morning (an old browser's
    # text box may send 8:00).
    "hours-mon-1-from": "09:00", "hours-mon-1-to": "13:00",
    "hours-mon-2-from": "14:00", "hours-mon-2-to": "17:00",
    "hours-wed-1-from": "8:00", "hours-wed-1-to": "12:00",
}


@pytest.fixture
def morning():
    """Frozen at MORNING. Ask for it before ``admin``: a sign-in made in real time has long
    expired by 2031."""
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin(new_client, erin):
    browser = new_client()
    login(browser, erin)
    return browser


def book(patient, doctor, start, reason=""):
    return appointments.book(patient.id, doctor.id, start, reason)


def figure(page, name):
    """A number on the dashboard, by the id of the element that shows it."""
    return int(re.search(rf'id="{name}">(\d+)<', page).group(1))


def freshness(page):
    if "<strong>Fresh:</strong>" in page:
        return "fresh"
    if "<strong>From the cache:</strong>" in page:
        return "cached"
    raise AssertionError("the dashboard does not say whether its figures are fresh")


# -- who may see the pages ----------------------------------------------------------------------


def test_admin_pages_are_for_admins_only(new_client, everyone):
    alice, carol = everyone["alice"], everyone["carol"]
    appt = book(alice, carol, slot(1), "Checkup")
    paths = ["/admin", "/admin/doctors", "/admin/doctors/new", f"/admin/doctors/{carol.id}/edit",
             "/admin/patients", f"/admin/patients/{alice.id}", "/admin/appointments",
             f"/admin/appointments/{appt.id}"]
    for name in ("alice", "carol"):
        browser = new_client()
        login(browser, everyone[name])
        for path in paths:
            assert browser.get(path).status == 403, (name, path)
    anonymous = new_client()
    for path in paths:
        response = anonymous.get(path)
        assert response.status == 303 and "/login?next=" in response.location, path
    admin = new_client()
    login(admin, everyone["erin"])
    for path in paths:
        assert admin.get(path).status == 200, path


def test_other_roles_cannot_post_admin_actions(new_client, everyone):
    alice, carol = everyone["alice"], everyone["carol"]
    appt = book(alice, carol, slot(1))
    browser = new_client()
    login(browser, carol)
    browser.get("/doctor")
    assert browser.post(f"/admin/appointments/{appt.id}/cancel").status == 403
    assert browser.post(f"/admin/doctors/{carol.id}/deactivate").status == 403
    assert browser.post("/admin/doctors/new", NEW_DOCTOR).status == 403
    assert Appointment.get_by_id(appt.id).status == "booked"
    assert User.get_by_id(carol.id).active
    assert not User.select().where(User.email == "frank@example.com").exists()


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_shows_the_figures(morning, admin, alice, bob, carol, dave):
    book(alice, carol, slot(0, "10:00"))
    done = book(bob, dave, slot(0, "09:00"))
    morning.move_to(datetime(2031, 3, 12, 9, 30, tzinfo=TZ))
    appointments.complete(done, dave, {"visit_type": "Check-up"})
    appointments.cancel(book(alice, dave, slot(0, "15:00")), alice)
    book(bob, carol, slot(5, "10:00"))  # later this month
    book(alice, carol, slot(25, "10:00"))  # next month

    page = admin.get("/admin").text

    assert figure(page, "today-booked") == 1
    assert figure(page, "today-completed") == 1
    assert figure(page, "today-cancelled") == 1
    assert figure(page, "month-booked") == 2
    assert figure(page, "figure-today") == 3
    assert figure(page, "figure-month") == 4
    assert figure(page, "figure-patients") == 2
    assert figure(page, "figure-doctors") == 2
    assert figure(page, "figure-treatments") == 1


def test_dashboard_cache_is_fresh_then_cached_until_refresh_or_expiry(morning, admin, alice, bob,
                                                                      carol):
    first = admin.get("/admin").text
    assert freshness(first) == "fresh"
    assert "computed just now, at 08:00:00" in first
    assert figure(first, "today-booked") == 0

    book(alice, carol, slot(0, "10:00"))
    morning.shift(timedelta(minutes=1))
    second = admin.get("/admin").text
    assert freshness(second) == "cached"
    assert "computed at 08:00:00" in second
    assert figure(second, "today-booked") == 0  # the new booking is not in the kept figures

    response = admin.post("/admin/refresh-stats")
    assert response.status == 303 and response.location.endswith("/admin")
    refreshed = admin.get("/admin").text
    assert freshness(refreshed) == "fresh"
    assert "computed just now, at 08:01:00" in refreshed
    assert figure(refreshed, "today-booked") == 1

    book(bob, carol, slot(0, "11:00"))
    morning.shift(timedelta(minutes=4, seconds=59))  # just inside the 5 minutes
    assert figure(admin.get("/admin").text, "today-booked") == 1
    morning.shift(timedelta(seconds=1))  # the kept figures are 5 minutes old now
    expired = admin.get("/admin").text
    assert freshness(expired) == "fresh"
    assert figure(expired, "today-booked") == 2


def test_refresh_needs_the_csrf_token(morning, admin, alice, carol):
    admin.get("/admin")
    book(alice, carol, slot(0, "10:00"))
    assert admin.post("/admin/refresh-stats", csrf=False).status == 403
    page = admin.get("/admin").text
    assert freshness(page) == "cached" and figure(page, "today-booked") == 0


# -- doctors ------------------------------------------------------------------------------------


def test_doctors_list_shows_every_doctor_active_or_not(admin, carol, dave):
    auth_user = User.get_by_id(dave.id)
    auth_user.active = False
    auth_user.save()

    page = admin.get("/admin/doctors").text

    for text in ("Dr Carol Clark", "carol@example.com", "Cardiology", "30 min",
                 "Dr Dave Davis", "Dermatology"):
        assert text in page
    assert f'action="/admin/doctors/{carol.id}/deactivate"' in page
    assert f'action="/admin/doctors/{dave.id}/activate"' in page


def test_admin_adds_a_doctor_who_can_then_sign_in_and_be_booked(morning, admin, new_client,
                                                                 alice):
    form = admin.get("/admin/doctors/new").text
    # A sensible start: weekdays 09:00-13:00 and 14:00-17:00, the weekend off.
    assert 'name="hours-mon-1-from" id="f-hours-mon-1-from" value="09:00"' in form
    assert 'name="hours-fri-2-to" id="f-hours-fri-2-to" value="17:00"' in form
    assert 'name="hours-sat-1-from" id="f-hours-sat-1-from" value=""' in form
    assert 'name="working_hours"' not in form  # no free-text box

    response = admin.post("/admin/doctors/new", NEW_DOCTOR)

    assert response.status == 303 and response.location.endswith("/admin/doctors")
    user = User.get(User.email == "frank@example.com")
    assert user.role == "doctor" and user.name == "Dr Frank Fischer" and user.active
    doctor = Doctor.get(Doctor.user == user.id)
    assert doctor.specialization == "Neurology" and doctor.slot_minutes == 20
    assert doctor.working_hours == {"mon": [["09:00", "13:00"], ["14:00", "17:00"]],
                                    "wed": [["08:00", "12:00"]]}
    listing = admin.get("/admin/doctors").text
    assert "can now sign in as a doctor" in listing and "Dr Frank Fischer" in listing
    new_client().login("frank@example.com", NEW_DOCTOR["password"])
    assert book(alice, user, slot(0, "08:20")).doctor_id == user.id  # Wednesday, on the grid


def test_adding_a_doctor_explains_every_error_and_keeps_the_input(admin, carol):
    admin.get("/admin/doctors/new")
    bad = {**NEW_DOCTOR, "email": "carol@example.com", "hours-thu-1-from": "10:00",
           "name": "Dr <b>Bold</b>", "slot_minutes": "0"}

    response = admin.post("/admin/doctors/new", bad)

    assert response.status == 400
    page = response.text
    assert "An account with this email already exists." in page
    assert '<p class="error" id="e-hours-thu">thu: enter each time as HH:MM' in page
    assert "Enter a slot length from 5 to 240 minutes." in page
    assert 'value="Dr &lt;b&gt;Bold&lt;/b&gt;"' in page  # kept, and escaped
    assert 'value="carol@example.com"' in page and 'value="Neurology"' in page
    assert 'name="hours-thu-1-from" id="f-hours-thu-1-from" value="10:00"' in page
    assert "long enough" not in page  # the password is not sent back
    assert User.select().where(User.role == "doctor").count() == 1


def test_overlapping_working_hours_are_refused(admin):
    admin.get("/admin/doctors/new")
    response = admin.post("/admin/doctors/new", {
        **NEW_DOCTOR, "hours-tue-1-from": "09:00", "hours-tue-1-to": "13:00",
        "hours-tue-2-from": "12:00", "hours-tue-2-to": "15:00",
        "hours-fri-1-from": "17:00", "hours-fri-1-to": "09:00"})
    assert response.status == 400
    # Each day's problem beside that day.
    assert ('<p class="error" id="e-hours-tue">tue: the ranges 09:00-13:00 and 12:00-15:00 '
            'overlap.</p>') in response.text
    assert ('<p class="error" id="e-hours-fri">fri: a range must end after it starts (17:00 '
            'to 09:00).</p>') in response.text
    assert 'id="e-hours-mon"' not in response.text
    assert not User.select().where(User.email == "frank@example.com").exists()


def test_admin_edits_a_doctor(admin, carol):
    form = admin.get(f"/admin/doctors/{carol.id}/edit").text
    assert 'value="Dr Carol Clark"' in form and 'value="Cardiology"' in form
    assert 'name="hours-mon-1-from" id="f-hours-mon-1-from" value="09:00"' in form
    assert 'name="hours-sun-1-to" id="f-hours-sun-1-to" value="17:00"' in form
    assert 'name="hours-sun-2-to" id="f-hours-sun-2-to" value=""' in form
    assert 'name="active" value="1" checked' in form

    response = admin.post(f"/admin/doctors/{carol.id}/edit", {
        "name": "Dr Carol Clark-Meyer", "specialization": "Cardiology", "slot_minutes": "45",
        "hours-fri-1-from": "10:00", "hours-fri-1-to": "16:00", "active": "1", "password": ""})

    assert response.status == 303
    doctor = Doctor.select(Doctor, User).join(User).where(Doctor.user == carol.id).get()
    assert doctor.user.name == "Dr Carol Clark-Meyer" and doctor.user.active
    assert doctor.slot_minutes == 45 and doctor.working_hours == {"fri": [["10:00", "16:00"]]}
    assert auth.check_password(doctor.user, PASSWORD)  # an empty password changes nothing


def test_editing_a_doctor_with_errors_keeps_the_input(admin, carol):
    admin.get(f"/admin/doctors/{carol.id}/edit")
    response = admin.post(f"/admin/doctors/{carol.id}/edit", {
        "name": "Dr Carol C", "specialization": "", "slot_minutes": "30",
        "hours-mon-1-from": "17:00", "hours-mon-1-to": "09:00", "password": "short"})
    assert response.status == 400
    assert "Enter a specialization." in response.text
    assert "mon: a range must end after it starts (17:00 to 09:00)." in response.text
    assert "Use at least 8 characters." in response.text
    assert 'value="Dr Carol C"' in response.text
    assert 'name="hours-mon-1-from" id="f-hours-mon-1-from" value="17:00"' in response.text
    assert 'name="active" value="1" checked' not in response.text  # left unticked, kept so
    assert User.get_by_id(carol.id).name == "Dr Carol Clark" and User.get_by_id(carol.id).active


def test_deactivated_doctor_takes_no_bookings_and_is_signed_out(admin, new_client, alice, carol):
    doctor_browser = new_client()
    login(doctor_browser, carol)
    assert doctor_browser.get("/doctor").status == 200
    admin.get("/admin/doctors")

    response = admin.post(f"/admin/doctors/{carol.id}/deactivate")

    assert response.status == 303
    assert not User.get_by_id(carol.id).active
    with pytest.raises(Invalid, match="not taking bookings"):
        book(alice, carol, slot(1))
    assert Session.select().where(Session.user == carol.id).count() == 0
    after = doctor_browser.get("/doctor")
    assert after.status == 303 and "/login" in after.location
    page = admin.get("/admin/doctors").text
    assert "is deactivated" in page and f'/admin/doctors/{carol.id}/activate"' in page

    assert admin.post(f"/admin/doctors/{carol.id}/activate").status == 303
    assert book(alice, carol, slot(1)).doctor_id == carol.id


def test_unticking_active_on_the_edit_form_deactivates(admin, new_client, alice, carol):
    login(new_client(), carol)
    admin.get(f"/admin/doctors/{carol.id}/edit")
    response = admin.post(f"/admin/doctors/{carol.id}/edit", {
        "name": "Dr Carol Clark", "specialization": "Cardiology", "slot_minutes": "30",
        "hours-mon-1-from": "09:00", "hours-mon-1-to": "17:00"})
    assert response.status == 303
    assert not User.get_by_id(carol.id).active
    assert Session.select().where(Session.user == carol.id).count() == 0
    with pytest.raises(Invalid):
        book(alice, carol, slot(1))


def test_edit_form_tells_how_many_appointments_a_deactivation_leaves(admin, alice, bob, carol):
    book(alice, carol, slot(1))
    book(bob, carol, slot(2))
    page = admin.get(f"/admin/doctors/{carol.id}/edit").text
    assert "2 upcoming appointments stay booked" in page


def test_doctor_actions_on_non_doctors_are_not_found(admin, alice):
    admin.get("/admin/doctors")
    assert admin.get(f"/admin/doctors/{alice.id}/edit").status == 404
    assert admin.post(f"/admin/doctors/{alice.id}/deactivate").status == 404
    assert User.get_by_id(alice.id).active
    assert admin.get("/admin/doctors/999999/edit").status == 404


# -- patients -----------------------------------------------------------------------------------


def test_patient_search_finds_by_name_and_by_email(admin, alice, bob):
    make_patient("zed@another.org", "Zed Zimmermann")

    by_name = admin.get("/admin/patients?q=adams").text
    assert "Alice Adams" in by_name and "Bob Brown" not in by_name
    by_email = admin.get("/admin/patients?q=ANOTHER.org").text
    assert "Zed Zimmermann" in by_email and "Alice Adams" not in by_email
    everybody = admin.get("/admin/patients").text
    assert all(name in everybody for name in ("Alice Adams", "Bob Brown", "Zed Zimmermann"))
    nobody = admin.get("/admin/patients?q=%3Cnobody%3E").text
    assert "No patient matches “&lt;nobody&gt;”." in nobody
    assert 'value="&lt;nobody&gt;"' in nobody


def test_patient_list_pages(admin, app):
    for i in range(PAGE_SIZE + 3):
        make_patient(f"p{i:02d}@example.com", f"Patient {i:02d}")

    first = admin.get("/admin/patients").text
    assert "Patient 00" in first and f"Patient {PAGE_SIZE - 1:02d}" in first
    assert f"Patient {PAGE_SIZE:02d}" not in first
    assert 'href="?page=2"' in first and "Previous" not in first

    second = admin.get("/admin/patients?page=2").text
    assert f"Patient {PAGE_SIZE:02d}" in second and f"Patient {PAGE_SIZE + 2:02d}" in second
    assert "Patient 00" not in second
    assert 'href="?page=1"' in second and 'rel="next"' not in second

    searched = admin.get("/admin/patients?q=patient&page=2").text
    assert 'href="?q=patient&amp;page=1"' in searched
    assert admin.get("/admin/patients?page=nonsense").status == 200


def test_patient_details_show_appointments_and_history(morning, admin, alice, carol, dave):
    visit = book(alice, dave, slot(0, "09:00"), "Itchy skin")
    appointments.complete(visit, dave, {"visit_type": "Consultation",
                                        "diagnosis": "Contact dermatitis"}, now=visit.end)
    book(alice, carol, slot(3, "10:00"), "Heart check")

    page = admin.get(f"/admin/patients/{alice.id}").text

    assert "Alice Adams" in page and "alice@example.com" in page and "1980-05-17" in page
    assert "Heart check" in page and "Dr Carol Clark" in page
    assert "Contact dermatitis" in page and "Dr Dave Davis" in page
    assert f'href="/admin/appointments/{visit.id}"' in page
    assert admin.get(f"/admin/patients/{carol.id}").status == 404  # a doctor is no patient
    assert admin.get("/admin/patients/999999").status == 404


# -- appointments -------------------------------------------------------------------------------


@pytest.fixture
def bookings(morning, alice, bob, carol, dave):
    """Four appointments on two days; the one with dave on the 13th is cancelled."""
    made = {
        "alice_carol_12": book(alice, carol, slot(0, "10:00"), "A"),
        "bob_carol_12": book(bob, carol, slot(0, "11:00"), "B"),
        "alice_dave_13": book(alice, dave, slot(1, "10:00"), "C"),
        "bob_dave_13": book(bob, dave, slot(1, "11:00"), "D"),
    }
    appointments.cancel(made["alice_dave_13"], alice)
    return made


def listed(page, bookings):
    return {name for name, appt in bookings.items()
            if f'href="/admin/appointments/{appt.id}"' in page}


def test_appointment_list_filters(bookings, admin, carol, dave):
    everything = admin.get("/admin/appointments").text
    assert listed(everything, bookings) == set(bookings)
    assert everything.index(f"/admin/appointments/{bookings['bob_dave_13'].id}\"") < \
        everything.index(f"/admin/appointments/{bookings['alice_carol_12'].id}\"")  # newest first

    assert listed(admin.get("/admin/appointments?q=alice").text, bookings) == {
        "alice_carol_12", "alice_dave_13"}
    assert listed(admin.get("/admin/appointments?q=bob%40example").text, bookings) == {
        "bob_carol_12", "bob_dave_13"}
    assert listed(admin.get("/admin/appointments?status=cancelled").text, bookings) == {
        "alice_dave_13"}
    assert listed(admin.get(f"/admin/appointments?doctor={carol.id}").text, bookings) == {
        "alice_carol_12", "bob_carol_12"}
    day = admin.get("/admin/appointments?date=2031-03-13").text
    assert listed(day, bookings) == {"alice_dave_13", "bob_dave_13"}
    assert day.index("Alice Adams") < day.index("Bob Brown")  # a day runs in time order
    combined = admin.get(f"/admin/appointments?q=bob&doctor={dave.id}&status=booked"
                         "&date=2031-03-13").text
    assert listed(combined, bookings) == {"bob_dave_13"}
    assert f'<option value="{dave.id}" selected>' in combined
    assert '<option value="booked" selected>' in combined


def test_bad_appointment_filters_are_explained(bookings, admin):
    response = admin.get("/admin/appointments?date=13.03.2031&status=lost")
    assert response.status == 400
    assert "Enter the date as YYYY-MM-DD." in response.text
    assert "Choose a status from the list." in response.text
    assert 'value="13.03.2031"' in response.text
    assert listed(response.text, bookings) == set()


def test_appointment_list_pages(morning, admin, alice, carol):
    made = [book(alice, carol, slot(days, "10:00")) for days in range(1, PAGE_SIZE + 3)]
    first = admin.get(f"/admin/appointments?doctor={carol.id}").text
    second = admin.get(f"/admin/appointments?doctor={carol.id}&page=2").text
    ids = [a.id for a in made]
    on_first = [i for i in ids if f'href="/admin/appointments/{i}"' in first]
    on_second = [i for i in ids if f'href="/admin/appointments/{i}"' in second]
    assert len(on_first) == PAGE_SIZE and len(on_second) == 2
    assert set(on_first).isdisjoint(on_second)
    assert f'href="?doctor={carol.id}&amp;page=2"' in first


def test_appointment_details_and_cancel(bookings, admin):
    appt = bookings["bob_carol_12"]
    page = admin.get(f"/admin/appointments/{appt.id}").text
    assert "Bob Brown" in page and "bob@example.com" in page and "Dr Carol Clark" in page
    assert f'action="/admin/appointments/{appt.id}/cancel"' in page

    response = admin.post(f"/admin/appointments/{appt.id}/cancel")

    assert response.status == 303
    assert Appointment.get_by_id(appt.id).status == "cancelled"
    after = admin.get(response.location).text
    assert "is cancelled" in after and "status-cancelled" in after
    assert f'action="/admin/appointments/{appt.id}/cancel"' not in after
    again = admin.post(f"/admin/appointments/{appt.id}/cancel")
    assert again.status == 409 and "can no longer be changed" in again.text


def test_appointment_details_show_the_treatment(morning, admin, alice, dave):
    appt = book(alice, dave, slot(0, "09:00"))
    appointments.complete(appt, dave, {"visit_type": "Check-up", "diagnosis": "All fine"},
                          now=appt.end)
    page = admin.get(f"/admin/appointments/{appt.id}").text
    assert "Check-up" in page and "All fine" in page
    assert f'action="/admin/appointments/{appt.id}/cancel"' not in page
    assert admin.get("/admin/appointments/999999").status == 404


# -- the lists' filters (templates/macros.html: filters, choice, field) --------------------------


@pytest.mark.parametrize("action, day, choice", [
    ("/admin/appointments", "date", "status"), ("/admin/audit", "from", "outcome"),
    ("/admin/jobs#runs", "from", "state"), ("/admin/messages", "from", "status")])
def test_a_list_s_filters_keep_what_was_typed_and_say_what_is_wrong(admin, action, day, choice):
    page = admin.get(f"{action.split('#')[0]}?{day}=%3Cb%3E&{choice}=lost")
    assert page.status == 400
    assert f'<form method="get" action="{action}" class="card filters" role="search">' in page.text
    assert f'<a href="{action}">Clear</a>' in page.text  # a link: no JavaScript needed
    assert f'name="{day}" type="date" value="&lt;b&gt;"' in page.text
    assert f'<select id="f-{choice}" name="{choice}" aria-invalid="true"' in page.text
    for name in (day, choice):
        assert f'aria-describedby="e-{name}"' in page.text
        assert f'<p class="error" id="e-{name}">' in page.text


# -- escaping -----------------------------------------------------------------------------------


def test_text_typed_by_users_is_escaped_on_admin_pages(morning, admin, carol):
    mallory = make_patient("mallory@example.com", "<script>alert(1)</script>")
    appt = book(mallory, carol, slot(1, "10:00"), "<img src=x onerror=alert(2)>")
    User.update(name="Dr <i>Evil</i>").where(User.id == carol.id).execute()
    for path in ("/admin/patients", f"/admin/patients/{mallory.id}", "/admin/appointments",
                 f"/admin/appointments/{appt.id}", "/admin/doctors",
                 f"/admin/doctors/{carol.id}/edit"):
        page = admin.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "<i>Evil" not in page, path
        assert "&lt;" in page, path


def test_a_day_with_more_ranges_than_the_editor_offers_keeps_them(admin, carol):
    three = {"mon": [["08:00", "10:00"], ["11:00", "12:00"], ["13:00", "15:00"]]}
    Doctor.update(working_hours=three).where(Doctor.user == carol.id).execute()  # via the API
    form = admin.get(f"/admin/doctors/{carol.id}/edit").text
    assert 'name="hours-mon-3-from" id="f-hours-mon-3-from" value="13:00"' in form
    assert 'name="hours-tue-3-from"' not in form
    fields = {"name": "Dr Carol Clark", "specialization": "Cardiology", "slot_minutes": "30",
              "active": "1", **people.working_hours_to_form(three)}
    assert admin.post(f"/admin/doctors/{carol.id}/edit", fields).status == 303
    assert Doctor.get(Doctor.user == carol.id).working_hours == three
