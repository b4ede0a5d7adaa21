"""Two-factor sign-in (TOTP, RFC 6238) through POST /api/me/totp[/confirm] and POST /api/login:
real HTTP, time-machine for the 30-second windows and the 15-minute throttle."""

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import time_machine

from clinic import settings
from clinic.models import AuditEntry, RecoveryCode, Totp
from tests.conftest import PASSWORD

T0 = datetime(2026, 3, 4, 9, 0, 10, tzinfo=UTC)  # 10 s into a 30-second step


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def login(client, user, totp=None):
    body = {"email": user.email, "password": PASSWORD}
    if totp is not None:
        body["totp"] = totp
    return client.post_json("/api/login", body)


def enrol(client, user):
    """Turn two-factor sign-in on for ``user``; returns (the TOTP, the recovery codes)."""
    client.api_login(user.email)
    started = client.post_json("/api/me/totp")
    assert started.status == 200, started
    totp = pyotp.TOTP(started.json()["secret"])
    confirmed = client.post_json("/api/me/totp/confirm", {"code": totp.now()})
    assert confirmed.status == 200, confirmed
    return totp, confirmed.json()["recovery_codes"]


def test_enrolment_gives_a_secret_uri_and_qr_code_and_changes_nothing_until_confirmed(
        frozen, client, new_client, carol):
    client.api_login(carol.email)
    started = client.post_json("/api/me/totp").json()
    assert pyotp.TOTP(started["secret"]).now().isdigit()
    assert started["otpauth_uri"].startswith("otpauth://totp/Test%20Clinic:carol%40example.com?")
    assert started["qr_svg"].startswith("<svg") and "<script" not in started["qr_svg"]
    assert login(new_client(), carol).status == 200  # not on yet
    assert client.get("/api/me").json()["totp_enabled"] is False
    wrong = client.post_json("/api/me/totp/confirm", {"code": "000000"})
    assert wrong.status == 400 and wrong.json()["fields"]["code"]
    frozen.shift(30)  # a fresh step, so the confirming code was not spent on anything
    code = pyotp.TOTP(started["secret"]).now()
    codes = client.post_json("/api/me/totp/confirm", {"code": code}).json()["recovery_codes"]
    assert len(codes) == 10 == len(set(codes))
    stored = {row.code_hash for row in RecoveryCode.select()}
    assert not stored & set(codes)  # only hashes are kept
    assert client.get("/api/me").json()["totp_enabled"] is True
    assert client.post_json("/api/me/totp").status == 409


def test_sign_in_then_needs_a_code_and_a_code_works_once(frozen, client, new_client, carol):
    totp, _ = enrol(client, carol)
    frozen.shift(30)
    anon = new_client()
    missing = login(anon, carol)
    assert missing.status == 401 and missing.json()["totp_required"] is True
    assert "token" not in missing.json()
    code = totp.now()
    assert login(anon, carol, code).status == 200
    replay = login(anon, carol, code)
    assert replay.status == 401 and replay.json()["totp_required"] is True
    frozen.shift(30)
    assert login(anon, carol, totp.now()).status == 200


def test_a_wrong_password_does_not_say_that_a_code_is_needed(frozen, client, new_client, carol):
    enrol(client, carol)
    answer = new_client().post_json("/api/login", {"email": carol.email, "password": "nope"})
    assert answer.status == 401 and "totp_required" not in answer.json()


def test_the_code_of_the_step_before_is_accepted_and_older_ones_are_not(frozen, client,
                                                                        new_client, carol):
    totp, _ = enrol(client, carol)
    frozen.shift(60)
    previous = totp.at(datetime.now(UTC) - timedelta(seconds=30))
    older = totp.at(datetime.now(UTC) - timedelta(seconds=60))
    assert login(new_client(), carol, older).status == 401
    assert login(new_client(), carol, previous).status == 200


def test_a_recovery_code_works_once(frozen, client, new_client, carol):
    _, codes = enrol(client, carol)
    assert login(new_client(), carol, codes[0].upper().replace("-", " ")).status == 200
    assert login(new_client(), carol, codes[0]).status == 401
    assert login(new_client(), carol, codes[1]).status == 200


def test_five_wrong_codes_lock_the_step_for_a_while(frozen, client, new_client, carol):
    totp, _ = enrol(client, carol)
    anon = new_client()
    for _ in range(5):
        wrong = login(anon, carol, "123456" if totp.now() != "123456" else "654321")
        assert wrong.status == 401 and "token" not in wrong.json()
    frozen.shift(30)
    locked = login(anon, carol, totp.now())
    assert locked.status == 429 and int(locked.headers["retry-after"]) > 0
    frozen.shift(15 * 60)
    assert login(anon, carol, totp.now()).status == 200


def test_an_admin_resets_another_users_two_factor_sign_in_audited(frozen, client, new_client,
                                                                   carol, erin, alice):
    enrol(client, carol)
    secret = Totp.get(Totp.user == carol.id).secret
    admin, patient = new_client(), new_client()
    admin.api_login(erin.email)
    patient.api_login(alice.email)
    assert patient.post_json(f"/api/admin/users/{carol.id}/totp-reset").status == 403
    assert login(new_client(), carol).status == 401
    answer = admin.post_json(f"/api/admin/users/{carol.id}/totp-reset")
    assert answer.status == 200 and answer.json() == {"user_id": carol.id, "totp_enabled": False}
    assert login(new_client(), carol).status == 200
    entry = AuditEntry.get(AuditEntry.action == "reset two-factor")
    assert entry.user_id == erin.id and "Dr Carol Clark" in entry.reason
    for row in AuditEntry.select():
        assert secret not in row.reason + row.path


def test_a_required_role_must_enrol_before_anything_else(frozen, new_client, carol, alice):
    settings.use(settings.get().replace(require_2fa=("doctor", "admin")))
    assert login(new_client(), alice).status == 200  # patients are not asked
    anon = new_client()
    stopped = login(anon, carol)
    assert stopped.status == 403 and stopped.json()["enrolment_required"] is True
    anon.token = stopped.json()["enrolment_token"]
    assert anon.get("/api/appointments").status == 401  # opens no patient data
    assert anon.get("/api/me").status == 401
    secret = anon.post_json("/api/me/totp").json()["secret"]
    codes = anon.post_json("/api/me/totp/confirm", {"code": pyotp.TOTP(secret).now()})
    assert codes.status == 200
    assert anon.post_json("/api/me/totp").status == 401  # the enrolment sign-in is over
    frozen.shift(30)
    assert login(new_client(), carol, pyotp.TOTP(secret).now()).status == 200


def test_the_enrolment_sign_in_lasts_fifteen_minutes(frozen, new_client, carol):
    settings.use(settings.get().replace(require_2fa=("doctor",)))
    anon = new_client()
    anon.token = login(anon, carol).json()["enrolment_token"]
    frozen.shift(16 * 60)
    assert anon.post_json("/api/me/totp").status == 401


def test_an_unknown_role_in_the_setting_stops_the_start():
    with pytest.raises(settings.SettingsError, match="CLINIC_REQUIRE_2FA"):
        settings.load(environ={"CLINIC_REQUIRE_2FA": "admin,doctr"})
    assert settings.load(environ={"CLINIC_REQUIRE_2FA": "Admin, doctor"}).require_2fa == (
        "admin", "doctor")


def test_the_demo_opens_with_its_printed_passwords(client):
    from clinic import demo

    demo.create(patients=2)
    for email in (demo.DOCTOR, demo.ADMIN, demo.PATIENT):
        answer = client.post_json("/api/login", {"email": email, "password": demo.PASSWORD})
        assert answer.status == 200, (email, answer)


# -- the owner's own changes -----------------------------------------------------------------------


def test_new_recovery_codes_need_a_code_and_replace_the_old_ones(frozen, client, new_client,
                                                                 carol):
    totp, old_codes = enrol(client, carol)
    wrong = client.post_json("/api/me/totp/recovery-codes", {"code": "000000"})
    assert wrong.status == 400 and wrong.json()["fields"]["code"]
    assert client.post_json("/api/me/totp/recovery-codes", {}).status == 400
    frozen.shift(30)
    answer = client.post_json("/api/me/totp/recovery-codes", {"code": totp.now()})
    assert answer.status == 200
    codes = answer.json()["recovery_codes"]
    assert len(codes) == 10 and not set(codes) & set(old_codes)
    assert login(new_client(), carol, old_codes[0]).status == 401
    assert login(new_client(), carol, codes[0]).status == 200


def test_the_owner_turns_two_factor_off_with_a_code(frozen, client, new_client, carol):
    totp, codes = enrol(client, carol)
    assert client.post_json("/api/me/totp/disable", {"code": "123456"}).status == 400
    assert client.get("/api/me").json()["totp_enabled"] is True
    answer = client.post_json("/api/me/totp/disable", {"code": codes[0]})
    assert answer.status == 200 and answer.json() == {"user_id": carol.id, "totp_enabled": False}
    assert Totp.select().count() == RecoveryCode.select().count() == 0
    assert login(new_client(), carol).status == 200  # the password alone again
    assert client.post_json("/api/me/totp/disable", {"code": codes[1]}).status == 409


def test_a_role_that_must_have_it_cannot_turn_it_off(frozen, client, carol):
    totp, _ = enrol(client, carol)
    settings.use(settings.get().replace(require_2fa=("doctor",)))
    frozen.shift(30)
    refused = client.post_json("/api/me/totp/disable", {"code": totp.now()})
    assert refused.status == 409 and "cannot be turned off" in refused.json()["error"]
    assert Totp.get(Totp.user == carol.id).enabled_at is not None


def test_the_page_makes_new_codes_and_turns_it_off(frozen, client, carol):
    from clinic import accounts

    client.login(carol.email)
    secret = accounts.start_enrolment(carol)["secret"]
    accounts.confirm_enrolment(carol, pyotp.TOTP(secret).now(), "127.0.0.1")
    page = client.get("/account/2fa")
    assert "Make new recovery codes" in page.text and "Turn two-factor sign-in off" in page.text
    wrong = client.post("/account/2fa/codes", {"code": "000000", "change": "codes"})
    assert wrong.status == 400 and "The code is not right" in wrong.text
    frozen.shift(30)
    made = client.post("/account/2fa/codes", {"code": pyotp.TOTP(secret).now(),
                                              "change": "codes"})
    assert made.status == 200
    assert len(re.findall(r"<li><code>[a-z0-9]{5}-[a-z0-9]{5}</code></li>", made.text)) == 10
    frozen.shift(30)
    off = client.post("/account/2fa/codes", {"code": pyotp.TOTP(secret).now(), "change": "off"})
    assert off.status == 303
    assert "Off." in client.get("/account/2fa").text
