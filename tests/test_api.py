"""The JSON API through real HTTP: every route for each role (patients alice and bob, doctors
carol and dave, admin erin), the access rules, and that bad input gets a JSON error, never a
traceback, and writes nothing."""

import re
from datetime import datetime, time, timedelta
from string import Template

import pytest
import time_machine

from clinic import appointments, people
from clinic.models import Appointment, Doctor, Patient, Session, Treatment, User
from tests.conftest import PASSWORD, TZ, slot

TREATMENT = {"visit_type": "Check-up", "symptoms": "Chest pain", "diagnosis": "Angina",
             "treatment": "Rest", "prescription": "Nitroglycerin", "notes": "Back in 2 weeks"}


@pytest.fixture
def api_as(new_client):
    """A fresh client signed in to the API as ``user``."""

    def sign_in(user):
        client = new_client()
        client.api_login(user.email)
        return client

    return sign_in


def book(patient, doctor, start):
    """An appointment made directly, as if booked an hour before ``start`` (so it may be past)."""
    return appointments.book(patient.id, doctor.id, start, now=start - timedelta(hours=1))


def local_iso(instant):
    return instant.astimezone(TZ).isoformat()


def assert_error(response, status):
    assert response.status == status, response
    assert response.headers["content-type"].startswith("application/json"), response
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"], body
    assert "Traceback" not in response.text
    return body


def api_routes(app):
    return [r for r in app.bottle.routes if r.rule.startswith("/api/")]


def concrete(rule, ident=1):
    """A route rule with every <param> filled in."""
    return re.sub(r"<[^>]+>", str(ident), rule) + ("?date=2030-01-01" if "slots" in rule else "")


def table_counts():
    return {model.__name__: model.select().count()
            for model in (User, Patient, Doctor, Appointment, Treatment)}


# -- signing in -----------------------------------------------------------------------------------


def test_login_gives_a_token_that_signs_in_api_requests(client, alice):
    response = client.post_json("/api/login", {"email": "ALICE@example.com",
                                               "password": PASSWORD})
    assert response.status == 200, response
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["user"] == {"id": alice.id, "email": "alice@example.com", "name": "Alice Adams",
                            "role": "patient"}
    session = Session.get()
    assert session.kind == "api" and session.token_hash != body["token"]
    client.token = body["token"]
    assert client.get("/api/appointments").status == 200


def test_login_with_wrong_credentials_is_401(client, alice):
    for credentials in ({"email": alice.email, "password": "wrong password"},
                        {"email": "nobody@example.com", "password": PASSWORD},
                        {}):
        assert_error(client.post_json("/api/login", credentials), 401)
    assert Session.select().count() == 0


def test_login_with_non_string_credentials_is_400(client, alice):
    body = assert_error(client.post_json("/api/login", {"email": ["a"], "password": 12}), 400)
    assert set(body["fields"]) == {"email", "password"}


def test_failed_logins_are_throttled_with_retry_after(client, alice):
    for _ in range(5):
        assert_error(client.post_json("/api/login", {"email": alice.email, "password": "nope"}),
                     401)
    response = client.post_json("/api/login", {"email": alice.email, "password": PASSWORD})
    assert_error(response, 429)
    assert 0 < int(response.headers["retry-after"]) <= 15 * 60
    assert Session.select().count() == 0


def test_logout_ends_the_token(api_as, alice):
    client = api_as(alice)
    response = client.post_json("/api/logout")
    assert response.status == 200 and response.json() == {"signed_out": True}
    assert Session.select().count() == 0
    assert_error(client.get("/api/appointments"), 401)


def test_logout_ends_only_its_own_token(api_as, alice):
    phone, laptop = api_as(alice), api_as(alice)
    phone.post_json("/api/logout")
    assert laptop.get("/api/appointments").status == 200


def test_signed_in_routes_refuse_requests_without_a_valid_token(app, client, new_client,
                                                                 everyone):
    forged = new_client()
    forged.token = "not-a-real-token"
    checked = 0
    for route in api_routes(app):
        if not route.callback.api_roles:
            continue
        for who in (client, forged):
            path = concrete(route.rule, everyone["alice"].id)
            response = who.request(route.method, path, body=b"{}",
                                   headers={"Content-Type": "application/json"})
            assert_error(response, 401)
        checked += 1
    assert checked >= 10


def test_only_the_catalogue_and_sign_up_are_public(app):
    public = {(r.method, r.rule) for r in api_routes(app) if not r.callback.api_roles}
    assert public == {
        ("POST", "/api/login"), ("POST", "/api/register"), ("GET", "/api/doctors"),
        ("GET", "/api/doctors/<doctor_id>/slots"), ("GET", "/api/openapi.json"),
        ("GET", "/api/doctors/<doctor_id>/visit-types"),
        # Accounts: asking for a reset link, and following an emailed link (its token is all).
        ("POST", "/api/password-reset"), ("POST", "/api/password-reset/confirm"),
        ("POST", "/api/me/email/confirm"),
    }


def test_admin_routes_are_forbidden_to_patients_and_doctors(app, api_as, everyone):
    before = table_counts()
    admin_routes = [r for r in api_routes(app) if r.rule.startswith("/api/admin/")]
    assert len(admin_routes) >= 2
    for name in ("alice", "bob", "carol", "dave"):
        who = api_as(everyone[name])
        for route in admin_routes:
            response = who.request(route.method, route.rule, body=b'{"name": "X"}',
                                   headers={"Content-Type": "application/json"})
            assert_error(response, 403)
    assert table_counts() == before


# -- registration ---------------------------------------------------------------------------------


def test_register_creates_a_patient_who_can_sign_in(client, app):
    response = client.post_json("/api/register", {
        "email": "Zoe@Example.com", "password": "long enough", "name": "Zoë Zimmer",
        "date_of_birth": "1990-01-02", "phone": "+49 30 7654321"})
    assert response.status == 201, response
    body = response.json()
    user = User.get(User.email == "zoe@example.com")
    assert body == {"id": user.id, "email": "zoe@example.com", "name": "Zoë Zimmer",
                    "role": "patient"}
    assert Patient.get_by_id(user.id).date_of_birth.isoformat() == "1990-01-02"
    client.api_login("zoe@example.com", "long enough")


def test_register_explains_bad_input_and_writes_nothing(client, alice):
    before = table_counts()
    body = assert_error(client.post_json("/api/register", {
        "email": "alice@example.com", "password": "short", "name": "A",
        "date_of_birth": "1990-02-30"}), 400)
    assert set(body["fields"]) == {"email", "password", "date_of_birth"}
    assert "already exists" in body["fields"]["email"]
    body = assert_error(client.post_json("/api/register", {
        "email": 5, "password": ["long enough"], "name": {"first": "Zoë"},
        "date_of_birth": 19900102}), 400)
    assert set(body["fields"]) == {"email", "password", "name", "date_of_birth"}
    assert table_counts() == before


# -- doctors and slots ----------------------------------------------------------------------------


def test_doctors_are_listed_without_signing_in(client, carol, dave):
    response = client.get("/api/doctors")
    assert response.status == 200
    assert response.json() == {"doctors": [
        {"id": carol.id, "name": "Dr Carol Clark", "specialization": "Cardiology",
         "slot_minutes": 30},
        {"id": dave.id, "name": "Dr Dave Davis", "specialization": "Dermatology",
         "slot_minutes": 30},
    ]}
    only = client.get("/api/doctors?specialization=cardiology").json()["doctors"]
    assert [d["id"] for d in only] == [carol.id]
    people.set_active(dave.id, False)
    assert [d["id"] for d in client.get("/api/doctors").json()["doctors"]] == [carol.id]


def test_slots_are_free_starts_in_the_clinic_zone(client, alice, carol):
    ten = slot(1, "10:00")
    book(alice, carol, ten)
    day = ten.astimezone(TZ).date()
    response = client.get(f"/api/doctors/{carol.id}/slots?date={day.isoformat()}")
    assert response.status == 200, response
    body = response.json()
    assert body["date"] == day.isoformat() and body["slot_minutes"] == 30
    expected = [datetime.combine(day, time(h, m), tzinfo=TZ).isoformat()
                for h in range(9, 17) for m in (0, 30)]
    expected.remove(local_iso(ten))
    assert body["slots"] == expected
    assert all(datetime.fromisoformat(s).utcoffset() is not None for s in body["slots"])


def test_slots_need_a_valid_date(client, carol):
    for query in ("", "?date=", "?date=tomorrow", "?date=2030-02-30", "?date=9999-12-31",
                  "?date=0001-01-01"):
        body = assert_error(client.get(f"/api/doctors/{carol.id}/slots{query}"), 400)
        assert "date" in body["fields"]


def test_slots_of_an_unknown_or_inactive_doctor_are_404(client, alice, carol):
    day = slot(1).astimezone(TZ).date().isoformat()
    for doctor_id in (9999, alice.id, "abc", "99999999999999999999999", "0"):
        assert_error(client.get(f"/api/doctors/{doctor_id}/slots?date={day}"), 404)
    people.set_active(carol.id, False)
    assert_error(client.get(f"/api/doctors/{carol.id}/slots?date={day}"), 404)


# -- listing and reading appointments -------------------------------------------------------------


@pytest.fixture
def diary(everyone):
    """alice with carol tomorrow 10:00, bob with dave tomorrow 11:00, alice with dave in two
    days at 09:00."""
    e = everyone
    return {
        "alice_carol": book(e["alice"], e["carol"], slot(1, "10:00")),
        "bob_dave": book(e["bob"], e["dave"], slot(1, "11:00")),
        "alice_dave": book(e["alice"], e["dave"], slot(2, "09:00")),
    }


@pytest.mark.parametrize("name, expected", [
    ("alice", ["alice_dave", "alice_carol"]),
    ("bob", ["bob_dave"]),
    ("carol", ["alice_carol"]),
    ("dave", ["alice_dave", "bob_dave"]),
    ("erin", ["alice_dave", "bob_dave", "alice_carol"]),
])
def test_appointments_lists_what_each_role_may_see(api_as, everyone, diary, name, expected):
    response = api_as(everyone[name]).get("/api/appointments")
    assert response.status == 200
    body = response.json()
    assert [a["id"] for a in body["appointments"]] == [diary[key].id for key in expected]
    assert body["limit"] == 50 and body["offset"] == 0


def test_appointments_filter_by_status_and_page(api_as, erin, diary):
    appointments.cancel(diary["bob_dave"], erin)
    client = api_as(erin)
    cancelled = client.get("/api/appointments?status=cancelled").json()["appointments"]
    assert [a["id"] for a in cancelled] == [diary["bob_dave"].id]
    assert cancelled[0]["status"] == "cancelled"
    first = client.get("/api/appointments?limit=2").json()["appointments"]
    rest = client.get("/api/appointments?limit=2&offset=2").json()["appointments"]
    assert [a["id"] for a in first + rest] == [diary[k].id for k in ("alice_dave", "bob_dave",
                                                                     "alice_carol")]


def test_appointments_refuse_bad_filters(api_as, erin):
    client = api_as(erin)
    for query in ("status=lost", "limit=0", "limit=201", "limit=abc", "limit=-1", "offset=-1",
                  "offset=99999999999999999999999999", "limit=1e3", "offset=1000001"):
        assert_error(client.get(f"/api/appointments?{query}"), 400)


@pytest.mark.parametrize("name, status", [
    ("alice", 200), ("bob", 404), ("carol", 200), ("dave", 404), ("erin", 200)])
def test_an_appointment_is_shown_only_to_its_people_and_admins(api_as, everyone, diary, name,
                                                               status):
    appointment = diary["alice_carol"]
    response = api_as(everyone[name]).get(f"/api/appointments/{appointment.id}")
    if status == 404:
        body = assert_error(response, 404)
        assert "Alice" not in response.text and body["error"] == "No such appointment."
        return
    assert response.status == 200
    assert response.json() == {
        "id": appointment.id, "status": "booked", "start": local_iso(slot(1, "10:00")),
        "end": local_iso(slot(1, "10:30")), "reason": "", "doctor_id": everyone["carol"].id,
        "patient_id": everyone["alice"].id, "patient_name": "Alice Adams",
        "doctor_name": "Dr Carol Clark", "specialization": "Cardiology", "treatment": None,
        "amendments": [],
    }


def test_ids_that_cannot_exist_are_404(api_as, erin):
    client = api_as(erin)
    for raw in ("abc", "0", "-1", "1.5", "99999999999999999999999999", "%D9%A1%D9%A2", "9" * 5000):
        assert_error(client.get(f"/api/appointments/{raw}"), 404)
        assert_error(client.post_json(f"/api/appointments/{raw}/cancel"), 404)
        assert_error(client.get(f"/api/patients/{raw}/history"), 404)
    assert_error(client.get("/api/appointments/424242"), 404)


# -- booking --------------------------------------------------------------------------------------


def test_patient_books_a_free_slot(api_as, alice, carol):
    start = slot(1, "10:00")
    response = api_as(alice).post_json("/api/appointments", {
        "doctor_id": carol.id, "start": local_iso(start), "reason": "Chest pain"})
    assert response.status == 201, response
    body = response.json()
    row = Appointment.get()
    assert body["id"] == row.id and body["status"] == "booked"
    assert body["start"] == local_iso(start) and body["patient_id"] == alice.id
    assert body["doctor_name"] == "Dr Carol Clark" and body["reason"] == "Chest pain"
    assert row.start == start and row.patient_id == alice.id


def test_start_may_be_sent_in_any_offset(api_as, alice, carol):
    start = slot(1, "10:00")
    response = api_as(alice).post_json("/api/appointments", {
        "doctor_id": carol.id, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert response.status == 201, response
    assert response.json()["start"] == local_iso(start)


def test_a_taken_slot_is_409(api_as, alice, bob, carol):
    start = slot(1, "10:00")
    book(alice, carol, start)
    body = assert_error(api_as(bob).post_json("/api/appointments", {
        "doctor_id": carol.id, "start": local_iso(start)}), 409)
    assert "taken" in body["error"]
    assert Appointment.select().count() == 1


def test_a_patient_cannot_be_in_two_places_at_once(api_as, alice, carol, dave):
    start = slot(1, "10:00")
    book(alice, carol, start)
    assert_error(api_as(alice).post_json("/api/appointments", {
        "doctor_id": dave.id, "start": local_iso(start)}), 409)
    assert Appointment.select().count() == 1


def test_times_that_are_not_bookable_are_400(api_as, alice, carol):
    client = api_as(alice)
    for start, field in ((slot(1, "10:10"), "start"), (slot(1, "18:00"), "start"),
                         (slot(-1, "10:00"), "start"), (slot(200, "10:00"), "start")):
        body = assert_error(client.post_json("/api/appointments", {
            "doctor_id": carol.id, "start": local_iso(start)}), 400)
        assert field in body["fields"]
    body = assert_error(client.post_json("/api/appointments", {
        "doctor_id": 424242, "start": local_iso(slot(1))}), 400)
    assert "doctor_id" in body["fields"]
    assert Appointment.select().count() == 0


def test_doctors_cannot_book(api_as, carol, dave):
    assert_error(api_as(carol).post_json("/api/appointments", {
        "doctor_id": dave.id, "start": local_iso(slot(1))}), 403)
    assert Appointment.select().count() == 0


def test_patients_book_only_for_themselves(api_as, alice, bob, carol):
    assert_error(api_as(alice).post_json("/api/appointments", {
        "doctor_id": carol.id, "start": local_iso(slot(1)), "patient_id": bob.id}), 403)
    assert Appointment.select().count() == 0
    response = api_as(alice).post_json("/api/appointments", {
        "doctor_id": carol.id, "start": local_iso(slot(1)), "patient_id": alice.id})
    assert response.status == 201


def test_admin_books_for_a_patient(api_as, alice, carol, dave, erin):
    client = api_as(erin)
    start = local_iso(slot(1))
    body = assert_error(client.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": start}), 400)
    assert "patient_id" in body["fields"]
    for not_a_patient in (dave.id, erin.id, 424242):
        assert_error(client.post_json("/api/appointments", {
            "doctor_id": carol.id, "start": start, "patient_id": not_a_patient}), 404)
    assert Appointment.select().count() == 0
    response = client.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": start, "patient_id": alice.id})
    assert response.status == 201, response
    assert response.json()["patient_id"] == alice.id
    assert Appointment.get().patient_id == alice.id


# -- changing appointments ------------------------------------------------------------------------


@pytest.mark.parametrize("name, action, status", [
    ("bob", "cancel", 404), ("dave", "cancel", 404),
    ("bob", "reschedule", 404), ("dave", "reschedule", 404),
    ("alice", "complete", 403), ("bob", "complete", 403), ("dave", "complete", 404),
    ("erin", "complete", 403),
    ("alice", "no-show", 403), ("bob", "no-show", 403), ("dave", "no-show", 404),
])
def test_changes_are_refused_to_those_without_access(api_as, everyone, diary, name, action,
                                                     status):
    appointment = diary["alice_carol"]
    before = table_counts()
    body = {"start": local_iso(slot(1, "15:00")), **TREATMENT}
    assert_error(api_as(everyone[name]).post_json(
        f"/api/appointments/{appointment.id}/{action}", body), status)
    assert Appointment.get_by_id(appointment.id).status == "booked"
    assert Appointment.get_by_id(appointment.id).start == slot(1, "10:00")
    assert table_counts() == before


@pytest.mark.parametrize("name", ["alice", "carol", "erin"])
def test_cancel(api_as, everyone, diary, name):
    appointment = diary["alice_carol"]
    client = api_as(everyone[name])
    response = client.post_json(f"/api/appointments/{appointment.id}/cancel")
    assert response.status == 200, response
    assert response.json()["status"] == "cancelled" and response.json()["id"] == appointment.id
    assert Appointment.get_by_id(appointment.id).status == "cancelled"
    assert_error(client.post_json(f"/api/appointments/{appointment.id}/cancel"), 409)


def test_patients_cannot_cancel_close_to_the_start(api_as, alice, erin, diary):
    appointment = diary["alice_carol"]
    patient, admin = api_as(alice), api_as(erin)
    with time_machine.travel(appointment.start - timedelta(hours=1)):
        body = assert_error(patient.post_json(f"/api/appointments/{appointment.id}/cancel"), 409)
        assert "call the clinic" in body["error"]
        assert Appointment.get_by_id(appointment.id).status == "booked"
        assert admin.post_json(f"/api/appointments/{appointment.id}/cancel").status == 200


@pytest.mark.parametrize("name", ["alice", "carol", "erin"])
def test_reschedule_moves_to_a_free_slot(api_as, everyone, diary, name):
    appointment = diary["alice_carol"]
    new_start = slot(1, "15:00")
    response = api_as(everyone[name]).post_json(
        f"/api/appointments/{appointment.id}/reschedule", {"start": local_iso(new_start)})
    assert response.status == 200, response
    assert response.json()["start"] == local_iso(new_start)
    assert Appointment.get_by_id(appointment.id).start == new_start


def test_reschedule_onto_a_taken_or_bad_time_changes_nothing(api_as, alice, bob, carol, diary):
    appointment = diary["alice_carol"]
    book(bob, carol, slot(1, "15:00"))
    client = api_as(alice)
    url = f"/api/appointments/{appointment.id}/reschedule"
    assert_error(client.post_json(url, {"start": local_iso(slot(1, "15:00"))}), 409)
    for bad in ({}, {"start": None}, {"start": 5}, {"start": "soon"},
                {"start": "2030-01-01T10:00:00"}, {"start": local_iso(slot(1, "15:10"))}):
        body = assert_error(client.post_json(url, bad), 400)
        assert "start" in body["fields"]
    assert Appointment.get_by_id(appointment.id).start == slot(1, "10:00")


@pytest.fixture
def tomorrow_noon(diary):
    """Time moves to noon tomorrow: alice's 10:00 with carol is over, bob's 11:00 with dave too,
    alice's with dave is the day after."""
    with time_machine.travel(slot(1, "12:00")):
        yield


def test_doctor_completes_a_visit_with_the_treatment(api_as, carol, diary, tomorrow_noon):
    appointment = diary["alice_carol"]
    response = api_as(carol).post_json(f"/api/appointments/{appointment.id}/complete",
                                       TREATMENT)
    assert response.status == 200, response
    body = response.json()
    assert body["status"] == "completed"
    assert body["treatment"] == {**TREATMENT, "amended_at": None}
    assert Treatment.get_by_id(appointment.id).diagnosis == "Angina"
    assert_error(api_as(carol).post_json(f"/api/appointments/{appointment.id}/complete",
                                         TREATMENT), 409)


def test_completing_needs_a_visit_type_and_text_and_writes_nothing(api_as, carol, diary,
                                                                   tomorrow_noon):
    appointment = diary["alice_carol"]
    client = api_as(carol)
    url = f"/api/appointments/{appointment.id}/complete"
    body = assert_error(client.post_json(url, {**TREATMENT, "visit_type": " "}), 400)
    assert "visit_type" in body["fields"]
    body = assert_error(client.post_json(url, {**TREATMENT, "diagnosis": ["Angina"],
                                               "notes": 3}), 400)
    assert set(body["fields"]) == {"diagnosis", "notes"}
    assert_error(client.post_json(url, {**TREATMENT, "notes": "x" * 10_001}), 400)
    assert Treatment.select().count() == 0
    assert Appointment.get_by_id(appointment.id).status == "booked"


def test_a_visit_cannot_be_completed_before_its_day(api_as, dave, diary, tomorrow_noon):
    appointment = diary["alice_dave"]
    assert_error(api_as(dave).post_json(f"/api/appointments/{appointment.id}/complete",
                                        TREATMENT), 409)
    assert Treatment.select().count() == 0


def test_a_visit_cannot_be_completed_before_its_start_on_its_day(api_as, carol, diary):
    appointment = diary["alice_carol"]  # tomorrow 10:00
    client = api_as(carol)
    url = f"/api/appointments/{appointment.id}/complete"
    with time_machine.travel(slot(1, "09:45")):
        body = assert_error(client.post_json(url, TREATMENT), 409)
        assert "from its start on" in body["error"]
    with time_machine.travel(slot(1, "10:00")):
        assert client.post_json(url, TREATMENT).status == 200


def test_the_doctor_completes_or_undoes_a_no_show_through_the_api(api_as, carol, diary,
                                                                   tomorrow_noon):
    client = api_as(carol)
    missed, seen = diary["alice_carol"], diary["alice_carol"]
    assert client.post_json(f"/api/appointments/{missed.id}/no-show").json()["status"] == (
        "no_show")
    response = client.post_json(f"/api/appointments/{missed.id}/undo-no-show")
    assert response.status == 200, response
    assert response.json()["status"] == "booked"
    assert_error(client.post_json(f"/api/appointments/{missed.id}/undo-no-show"), 409)
    client.post_json(f"/api/appointments/{seen.id}/no-show")
    with time_machine.travel(slot(1, "19:00")):  # the next day (now is the visit's day)
        assert_error(client.post_json(f"/api/appointments/{seen.id}/undo-no-show"), 409)
        response = client.post_json(f"/api/appointments/{seen.id}/complete", TREATMENT)
        assert response.status == 200 and response.json()["status"] == "completed"


@pytest.mark.parametrize("name, key", [("carol", "alice_carol"), ("erin", "bob_dave")])
def test_no_show_after_the_start(api_as, everyone, diary, tomorrow_noon, name, key):
    appointment = diary[key]
    response = api_as(everyone[name]).post_json(f"/api/appointments/{appointment.id}/no-show")
    assert response.status == 200, response
    assert response.json()["status"] == "no_show"
    assert Appointment.get_by_id(appointment.id).status == "no_show"


def test_no_show_before_the_start_is_409(api_as, dave, diary, tomorrow_noon):
    appointment = diary["alice_dave"]
    assert_error(api_as(dave).post_json(f"/api/appointments/{appointment.id}/no-show"), 409)
    assert Appointment.get_by_id(appointment.id).status == "booked"


# -- patient history ------------------------------------------------------------------------------


@pytest.fixture
def visit(alice, carol):
    """alice saw carol yesterday at 10:00."""
    start = slot(-1, "10:00")
    appointment = book(alice, carol, start)
    return appointments.complete(appointment, carol, TREATMENT, now=start + timedelta(hours=1))


@pytest.mark.parametrize("name, status", [
    ("alice", 200), ("bob", 404), ("carol", 200), ("dave", 404), ("erin", 200)])
def test_history_is_shown_to_the_patient_their_doctors_and_admins(api_as, everyone, visit,
                                                                  name, status):
    alice = everyone["alice"]
    response = api_as(everyone[name]).get(f"/api/patients/{alice.id}/history")
    if status == 404:
        assert_error(response, 404)
        assert "Angina" not in response.text
        return
    assert response.status == 200, response
    body = response.json()
    assert body["patient"] == {"id": alice.id, "name": "Alice Adams",
                               "email": "alice@example.com", "date_of_birth": "1980-05-17",
                               "phone": "+49301234567", "channel": "email",
                               "language": None, "sms_opted_out": False}
    assert body["visits"] == [{
        "appointment_id": visit.id, "date": slot(-1).astimezone(TZ).date().isoformat(),
        "start": local_iso(slot(-1, "10:00")), "doctor": "Dr Carol Clark",
        "doctor_id": everyone["carol"].id, "specialization": "Cardiology", **TREATMENT,
        "amended_at": None}]


def test_a_doctor_sees_the_history_once_the_patient_books_with_them(api_as, alice, dave, visit):
    client = api_as(dave)
    assert_error(client.get(f"/api/patients/{alice.id}/history"), 404)
    book(alice, dave, slot(1))
    assert client.get(f"/api/patients/{alice.id}/history").status == 200


def test_history_of_someone_who_is_not_a_patient_is_404(api_as, carol, erin):
    assert_error(api_as(erin).get(f"/api/patients/{carol.id}/history"), 404)


# -- admin ----------------------------------------------------------------------------------------

NEW_DOCTOR = {"name": "Dr Frank Fox", "email": "frank@example.com", "password": "long enough",
              "specialization": "Neurology", "slot_minutes": 20,
              "working_hours": {"mon": [["09:00", "13:00"], ["14:00", "17:00"]],
                                "sun": [["10:00", "12:00"]]}}


def test_admin_adds_a_doctor_who_can_then_be_booked(api_as, client, erin):
    response = api_as(erin).post_json("/api/admin/doctors", NEW_DOCTOR)
    assert response.status == 201, response
    body = response.json()
    frank = User.get(User.email == "frank@example.com")
    assert body == {"id": frank.id, "name": "Dr Frank Fox", "email": "frank@example.com",
                    "role": "doctor", "active": True, "specialization": "Neurology",
                    "slot_minutes": 20, "working_hours": NEW_DOCTOR["working_hours"]}
    assert frank.id in [d["id"] for d in client.get("/api/doctors").json()["doctors"]]
    sunday = next(slot(d).astimezone(TZ).date() for d in range(1, 8)
                  if slot(d).astimezone(TZ).weekday() == 6)
    slots = client.get(f"/api/doctors/{frank.id}/slots?date={sunday}").json()["slots"]
    assert [s[11:16] for s in slots] == ["10:00", "10:20", "10:40", "11:00", "11:20", "11:40"]
    client.api_login("frank@example.com", "long enough")


@pytest.mark.parametrize("change, field, says", [
    ({"working_hours": {"mon": [["09:00", "08:00"]]}}, "working_hours", "mon"),
    ({"working_hours": {"funday": [["09:00", "12:00"]]}}, "working_hours", "funday"),
    ({"working_hours": {"tue": [["09:00", "12:00"], ["11:00", "13:00"]]}}, "working_hours",
     "overlap"),
    ({"working_hours": {"wed": [["9am", "5pm"]]}}, "working_hours", "HH:MM"),
    ({"working_hours": {"wed": "09:00-17:00"}}, "working_hours", "wed"),
    ({"working_hours": [["09:00", "17:00"]]}, "working_hours", "weekdays"),
    ({"slot_minutes": "thirty"}, "slot_minutes", "minutes"),
    ({"slot_minutes": 10**30}, "slot_minutes", "minutes"),
    ({"slot_minutes": 1.5}, "slot_minutes", "minutes"),
    ({"slot_minutes": 0}, "slot_minutes", "minutes"),
    ({"email": "erin@example.com"}, "email", "already exists"),
    ({"name": None}, "name", "name"),
    ({"password": 12345678}, "password", "string"),
])
def test_a_doctor_with_bad_details_is_refused_with_reasons(api_as, erin, change, field, says):
    before = table_counts()
    body = assert_error(api_as(erin).post_json("/api/admin/doctors", {**NEW_DOCTOR, **change}),
                        400)
    assert field in body["fields"]
    assert says.lower() in (body["error"] + body["fields"][field]).lower(), body
    assert table_counts() == before


def test_dashboard_stats_say_whether_they_were_cached(api_as, erin, diary):
    client = api_as(erin)
    first = client.get("/api/admin/dashboard-stats")
    assert first.status == 200, first
    body = first.json()
    assert body["cached"] is False
    assert body["patients"] == 2 and body["doctors"] == 2
    assert sum(body["this_month"].values()) <= 3 and set(body["today"]) == {
        "booked", "confirmed", "arrived", "completed", "cancelled", "no_show"}
    assert datetime.fromisoformat(body["computed_at"]).utcoffset() is not None
    second = client.get("/api/admin/dashboard-stats").json()
    assert second["cached"] is True and second["computed_at"] == body["computed_at"]


# -- CSRF: cookies need the header, bearer tokens do not ------------------------------------------


def test_cookie_signed_in_post_needs_the_csrf_header(client, alice, carol):
    client.login(alice.email)
    booking = {"doctor_id": carol.id, "start": local_iso(slot(1))}
    assert client.get("/api/appointments").status == 200  # reading needs no token
    assert_error(client.post_json("/api/appointments", booking), 403)
    assert_error(client.post_json("/api/appointments", booking,
                                  headers={"X-CSRF-Token": "0" * 64}), 403)
    assert Appointment.select().count() == 0
    client.get("/", follow=True)  # a page signed in carries this browser's token
    response = client.post_json("/api/appointments", booking,
                                headers={"X-CSRF-Token": client.csrf})
    assert response.status == 201, response


def test_bearer_post_needs_no_csrf_header(api_as, alice, carol):
    client = api_as(alice)
    assert "clinic_csrf" not in client.cookies
    response = client.post_json("/api/appointments", {"doctor_id": carol.id,
                                                      "start": local_iso(slot(1))})
    assert response.status == 201, response


# -- bad input: always a JSON error, never a traceback, and nothing written ------------------------

MALFORMED = [b"{not json", b"[1, 2]", b'"a string"', b"null", b"12", b"\xff\xfe{}",
             b"1" * 5000, b'{"a": ' * 10_000]


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b[:12]))
def test_malformed_json_is_400_and_writes_nothing(api_as, everyone, diary, body):
    appointment = diary["alice_carol"]
    before = table_counts()
    cases = [("alice", "/api/appointments"),
             ("alice", f"/api/appointments/{appointment.id}/reschedule"),
             ("carol", f"/api/appointments/{appointment.id}/complete"),
             ("erin", "/api/admin/doctors")]
    for name, path in cases:
        response = api_as(everyone[name]).request(
            "POST", path, body=body, headers={"Content-Type": "application/json"})
        assert_error(response, 400)
    for path in ("/api/login", "/api/register"):
        response = api_as(everyone["alice"]).request(
            "POST", path, body=body, headers={"Content-Type": "application/json"})
        assert_error(response, 400)
    assert table_counts() == before


@pytest.mark.parametrize("raw, field", [
    ('{"doctor_id": "$doctor", "start": "$start"}', "doctor_id"),
    ('{"doctor_id": $doctor.5, "start": "$start"}', "doctor_id"),
    ('{"doctor_id": true, "start": "$start"}', "doctor_id"),
    ('{"doctor_id": 1e999, "start": "$start"}', "doctor_id"),
    ('{"doctor_id": -$doctor, "start": "$start"}', "doctor_id"),
    ('{"doctor_id": 99999999999999999999999999999, "start": "$start"}', "doctor_id"),
    ('{"start": "$start"}', "doctor_id"),
    ('{"doctor_id": $doctor, "start": 1735725600}', "start"),
    ('{"doctor_id": $doctor, "start": ["$start"]}', "start"),
    ('{"doctor_id": $doctor}', "start"),
    ('{"doctor_id": $doctor, "start": "2030-02-30T10:00:00+01:00"}', "start"),
    ('{"doctor_id": $doctor, "start": "9999-12-31T23:30:00-05:00"}', "start"),
    ('{"doctor_id": $doctor, "start": "0001-01-01T00:10:00+05:00"}', "start"),
    ('{"doctor_id": $doctor, "start": "2030-01-01T10:00:00"}', "start"),
    ('{"doctor_id": $doctor, "start": "$start", "reason": {"why": 1}}', "reason"),
    ('{"doctor_id": $doctor, "start": "$start", "reason": "$long"}', "reason"),
])
def test_wrongly_typed_booking_fields_are_400_and_write_nothing(api_as, alice, carol, raw,
                                                                field):
    body = Template(raw).substitute(doctor=carol.id, start=local_iso(slot(1)), long="x" * 2001)
    response = api_as(alice).request("POST", "/api/appointments", body=body.encode(),
                                     headers={"Content-Type": "application/json"})
    error = assert_error(response, 400)
    assert field in error["fields"], error
    assert Appointment.select().count() == 0


def test_body_over_a_mebibyte_is_413(api_as, alice, carol):
    body = b'{"reason": "' + b"x" * (1024 * 1024) + b'"}'
    response = api_as(alice).request("POST", "/api/appointments", body=body,
                                     headers={"Content-Type": "application/json"})
    assert_error(response, 413)
    assert Appointment.select().count() == 0


def test_unknown_api_paths_and_methods_answer_in_json(client, alice):
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.get("/api/login"), 405)
    assert_error(client.request("DELETE", "/api/appointments/1"), 405)


def test_api_responses_are_not_cached(client, carol):
    response = client.get("/api/doctors")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
