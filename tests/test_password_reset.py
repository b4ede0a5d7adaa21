"""Password reset by email (clinic/accounts.py, POST /api/password-reset[/confirm]): through real
HTTP, the link read out of the email the real SMTP test server received."""

import re
from datetime import timedelta

import pyotp
import time_machine

from clinic import accounts, clock, people
from clinic.models import AccountToken, AuditEntry, Message, User
from tests.conftest import PASSWORD

NEW = "a much better password"


def link_in(received):
    text = received.message.get_body(("plain",)).get_content()
    return re.search(r"https?://\S+/reset/(\S+)", text).group(1)


def ask(client, email):
    return client.post_json("/api/password-reset", {"email": email})


def confirm(client, token, password=NEW):
    return client.post_json("/api/password-reset/confirm", {"token": token, "password": password})


def signs_in(client, email, password):
    return client.post_json("/api/login", {"email": email, "password": password}).status == 200


def test_the_emailed_link_sets_a_new_password_and_ends_every_sign_in(
        smtp_settings, smtp, client, new_client, alice, delivered):
    phone = new_client()
    phone.api_login(alice.email)
    answer = ask(client, "  Alice@Example.com ")
    assert answer.status == 202 and answer.json() == {"accepted": True}
    (received,) = delivered()
    assert received.rcpt_tos == [alice.email]
    assert received.message["Subject"] == "Reset your password at Test Clinic"
    token = link_in(received)
    # Only the hash is stored.
    row = AccountToken.get(AccountToken.user == alice.id)
    assert token not in (row.token_hash, row.new_email)
    assert confirm(client, token).status == 200
    assert phone.get("/api/me").status == 401  # the old API token ended
    assert not signs_in(new_client(), alice.email, PASSWORD)
    assert signs_in(new_client(), alice.email, NEW)
    entry = AuditEntry.get(AuditEntry.action == "reset password")
    assert entry.user_id == alice.id and entry.patient_id == alice.id
    assert token not in entry.path + entry.reason


def test_an_unknown_address_gets_the_same_answer_and_no_email(smtp_settings, smtp, client,
                                                               alice, delivered):
    known, unknown = ask(client, alice.email), ask(client, "nobody@example.com")
    assert (unknown.status, unknown.json()) == (known.status, known.json()) == (202,
                                                                                 {"accepted": True})
    assert [m.rcpt_tos for m in delivered()] == [[alice.email]]
    assert Message.select().count() == 1


def test_an_inactive_account_gets_no_link(smtp_settings, smtp, client, alice, delivered):
    people.set_active(alice.id, False)
    assert ask(client, alice.email).status == 202
    assert delivered() == [] and AccountToken.select().count() == 0


def test_a_used_link_is_refused_and_changes_nothing(smtp_settings, smtp, client, alice, delivered):
    ask(client, alice.email)
    token = link_in(delivered()[0])
    assert confirm(client, token).status == 200
    again = confirm(client, token, "yet another password")
    assert again.status == 400
    assert again.json()["error"] == "This link has expired or was used already. Ask for a new one."
    assert signs_in(client, alice.email, NEW)


def test_a_link_expires_after_an_hour(smtp_settings, smtp, client, alice, delivered):
    ask(client, alice.email)
    token = link_in(delivered()[0])
    with time_machine.travel(clock.now() + timedelta(minutes=61)):
        late = confirm(client, token)
        assert late.status == 400 and "expired" in late.json()["error"]
        assert signs_in(client, alice.email, PASSWORD)


def test_a_link_within_the_hour_still_works(smtp_settings, smtp, client, alice, delivered):
    ask(client, alice.email)
    token = link_in(delivered()[0])
    with time_machine.travel(clock.now() + timedelta(minutes=59)):
        assert confirm(client, token).status == 200


def test_a_newer_request_voids_the_older_link(smtp_settings, smtp, client, alice, delivered):
    ask(client, alice.email)
    ask(client, alice.email)
    first, second = (link_in(m) for m in delivered())
    assert confirm(client, first).status == 400
    assert confirm(client, second).status == 200


def test_an_unknown_token_is_refused(client, alice):
    answer = confirm(client, "made-up-token")
    assert answer.status == 400 and answer.json()["fields"]["token"]


def test_a_weak_password_is_refused_and_the_link_still_works(smtp_settings, smtp, client, alice,
                                                             delivered):
    ask(client, alice.email)
    token = link_in(delivered()[0])
    weak = confirm(client, token, "short")
    assert weak.status == 400
    assert weak.json()["fields"] == {"password": "Use at least 8 characters."}
    assert signs_in(client, alice.email, PASSWORD)
    assert confirm(client, token).status == 200


def test_requests_are_throttled_per_address_whether_it_is_known_or_not(smtp_settings, smtp,
                                                                       client, alice, delivered):
    for email in (alice.email, "nobody@example.com"):
        assert [ask(client, email).status for _ in range(5)] == [202] * 5
        refused = ask(client, email)
        assert refused.status == 429 and int(refused.headers["retry-after"]) > 0
    assert len(delivered()) == 5  # the sixth for alice sent nothing
    with time_machine.travel(clock.now() + timedelta(minutes=16)):
        assert ask(client, alice.email).status == 202


def test_a_reset_keeps_two_factor_sign_in(smtp_settings, smtp, client, alice, delivered):
    enrolment = accounts.start_enrolment(User.get_by_id(alice.id))
    accounts.confirm_enrolment(alice, pyotp.TOTP(enrolment["secret"]).now(), "127.0.0.1")
    ask(client, alice.email)
    (reset,) = [m for m in delivered() if m.message["Subject"].startswith("Reset")]
    assert confirm(client, link_in(reset)).status == 200
    answer = client.post_json("/api/login", {"email": alice.email, "password": NEW})
    assert answer.status == 401 and answer.json()["totp_required"] is True
