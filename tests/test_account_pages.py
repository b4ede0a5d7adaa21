"""The account pages over real HTTP (clinic/views/account_settings.py): CSRF on every form, the
same answer for known and unknown addresses, escaping, the sign-in's code step and the admin's
two-factor list."""

import re

import pyotp

from clinic import accounts
from clinic.models import AuditEntry, Message, Patient, User
from tests.conftest import PASSWORD, login


def turn_on(user):
    secret = accounts.start_enrolment(user)["secret"]
    accounts.confirm_enrolment(user, pyotp.TOTP(secret).now(), "127.0.0.1")
    return pyotp.TOTP(secret)


def test_every_account_form_needs_the_csrf_token(client, alice):
    for path in ("/forgot", "/reset/x", "/login/code", "/account/email/x"):
        assert client.post(path, {"email": alice.email}, csrf=False).status == 403, path
    login(client, alice)
    for path in ("/account", "/account/password", "/account/2fa/start"):
        assert client.post(path, {"name": "Mallory"}, csrf=False).status == 403, path
    assert User.get_by_id(alice.id).name == "Alice Adams"
    assert Message.select().count() == 0


def test_the_pages_of_a_reset_link_and_of_the_second_step_are_not_cached(client):
    for path in ("/reset/x", "/login/code"):
        assert client.get(path).headers["cache-control"] == "no-store", path


def test_forgot_answers_alike_for_known_and_unknown_addresses(client, alice):
    known = client.post("/forgot", {"email": alice.email})
    unknown = client.post("/forgot", {"email": "nobody@example.com"})
    assert known.status == unknown.status == 200
    assert (known.text.replace(alice.email, "X")
            .replace(client.csrf, "") == unknown.text.replace("nobody@example.com", "X")
            .replace(client.csrf, ""))
    assert Message.select().count() == 1


def test_the_reset_page_refuses_a_bad_link_and_a_mismatch(client, alice):
    bad = client.get("/reset/nonsense")
    assert bad.status == 400 and "expired or was used already" in bad.text
    accounts.request_reset(alice.email, "127.0.0.1")
    token = re.search(r"/reset/(\S+)", Message.get().text_body).group(1)
    assert client.get(f"/reset/{token}").status == 200
    differ = client.post(f"/reset/{token}", {"password": "long enough 1",
                                             "password_again": "long enough 2"})
    assert differ.status == 400 and "The two passwords differ." in differ.text
    assert client.post(f"/reset/{token}", {"password": "long enough 1",
                                           "password_again": "long enough 1"}).status == 303


def test_the_profile_page_escapes_and_validates(client, alice):
    login(client, alice)
    client.get("/account")  # the form's page, with the sign-in's CSRF token
    saved = client.post("/account", {"name": "<script>x</script>", "email": alice.email,
                                     "phone": "+49 30 7654321", "date_of_birth": "1980-05-17"})
    assert saved.status == 303
    page = client.get("/account")
    assert "<script>x</script>" not in page.text and "&lt;script&gt;x&lt;/script&gt;" in page.text
    bad = client.post("/account", {"name": "Alice", "email": alice.email, "phone": "call me",
                                   "date_of_birth": "1980-05-17"})
    assert bad.status == 400 and "country code" in bad.text
    assert Patient.get(Patient.user == alice.id).phone == "+49307654321"


def test_the_password_page_needs_the_current_password(client, alice):
    login(client, alice)
    client.get("/account/password")
    wrong = client.post("/account/password", {"current_password": "nope",
                                              "new_password": "long enough",
                                              "new_password_again": "long enough"})
    assert wrong.status == 400 and "The current password is not right." in wrong.text
    ok = client.post("/account/password", {"current_password": PASSWORD,
                                           "new_password": "long enough",
                                           "new_password_again": "long enough"})
    assert ok.status == 303
    assert client.get("/account").status == 200  # this browser stays signed in


def test_the_code_step_refuses_a_forged_ticket_and_throttles_wrong_codes(client, carol):
    totp = turn_on(carol)
    step = client.post("/login", {"email": carol.email, "password": PASSWORD})
    assert step.status == 200 and 'name="code"' in step.text
    assert client.get("/doctor").location.startswith("/login")  # not signed in yet
    ticket = re.search(r'name="ticket" value="([^"]+)"', step.text).group(1)
    forged = client.post("/login/code", {"ticket": ticket[:-2] + "xx", "code": totp.now()})
    assert forged.status == 303 and forged.location.endswith("/login")
    wrong = "123456" if totp.now() != "123456" else "654321"
    for _ in range(5):
        assert client.post("/login/code", {"ticket": ticket, "code": wrong}).status == 400
    assert client.post("/login/code", {"ticket": ticket, "code": totp.now()}).status == 429
    assert client.get("/doctor").location.startswith("/login")


def test_the_admin_turns_off_two_factor_from_the_list(client, new_client, carol, erin, alice):
    turn_on(carol)
    patient = new_client()
    login(patient, alice)
    assert patient.get("/admin/2fa").status == 403
    login(client, erin)
    listing = client.get("/admin/2fa")  # also gives the form's CSRF token
    assert "Dr Carol Clark" in listing.text
    assert client.post(f"/admin/users/{carol.id}/2fa-reset").status == 303
    assert not accounts.totp_enabled(carol)
    assert AuditEntry.select().where(AuditEntry.action == "reset two-factor",
                                     AuditEntry.user_id == erin.id).count() == 1


def test_the_email_link_page_confirms_with_a_button(client, alice):
    accounts.update_profile(alice, {"email": "alice.new@example.com"})
    token = re.search(r"/account/email/(\S+)", Message.get().text_body).group(1)
    page = client.get(f"/account/email/{token}")
    assert page.status == 200 and "alice.new@example.com" in page.text
    assert User.get_by_id(alice.id).email == alice.email  # a GET changes nothing
    assert client.post(f"/account/email/{token}").status == 303
    assert User.get_by_id(alice.id).email == "alice.new@example.com"
