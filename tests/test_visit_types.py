"""Visit types through the real HTTP API: a long visit is offered only where it fits, blocks every
shorter slot it covers, and two visits of one doctor never overlap, even when racing with
different starts and lengths (the booking transaction on SQLite, an exclusion constraint on
PostgreSQL as well)."""

from datetime import timedelta

import pytest
from peewee import IntegrityError

from clinic import appointments, db
from clinic.models import Appointment, VisitType
from tests.conftest import TZ, login, make_doctor, make_patient, slot
from tests.test_booking_race import at_once


@pytest.fixture
def admin(new_client, erin):
    client = new_client()
    client.api_login(erin.email)
    return client


def add(admin, name, minutes, doctors):
    answer = admin.post_json("/api/admin/visit-types", {
        "name": name, "minutes": minutes, "doctor_ids": [d.id for d in doctors]})
    assert answer.status == 201, answer
    return answer.json()


def starts(client, doctor, days, visit_type=None):
    day = slot(days).astimezone(TZ).date().isoformat()
    query = f"?date={day}" + (f"&visit_type={visit_type}" if visit_type else "")
    answer = client.get(f"/api/doctors/{doctor.id}/slots{query}")
    assert answer.status == 200, answer
    return [s[11:16] for s in answer.json()["slots"]]


def test_a_visit_type_is_stored_and_listed(admin, carol, dave):
    body = add(admin, "First consultation", 60, [carol, dave])
    assert body["name"] == "First consultation" and body["minutes"] == 60
    assert body["doctor_ids"] == sorted([carol.id, dave.id])
    listed = admin.get("/api/admin/visit-types").json()["visit_types"]
    assert listed == [body]
    offered = admin.get(f"/api/doctors/{carol.id}/visit-types").json()["visit_types"]
    assert [v["id"] for v in offered] == [body["id"]]


def test_a_long_visit_is_offered_only_where_it_fits_and_blocks_what_it_covers(admin, client,
                                                                              carol, alice):
    long = add(admin, "First consultation", 60, [carol])
    # Carol works 09:00-17:00 in 30-minute slots: an hour fits from 09:00 to 16:00.
    assert starts(client, carol, 1, long["id"])[-1] == "16:00"
    assert "16:30" in starts(client, carol, 1)
    patient = client
    patient.api_login(alice.email)
    booked = patient.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": slot(1, "10:00").astimezone(TZ).isoformat(),
        "visit_type_id": long["id"]})
    assert booked.status == 201, booked
    assert booked.json()["end"][11:16] == "11:00"
    free = starts(client, carol, 1)
    assert "10:00" not in free and "10:30" not in free and "11:00" in free
    # An hour from 09:30 would run into it; one from 09:00 ends as it begins.
    assert "09:30" not in starts(client, carol, 1, long["id"])
    assert "09:00" in starts(client, carol, 1, long["id"])


def test_a_visit_that_would_run_past_the_hours_or_into_another_is_refused(admin, new_client,
                                                                          carol, alice, bob):
    long = add(admin, "First consultation", 60, [carol])
    appointments.book(bob.id, carol.id, slot(1, "11:00"))
    patient = new_client()
    patient.api_login(alice.email)
    late = patient.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": slot(1, "16:30").astimezone(TZ).isoformat(),
        "visit_type_id": long["id"]})
    assert late.status == 400 and "visit this long" in late.json()["error"]
    clash = patient.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": slot(1, "10:30").astimezone(TZ).isoformat(),
        "visit_type_id": long["id"]})
    assert clash.status == 409
    assert Appointment.select().count() == 1


def test_a_visit_type_the_doctor_does_not_offer_is_refused(admin, new_client, carol, dave,
                                                           alice):
    other = add(admin, "Skin check", 20, [dave])
    patient = new_client()
    patient.api_login(alice.email)
    answer = patient.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": slot(1, "10:00").astimezone(TZ).isoformat(),
        "visit_type_id": other["id"]})
    assert answer.status == 400 and "visit_type_id" in answer.json()["fields"]
    assert patient.get(f"/api/doctors/{carol.id}/slots?date={slot(1).date()}"
                       f"&visit_type={other['id']}").status == 400
    assert not Appointment.select().exists()


@pytest.mark.parametrize("body, field", [
    ({"name": "", "minutes": 30}, "name"),
    ({"name": "Long", "minutes": 9 * 60}, "minutes"),
    ({"name": "Long", "minutes": "an hour"}, "minutes"),
    ({"name": "Long", "minutes": 30, "doctor_ids": []}, "doctor_ids"),
    ({"name": "Long", "minutes": 30, "doctor_ids": [999_999]}, "doctor_ids"),
])
def test_bad_visit_types_are_refused_and_nothing_written(admin, carol, body, field):
    body.setdefault("doctor_ids", [carol.id])
    answer = admin.post_json("/api/admin/visit-types", body)
    assert answer.status == 400, answer
    assert field in answer.json()["fields"]
    assert not VisitType.select().exists()


def test_a_visit_longer_than_the_working_day_is_refused(admin, app):
    short_day = make_doctor("sam@example.com", "Dr Sam Short", "General",
                            {"mon": [["09:00", "12:00"]], "tue": [["14:00", "16:00"]]})
    answer = admin.post_json("/api/admin/visit-types", {
        "name": "Half day", "minutes": 240, "doctor_ids": [short_day.id]})
    assert answer.status == 400 and "longer than the working day" in answer.json()["error"]
    assert not VisitType.select().exists()


def test_racing_bookings_of_different_starts_and_lengths_never_overlap(admin, app, new_client,
                                                                       carol):
    long = add(admin, "First consultation", 90, [carol])
    middle = add(admin, "Follow-up", 60, [carol])
    clients = []
    for i in range(8):
        make_patient(f"racer{i}@example.com", f"Racer {i}")
        client = new_client()
        client.api_login(f"racer{i}@example.com")
        clients.append(client)
    # Every pair of these overlaps: all cover 10:30-11:00.
    wanted = [("09:30", long), ("10:00", long), ("10:30", middle), ("10:00", middle),
              ("10:30", None), ("09:30", long), ("10:30", long), ("10:30", middle)]
    bodies = [{"doctor_id": carol.id, "start": slot(1, at).astimezone(TZ).isoformat(),
               **({"visit_type_id": kind["id"]} if kind else {})} for at, kind in wanted]
    statuses = at_once(clients, bodies)
    assert sorted(statuses) == [201] + [409] * 7, statuses
    assert Appointment.select().where(Appointment.doctor == carol.id).count() == 1


def test_racing_bookings_that_partly_overlap_leave_no_two_visits_overlapping(admin, app,
                                                                            new_client, carol):
    long = add(admin, "First consultation", 90, [carol])
    clients = []
    for i in range(10):
        make_patient(f"racer{i}@example.com", f"Racer {i}")
        client = new_client()
        client.api_login(f"racer{i}@example.com")
        clients.append(client)
    wanted = [("09:00", long), ("09:30", None), ("10:00", long), ("10:30", None),
              ("11:00", long), ("11:30", None), ("12:00", long), ("09:00", None),
              ("10:30", long), ("12:30", None)]
    bodies = [{"doctor_id": carol.id, "start": slot(1, at).astimezone(TZ).isoformat(),
               **({"visit_type_id": kind["id"]} if kind else {})} for at, kind in wanted]
    statuses = at_once(clients, bodies)
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    rows = sorted(Appointment.select().where(Appointment.doctor == carol.id),
                  key=lambda a: a.start)
    assert len(rows) == statuses.count(201)
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert earlier.end <= later.start, (earlier.start, earlier.end, later.start)


def test_the_database_itself_refuses_overlapping_visits_on_postgresql(app, backend, carol,
                                                                      alice, bob):
    if not db.is_postgres():
        pytest.skip("the exclusion constraint is PostgreSQL's; SQLite's booking transaction "
                    "settles it (the race above)")
    start = slot(1, "10:00")
    appointments.book(alice.id, carol.id, start)
    with pytest.raises(IntegrityError), db.database.atomic():
        Appointment.create(patient=bob.id, doctor=carol.id, start=start + timedelta(minutes=15),
                           end=start + timedelta(minutes=45))
    # Back to back is fine, and so is an overlap with a cancelled visit.
    Appointment.create(patient=bob.id, doctor=carol.id, start=start + timedelta(minutes=30),
                       end=start + timedelta(minutes=60))
    Appointment.create(patient=bob.id, doctor=carol.id, start=start + timedelta(minutes=45),
                       end=start + timedelta(minutes=75), status="cancelled")


def test_a_patient_chooses_the_visit_type_on_the_booking_page(admin, new_client, carol, alice):
    long = add(admin, "First consultation", 60, [carol])
    patient = new_client()
    login(patient, alice)
    day = slot(1).astimezone(TZ).date().isoformat()
    page = patient.get(f"/patient/doctors/{carol.id}?date={day}")
    assert "Standard visit (30 minutes)" in page.text and "First consultation (60 minutes)" \
        in page.text
    assert 'value="' + slot(1, "16:30").astimezone(TZ).isoformat() + '"' in page.text
    longer = patient.get(f"/patient/doctors/{carol.id}?date={day}&visit_type={long['id']}")
    start = slot(1, "16:00").astimezone(TZ).isoformat()
    assert f'value="{start}"' in longer.text
    assert slot(1, "16:30").astimezone(TZ).isoformat() not in longer.text
    assert f"visit_type={long['id']}" in longer.text  # the next day keeps the choice
    booked = patient.post("/patient/appointments", {
        "doctor_id": str(carol.id), "date": day, "start": start,
        "visit_type_id": str(long["id"])}, follow=True)
    assert booked.status == 200
    visit = Appointment.get()
    assert visit.end - visit.start == timedelta(minutes=60)
    unknown = patient.get(f"/patient/doctors/{carol.id}?date={day}&visit_type=999")
    assert "does not offer that kind of visit" in unknown.text


def test_a_long_visit_moved_keeps_its_length_and_must_fit(admin, new_client, carol, alice, bob):
    long = add(admin, "First consultation", 60, [carol])
    patient = new_client()
    patient.api_login(alice.email)
    booked = patient.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": slot(2, "10:00").astimezone(TZ).isoformat(),
        "visit_type_id": long["id"]}).json()
    appointments.book(bob.id, carol.id, slot(2, "14:30"))
    # 14:00 would run into Bob's 14:30 visit; 15:00 fits.
    clash = patient.post_json(f"/api/appointments/{booked['id']}/reschedule",
                              {"start": slot(2, "14:00").astimezone(TZ).isoformat()})
    assert clash.status == 409
    moved = patient.post_json(f"/api/appointments/{booked['id']}/reschedule",
                              {"start": slot(2, "15:00").astimezone(TZ).isoformat()})
    assert moved.status == 200, moved
    assert moved.json()["end"][11:16] == "16:00"
    assert "15:30" not in starts(patient, carol, 2)
