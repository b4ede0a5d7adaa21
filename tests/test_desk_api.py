"""The front desk through the JSON API: staff accounts, finding and registering patients,
booking, moving, cancelling and checking in for them, and no medical record ever. Dana works
at the desk; Erin is the admin; Alice and Bob are patients; Dr Carol and Dr Dave are doctors."""

import json
from datetime import datetime, timedelta

import pytest
import time_machine

from clinic import appointments, people, settings
from clinic.mail import outbox, sms
from clinic.models import Appointment, AuditEntry, Message, Patient, Session, User
from tests.conftest import PASSWORD, TZ, make_patient

# A Wednesday morning, before the first slot (09:00).
MORNING = datetime(2031, 3, 12, 8, 0, tzinfo=TZ)


def at(hhmm, days=0):
    hour, minute = map(int, hhmm.split(":"))
    return (MORNING + timedelta(days=days)).replace(hour=hour, minute=minute)


@pytest.fixture
def morning():
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


@pytest.fixture
def desk(morning, new_client, dana):
    client = new_client()
    client.api_login(dana.email)
    return client


@pytest.fixture
def admin(morning, new_client, erin):
    client = new_client()
    client.api_login(erin.email)
    return client


def audited(action, user):
    return list(AuditEntry.select().where(AuditEntry.action == action,
                                          AuditEntry.user_id == user.id))


# -- staff ----------------------------------------------------------------------------------------


def test_an_admin_adds_a_desk_account_that_can_sign_in(admin, new_client):
    response = admin.post_json("/api/admin/staff", {"name": "Dana Desk",
                                                    "email": "Dana@Example.com",
                                                    "password": PASSWORD, "role": "desk"})
    assert response.status == 201, response
    body = response.json()
    assert body == {"id": body["id"], "name": "Dana Desk", "email": "dana@example.com",
                    "role": "desk"}
    client = new_client()
    client.api_login("dana@example.com")
    assert client.get("/api/me").json()["role"] == "desk"


@pytest.mark.parametrize(("change", "field"), [
    ({"email": "alice@example.com"}, "email"),  # taken
    ({"password": "short"}, "password"),
    ({"role": "doctor"}, "role"),
    ({"role": "patient"}, "role"),
    ({"name": ""}, "name"),
])
def test_a_bad_staff_account_is_refused_beside_the_field(admin, alice, change, field):
    before = User.select().count()
    payload = {"name": "Dana Desk", "email": "dana@example.com", "password": PASSWORD,
               "role": "desk", **change}
    response = admin.post_json("/api/admin/staff", payload)
    assert response.status == 400, response
    assert field in response.json()["fields"]
    assert User.select().count() == before


def test_only_admins_add_staff(desk, new_client, alice):
    payload = {"name": "X", "email": "x@example.com", "password": PASSWORD, "role": "admin"}
    assert desk.post_json("/api/admin/staff", payload).status == 403
    patient = new_client()
    patient.api_login(alice.email)
    assert patient.post_json("/api/admin/staff", payload).status == 403
    assert not User.select().where(User.email == "x@example.com").exists()


# -- patients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["alice", "ADAMS", "alice@example", "+49 30 123", "+493012",
                               "+49 (30) 1234567", "1980-05-17"])
def test_the_desk_finds_a_patient_by_name_email_phone_or_birth_date(desk, alice, q):
    bob = make_patient("bob@example.com", "Bob Brown")
    Patient.update(phone="+44 20 7946 0000", date_of_birth="1990-01-01").where(
        Patient.user == bob.id).execute()
    response = desk.get(f"/api/patients?q={q.replace('+', '%2B').replace(' ', '+')}")
    assert response.status == 200, response
    assert response.json() == {"patients": [{
        "id": alice.id, "name": "Alice Adams", "email": "alice@example.com",
        "phone": "+49301234567", "date_of_birth": "1980-05-17", "channel": "email",
        "language": None, "sms_opted_out": False}]}


def test_the_desk_registers_a_patient_without_email(desk, dana):
    response = desk.post_json("/api/patients", {"name": "Walter Walk-in",
                                                "phone": "+49 170 1234567",
                                                "date_of_birth": "1950-02-03"})
    assert response.status == 201, response
    body = response.json()
    assert body == {"id": body["id"], "name": "Walter Walk-in", "email": None,
                    "phone": "+491701234567", "date_of_birth": "1950-02-03",
                    "channel": "email", "language": None, "sms_opted_out": False}
    assert [e.patient_id for e in audited("register patient", dana)] == [body["id"]]
    # Two patients without email are fine: NULL is not a duplicate.
    assert desk.post_json("/api/patients", {"name": "Wilma Walk-in"}).status == 201


@pytest.mark.parametrize(("payload", "field"), [
    ({"name": ""}, "name"),
    ({"name": "A", "email": "alice@example.com"}, "email"),
    ({"name": "A", "email": "not an email"}, "email"),
    ({"name": "A", "phone": "030 1234"}, "phone"),
    ({"name": "A", "date_of_birth": "3.2.1950"}, "date_of_birth"),
    ({"name": 7}, "name"),
])
def test_a_bad_registration_is_refused_and_writes_nothing(desk, alice, payload, field):
    before = User.select().count()
    response = desk.post_json("/api/patients", payload)
    assert response.status == 400, response
    assert field in response.json()["fields"]
    assert User.select().count() == before


def test_a_patient_without_email_gets_no_email_and_the_outbox_says_why(desk, carol, smtp_settings):
    patient = desk.post_json("/api/patients", {"name": "Walter Walk-in"}).json()
    response = desk.post_json("/api/appointments", {"doctor_id": carol.id, "patient_id":
                                                    patient["id"],
                                                    "start": at("10:00").isoformat()})
    assert response.status == 201, response
    messages = list(Message.select().where(Message.user == patient["id"]))
    assert [(m.kind, m.status, m.last_error) for m in messages] == [
        ("confirmation", "skipped", outbox.NO_EMAIL)]


# -- a patient's details: channel, language, how to reach them ----------------------------------


@pytest.fixture
def languages(app):
    """The clinic offers English and German."""
    return settings.use(settings.get().replace(languages=("en", "de")))


def patch(client, patient_id, payload):
    return client.request("PATCH", f"/api/patients/{patient_id}",
                          body=json.dumps(payload).encode(),
                          headers={"Content-Type": "application/json"})


def test_the_desk_sets_a_patients_channel_and_language_and_messages_follow(
        desk, dana, alice, carol, languages):
    response = patch(desk, alice.id, {"channel": "sms", "language": "de"})
    assert response.status == 200, response
    body = response.json()
    assert (body["channel"], body["language"], body["pending_email"]) == ("sms", "de", None)
    assert desk.get(f"/api/patients/{alice.id}").json() == body
    entry = audited("update patient", dana)[0]
    assert (entry.patient_id, entry.reason) == (alice.id, "channel, language")
    # The next confirmation goes by SMS to her phone, in German.
    desk.post_json("/api/appointments", {"doctor_id": carol.id, "patient_id": alice.id,
                                         "start": at("10:00").isoformat()})
    message = Message.get(Message.kind == "confirmation", Message.user == alice.id)
    assert (message.channel, message.recipient) == ("sms", "+49301234567")
    assert "Termin" in message.text_body


@pytest.mark.parametrize(("payload", "field"), [
    ({"channel": "fax"}, "channel"),
    ({"language": "xx", "phone": "+49 170 1234567"}, "language"),  # all or nothing
    ({"phone": "call me", "name": "Alice B."}, "phone"),
    ({"phone": "", "channel": "both"}, "channel"),  # SMS needs a phone
    ({"name": ""}, "name"),
    ({"email": "bob@example.com"}, "email"),  # Bob's
    ({"channel": 3}, "channel"),
])
def test_bad_details_are_refused_beside_the_field_and_change_nothing(desk, dana, alice, bob,
                                                                    payload, field):
    before = (User.get_by_id(alice.id).name, Patient.get(Patient.user == alice.id).phone)
    response = patch(desk, alice.id, payload)
    assert response.status == 400, response
    assert field in response.json()["fields"]
    assert (User.get_by_id(alice.id).name,
            Patient.get(Patient.user == alice.id).phone) == before
    assert audited("update patient", dana) == []


def test_the_desk_gives_a_first_email_but_never_replaces_one(desk, dana, alice):
    # Replacing it would send its link, and so the account and its records, to the desk.
    response = patch(desk, alice.id, {"email": "desk@elsewhere.example.com"})
    assert response.status == 400 and "email" in response.json()["fields"]
    assert not Message.select().where(Message.kind == "email_change").exists()
    walter = people.register_at_desk("Walter Walk-in")
    body = patch(desk, walter.id, {"email": "walter@example.com"}).json()
    assert (body["email"], body["pending_email"]) == (None, "walter@example.com")
    sent = Message.get(Message.kind == "email_change")
    assert sent.recipient == "walter@example.com"
    assert audited("update patient", dana)[0].reason == "email"


def test_only_what_changed_is_audited(desk, dana, alice):
    patch(desk, alice.id, {"channel": "email", "phone": "+49 30 1234567", "name": "Alice Adams"})
    assert audited("update patient", dana) == []  # the same values: nothing changed
    patch(desk, alice.id, {"channel": "both", "phone": "+49 30 1234567"})
    assert [e.reason for e in audited("update patient", dana)] == ["channel"]


def test_a_patients_details_are_the_desks_and_admins_only(desk, admin, new_client, alice, bob,
                                                          carol):
    assert patch(admin, alice.id, {"name": "Alice Adams-Berg"}).status == 200
    assert User.get_by_id(alice.id).name == "Alice Adams-Berg"
    for email in (bob.email, carol.email):
        other = new_client()
        other.api_login(email)
        assert other.get(f"/api/patients/{alice.id}").status == 403
        assert patch(other, alice.id, {"phone": "+49 170 1234567"}).status == 403
    # Only patients have these details: a doctor's id, or none, is not found.
    assert desk.get(f"/api/patients/{carol.id}").status == 404
    assert patch(desk, carol.id, {"channel": "sms"}).status == 404
    assert desk.get("/api/patients/99999").status == 404


def test_a_stopped_number_shows_and_the_desk_cannot_undo_it(desk, alice):
    sms.reply("+49301234567", "STOP")
    found = desk.get("/api/patients?q=alice").json()["patients"]
    assert found[0]["sms_opted_out"] is True
    assert patch(desk, alice.id, {"channel": "sms"}).json()["sms_opted_out"] is True


def test_the_desk_registers_a_patient_who_reads_sms_in_german(desk, languages):
    response = desk.post_json("/api/patients", {"name": "Walter Walk-in", "channel": "sms",
                                                "phone": "+49 170 1234567", "language": "de"})
    assert response.status == 201, response
    assert (response.json()["channel"], response.json()["language"]) == ("sms", "de")
    response = desk.post_json("/api/patients", {"name": "Wilma Walk-in", "channel": "sms"})
    assert response.status == 400 and "channel" in response.json()["fields"]
    assert not User.select().where(User.name == "Wilma Walk-in").exists()


# -- appointments ---------------------------------------------------------------------------------


def test_the_desk_books_for_a_patient_and_it_is_audited(desk, dana, alice, carol):
    response = desk.post_json("/api/appointments", {"doctor_id": carol.id, "patient_id": alice.id,
                                                    "start": at("10:00").isoformat()})
    assert response.status == 201, response
    assert response.json()["patient_id"] == alice.id
    [entry] = audited("book appointment", dana)
    assert (entry.patient_id, entry.patient_name, entry.role) == (alice.id, "Alice Adams",
                                                                  "desk")


def test_the_desk_must_name_an_existing_patient(desk, carol, dave):
    start = at("10:00").isoformat()
    assert desk.post_json("/api/appointments", {"doctor_id": carol.id,
                                                "start": start}).status == 400
    assert desk.post_json("/api/appointments", {"doctor_id": carol.id, "patient_id": dave.id,
                                                "start": start}).status == 404


def test_the_desk_moves_and_cancels_inside_the_patients_cutoff(desk, dana, alice, carol,
                                                               new_client):
    visit = appointments.book(alice.id, carol.id, at("09:30"))
    patient = new_client()
    patient.api_login(alice.email)
    # 90 minutes ahead: too late for the patient (a 2 h cutoff), not for the desk.
    assert patient.post_json(f"/api/appointments/{visit.id}/cancel").status == 409
    moved = desk.post_json(f"/api/appointments/{visit.id}/reschedule",
                           {"start": at("11:00").isoformat()})
    assert moved.status == 200, moved
    assert moved.json()["start"] == at("11:00").isoformat()
    assert desk.post_json(f"/api/appointments/{visit.id}/cancel").json()["status"] == "cancelled"
    assert [e.action for e in AuditEntry.select().where(AuditEntry.user_id == dana.id)
            .order_by(AuditEntry.id)] == ["move appointment", "cancel appointment"]


def test_the_patients_own_changes_are_not_logged_as_on_behalf(morning, new_client, alice, carol):
    client = new_client()
    client.api_login(alice.email)
    response = client.post_json("/api/appointments", {"doctor_id": carol.id,
                                                      "start": at("10:00", days=2).isoformat()})
    assert response.status == 201
    assert not AuditEntry.select().where(AuditEntry.action == "book appointment").exists()


def test_check_in_makes_the_visit_arrived_and_keeps_its_slot(desk, dana, alice, bob, carol,
                                                             new_client):
    visit = appointments.book(alice.id, carol.id, at("10:00"))
    response = desk.post_json(f"/api/appointments/{visit.id}/check-in")
    assert response.status == 200, response
    assert response.json()["status"] == "arrived"
    assert desk.post_json(f"/api/appointments/{visit.id}/check-in").status == 200  # harmless
    assert len(audited("check in", dana)) == 1
    # Still taken: nobody else gets 10:00.
    other = new_client()
    other.api_login(bob.email)
    assert other.post_json("/api/appointments", {"doctor_id": carol.id,
                                                 "start": at("10:00").isoformat()}).status == 409
    # The doctor completes an arrived visit, once it has begun.
    doctor = new_client()
    doctor.api_login(carol.email)
    with time_machine.travel(at("10:05"), tick=False):
        done = doctor.post_json(f"/api/appointments/{visit.id}/complete",
                                {"visit_type": "Check-up"})
    assert done.status == 200, done
    assert done.json()["status"] == "completed"


def test_a_checked_in_patient_cannot_be_booked_elsewhere_at_that_time(desk, alice, carol, dave):
    visit = appointments.book(alice.id, carol.id, at("10:00"))
    desk.post_json(f"/api/appointments/{visit.id}/check-in")
    response = desk.post_json("/api/appointments", {"doctor_id": dave.id, "patient_id": alice.id,
                                                    "start": at("10:00").isoformat()})
    assert response.status == 409, response
    assert "already have an appointment" in response.json()["error"]
    assert Appointment.select().where(Appointment.doctor == dave.id).count() == 0


def test_check_in_is_for_the_visits_day_and_active_visits(desk, alice, carol):
    tomorrow = appointments.book(alice.id, carol.id, at("10:00", days=1))
    response = desk.post_json(f"/api/appointments/{tomorrow.id}/check-in")
    assert response.status == 409
    assert "day of the visit" in response.json()["error"]
    today = appointments.book(alice.id, carol.id, at("11:00"))
    appointments.cancel(today, None)
    assert desk.post_json(f"/api/appointments/{today.id}/check-in").status == 409
    assert desk.post_json("/api/appointments/999999/check-in").status == 404


def test_an_arrived_visit_is_not_marked_a_no_show(desk, alice, carol, morning):
    visit = appointments.book(alice.id, carol.id, at("09:00"))
    desk.post_json(f"/api/appointments/{visit.id}/check-in")
    assert appointments.mark_no_shows(now=at("15:00")) == {"marked": 0}


# -- no medical records ---------------------------------------------------------------------------


def test_the_desk_sees_no_history_and_each_refusal_is_audited(desk, dana, alice, carol):
    response = desk.get(f"/api/patients/{alice.id}/history")
    assert response.status == 404
    [entry] = audited("view history", dana)
    assert (entry.outcome, entry.patient_id) == ("refused", alice.id)


def test_the_desk_sees_an_appointment_but_not_its_treatment(desk, alice, carol):
    visit = appointments.book(alice.id, carol.id, at("09:00"), now=at("08:00"))
    appointments.complete(visit, carol, {"visit_type": "Check-up", "diagnosis": "Secret"},
                          now=at("09:30"))
    response = desk.get(f"/api/appointments/{visit.id}")
    assert response.status == 200
    assert "treatment" not in response.json()
    assert "Secret" not in response.text


def test_the_desk_cannot_export_a_history(desk, dana):
    assert desk.post_json("/api/patient/export-history").status == 403
    assert audited("call API", dana)[0].outcome == "refused"


def test_deactivating_a_desk_account_ends_its_sessions(desk, dana):
    assert Session.select().where(Session.user == dana.id).exists()
    people.set_active(dana.id, False)
    assert desk.get("/api/patients").status == 401


def test_the_desk_cannot_follow_a_patients_export_and_it_is_audited(desk, dana, new_client,
                                                                     alice):
    patient = new_client()
    patient.api_login(alice.email)
    task_id = patient.post_json("/api/patient/export-history").json()["task_id"]
    assert desk.get(f"/api/tasks/{task_id}").status == 404
    [entry] = audited("view export", dana)
    assert (entry.outcome, entry.patient_id) == ("refused", alice.id)


def test_two_factor_can_be_required_of_the_desk(app):
    from clinic import settings

    assert settings.load(environ={"CLINIC_REQUIRE_2FA": "admin,desk"}).require_2fa == (
        "admin", "desk")
