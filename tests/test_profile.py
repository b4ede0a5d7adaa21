"""The profile and the password (GET/PATCH /api/me, POST /api/me/password): real HTTP, a real
database, the confirmation of a new email read out of the mail the SMTP test server took."""

import json
import re
from datetime import date, timedelta

from clinic.models import LoginAttempt, Patient, User
from tests.conftest import PASSWORD
from tests.test_password_reset import signs_in


def patch(client, changes, headers=None):
    return client.request("PATCH", "/api/me", body=json.dumps(changes).encode(),
                          headers={"Content-Type": "application/json", **(headers or {})})


def test_me_answers_the_signed_in_user(client, alice):
    client.api_login(alice.email)
    me = client.get("/api/me").json()
    assert me == {"id": alice.id, "name": "Alice Adams", "email": alice.email, "role": "patient",
                  "phone": "+49301234567", "date_of_birth": "1980-05-17", "language": None,
                  "channel": "email", "sms_opted_out": False, "totp_enabled": False,
                  "pending_email": None}


def test_a_doctor_has_no_phone_or_birth_date_here(client, carol):
    client.api_login(carol.email)
    me = client.get("/api/me").json()
    assert me["role"] == "doctor" and me["phone"] is None and me["date_of_birth"] is None
    refused = patch(client, {"phone": "+4930123456"})
    assert refused.status == 400 and "phone" in refused.json()["fields"]


def test_patch_changes_name_phone_and_birth_date(client, alice):
    client.api_login(alice.email)
    answer = patch(client, {"name": " Alice Baker ", "phone": "+44 20 7946 0958",
                            "date_of_birth": "1981-02-03"})
    assert answer.status == 200, answer
    assert (answer.json()["name"], answer.json()["phone"]) == ("Alice Baker", "+442079460958")
    patient = Patient.get(Patient.user == alice.id)
    assert (patient.phone, patient.date_of_birth) == ("+442079460958", date(1981, 2, 3))


def test_bad_fields_are_refused_and_nothing_changes(client, alice):
    client.api_login(alice.email)
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    for changes, field in (({"phone": "030 1234567"}, "phone"), ({"phone": "+49 30 12x"}, "phone"),
                           ({"date_of_birth": tomorrow}, "date_of_birth"),
                           ({"date_of_birth": "17.05.1980"}, "date_of_birth"),
                           ({"name": "  "}, "name"), ({"name": 7}, "name"),
                           ({"email": "not an email"}, "email")):
        answer = patch(client, {"name": "Changed", **changes} if field != "name" else changes)
        assert answer.status == 400, changes
        assert field in answer.json()["fields"], changes
    me = client.get("/api/me").json()
    assert (me["name"], me["phone"], me["date_of_birth"]) == ("Alice Adams", "+49301234567",
                                                              "1980-05-17")


def test_a_new_email_takes_effect_once_confirmed_by_its_link(smtp_settings, smtp, client,
                                                             new_client, alice, delivered):
    client.api_login(alice.email)
    answer = patch(client, {"email": "Alice.New@example.com"})
    assert answer.status == 200
    assert answer.json()["email"] == alice.email
    assert answer.json()["pending_email"] == "alice.new@example.com"
    (received,) = delivered()
    assert received.rcpt_tos == ["alice.new@example.com"]
    text = received.message.get_body(("plain",)).get_content()
    token = re.search(r"/account/email/(\S+)", text).group(1)
    assert signs_in(new_client(), alice.email, PASSWORD)  # not yet changed
    confirmed = new_client().post_json("/api/me/email/confirm", {"token": token})
    assert confirmed.status == 200 and confirmed.json() == {"email": "alice.new@example.com"}
    assert User.get_by_id(alice.id).email == "alice.new@example.com"
    assert signs_in(new_client(), "alice.new@example.com", PASSWORD)
    again = new_client().post_json("/api/me/email/confirm", {"token": token})
    assert again.status == 400


def test_an_email_that_is_taken_is_refused(client, alice, bob):
    client.api_login(alice.email)
    answer = patch(client, {"email": bob.email})
    assert answer.status == 400
    assert answer.json()["fields"]["email"] == "An account with this email already exists."


def test_patch_with_the_session_cookie_needs_the_csrf_header(client, alice):
    client.login(alice.email)
    client.get("/patient")  # a page after sign-in carries the new CSRF token
    assert patch(client, {"name": "Mallory"}).status == 403
    assert patch(client, {"name": "Alice B"}, {"X-CSRF-Token": client.csrf}).status == 200
    assert User.get_by_id(alice.id).name == "Alice B"


def change(client, current, new):
    return client.post_json("/api/me/password", {"current_password": current,
                                                 "new_password": new})


def test_changing_the_password_ends_the_other_sign_ins(client, new_client, alice):
    laptop = new_client()
    laptop.api_login(alice.email)
    client.api_login(alice.email)
    assert change(client, PASSWORD, "a new password").status == 200
    assert client.get("/api/me").status == 200
    assert laptop.get("/api/me").status == 401
    assert signs_in(new_client(), alice.email, "a new password")


def test_a_wrong_current_password_counts_as_a_failed_sign_in(client, alice):
    client.api_login(alice.email)
    answer = change(client, "not it", "a new password")
    assert answer.status == 400 and "current_password" in answer.json()["fields"]
    assert LoginAttempt.select().where(LoginAttempt.email == alice.email,
                                       ~LoginAttempt.success).count() == 1
    for _ in range(4):
        change(client, "not it", "a new password")
    assert change(client, PASSWORD, "a new password").status == 429
    assert not signs_in(client, alice.email, "a new password")


def test_a_weak_new_password_is_refused(client, alice):
    client.api_login(alice.email)
    answer = change(client, PASSWORD, "short")
    assert answer.status == 400 and answer.json()["fields"] == {
        "new_password": "Use at least 8 characters."}
    assert signs_in(client, alice.email, PASSWORD)
