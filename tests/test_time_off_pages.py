"""The calendar's pages over real HTTP, without JavaScript: the admin enters and removes time off
and sees the visits inside to phone the patients, a doctor asks for time off and the admin sees
it at once, visit types are added from a form, and a doctor deactivated from the edit page can
have every future booking cancelled with the patients told."""

import pytest

from clinic import appointments
from clinic.models import Appointment, Message, TimeOff, VisitType
from tests.conftest import TZ, login, slot


def day_of(days):
    return slot(days).astimezone(TZ).date().isoformat()


@pytest.fixture
def admin(new_client, erin):
    client = new_client()
    login(client, erin)
    client.get("/admin/time-off")  # the signed-in session's CSRF token
    return client


def test_the_admin_enters_a_break_and_sees_the_visit_inside_to_phone(admin, carol, alice,
                                                                     drain):
    visit = appointments.book(alice.id, carol.id, slot(2, "12:00"))
    page = admin.get("/admin/time-off")
    assert page.status == 200 and "Enter time off" in page.text
    answer = admin.post("/admin/time-off", {
        "doctor_id": str(carol.id), "start_date": day_of(2), "start_time": "12:00",
        "end_date": day_of(2), "end_time": "13:00", "reason": "Lunch <break>"}, follow=True)
    assert answer.status == 200
    assert "1 visit inside is still booked" in answer.text
    assert "Alice Adams" in answer.text and "+49 30 1234567" in answer.text
    assert "Lunch &lt;break&gt;" in answer.text
    assert Appointment.get_by_id(visit.id).status == "booked"
    entry = TimeOff.get()
    admin.post(f"/admin/time-off/{entry.id}/cancel-visits")
    drain()
    assert Appointment.get_by_id(visit.id).status == "cancelled"
    after = admin.get("/admin/time-off").text
    assert "done, 1 cancelled and the patients told" in after and "+49 30 1234567" not in after
    removed = admin.post(f"/admin/time-off/{entry.id}/delete", follow=True)
    assert "Time off removed" in removed.text
    assert not TimeOff.select().exists()


def test_a_reversed_range_is_shown_beside_the_field_and_nothing_saved(admin, carol):
    answer = admin.post("/admin/time-off", {
        "doctor_id": str(carol.id), "start_date": day_of(2), "start_time": "13:00",
        "end_date": day_of(2), "end_time": "12:00", "reason": "Oops"})
    assert answer.status == 400
    assert 'id="e-end"' in answer.text and "The end must come after the start." in answer.text
    assert 'value="Oops"' in answer.text  # what was typed stays
    assert not TimeOff.select().exists()


def test_a_doctors_request_reaches_the_admin_at_once_and_blocks_only_once_approved(
        new_client, admin, carol, client):
    doctor = new_client()
    login(doctor, carol)
    assert doctor.get("/doctor/time-off").status == 200  # and its CSRF token
    sent = doctor.post("/doctor/time-off", {"start_date": day_of(3), "end_date": day_of(3),
                                            "reason": "Training"}, follow=True)
    assert "waiting for an admin" in sent.text
    slots_url = f"/api/doctors/{carol.id}/slots?date={day_of(3)}"
    assert client.get(slots_url).json()["slots"]  # not yet blocked
    dashboard = admin.get("/admin")
    assert "1 request for time off from doctors waits for you" in dashboard.text
    page = admin.get("/admin/time-off")
    assert "Dr Carol Clark" in page.text and "Training" in page.text
    request = TimeOff.get()
    admin.post(f"/admin/time-off/{request.id}/approve")
    assert TimeOff.get_by_id(request.id).status == "approved"
    assert client.get(slots_url).json()["slots"] == []
    assert "waits for you" not in admin.get("/admin").text


def test_patients_and_doctors_cannot_open_the_admins_calendar_pages(new_client, alice, carol):
    for user in (alice, carol):
        browser = new_client()
        login(browser, user)
        assert browser.get("/admin/time-off").status == 403
        assert browser.get("/admin/visit-types").status == 403
    patient = new_client()
    login(patient, alice)
    assert patient.get("/doctor/time-off").status == 403


def test_visit_types_are_added_from_the_form_and_bad_ones_explained(admin, carol, dave):
    page = admin.get("/admin/visit-types")
    assert "No visit types yet" in page.text
    bad = admin.post("/admin/visit-types", {"name": "Day", "minutes": "900",
                                            "doctor_ids": [str(carol.id)]})
    assert bad.status == 400 and "from 5 to 480 minutes" in bad.text
    assert not VisitType.select().exists()
    good = admin.post("/admin/visit-types", {"name": "First consultation", "minutes": "60",
                                             "doctor_ids": [str(carol.id), str(dave.id)]},
                      follow=True)
    assert "First consultation (60 minutes) can now be booked" in good.text
    assert "Dr Carol Clark, Dr Dave Davis" in good.text or "Dr Dave Davis, Dr Carol Clark" \
        in good.text


def test_deactivating_a_doctor_can_cancel_their_bookings_and_tell_the_patients(
        admin, carol, alice, bob, drain):
    visits = [appointments.book(alice.id, carol.id, slot(2, "10:00")),
              appointments.book(bob.id, carol.id, slot(5, "11:00"))]
    form = admin.get(f"/admin/doctors/{carol.id}/edit")
    assert "Cancel their 2 upcoming appointments" in form.text
    missing = admin.post(f"/admin/doctors/{carol.id}/deactivate", {"cancel_upcoming": "1"})
    assert missing.status == 400 and "Enter the reason" in missing.text
    assert Appointment.get_by_id(visits[0].id).status == "booked"
    done = admin.post(f"/admin/doctors/{carol.id}/deactivate",
                      {"cancel_upcoming": "1", "reason": "Dr Clark has left the clinic"},
                      follow=True)
    assert "2 upcoming appointments are being cancelled" in done.text
    drain()
    assert {Appointment.get_by_id(v.id).status for v in visits} == {"cancelled"}
    notices = Message.select().where(Message.kind == "cancellation")
    assert notices.count() == 2
    assert all("Dr Clark has left the clinic" in m.text_body for m in notices)


def test_the_demo_clinic_has_a_holiday_visit_types_and_a_request(app):
    from clinic import demo

    counts = demo.create(patients=5)
    assert counts["visit_types"] == 2 and counts["time_off"] == 2
    holiday = TimeOff.get(TimeOff.doctor.is_null())
    assert holiday.status == "approved" and holiday.reason == "Clinic holiday"
    assert TimeOff.get(TimeOff.status == "requested").reason == "Training course"
    assert sorted(v.minutes for v in VisitType.select()) == [10, 60]
    # Nothing was booked on the holiday.
    assert not Appointment.select().where(Appointment.start >= holiday.start,
                                          Appointment.start < holiday.end).exists()
