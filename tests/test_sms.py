"""SMS to patients through a Twilio-style gateway served over HTTP by the test process
(tests/sms_gateway.py): the patient's channel, the outbox rows, delivery over one keep-alive
connection, retries and permanent failures, STOP and START, delivery reports, the webhooks'
signatures, and the .txt files written when no gateway is set."""

from datetime import timedelta

import pytest
import time_machine

from clinic import appointments, clock, reminders, settings, timeline
from clinic.mail import delivery, outbox, sms_text, sweeper
from clinic.mail.gateway import parse_url as sms_gateway_url
from clinic.models import Appointment, Message, Patient, SmsOptOut, User
from tests import sms_gateway
from tests.conftest import TZ, login, slot

PHONE = "+49301234567"  # what conftest's patients registered with, as E.164


@pytest.fixture
def gateway():
    server = sms_gateway.Gateway()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sms_settings(smtp_settings, gateway):
    """The clinic pointed at the test gateway (and the SMTP server), with a short timeout."""
    return settings.use(settings.get().replace(sms_url=sms_gateway_url(gateway.url),
                                               sms_timeout=timedelta(seconds=1)))


def choose(patient, channel):
    Patient.update(channel=channel).where(Patient.user == patient.id).execute()


def book(patient, doctor, days=2, at="10:00", reason="chest pain after the new pills"):
    return appointments.book(patient.id, doctor.id, slot(days, at), reason=reason)


def sms_rows():
    return list(Message.select().where(Message.channel == "sms").order_by(Message.id))


def reload(message):
    return Message.get_by_id(message.id)


# -- choosing the channel -------------------------------------------------------------------------


def test_a_patient_chooses_sms_with_patch_api_me_and_sees_it_in_get(client, alice):
    client.api_login(alice.email)
    response = client.request("PATCH", "/api/me", body=b'{"channel": "sms"}',
                              headers={"Content-Type": "application/json"})
    assert response.status == 200, response
    assert response.json()["channel"] == "sms"
    me = client.get_json("/api/me").json()
    assert me["channel"] == "sms" and me["sms_opted_out"] is False
    assert outbox.channels_for(alice) == ("sms",)


def test_an_unknown_channel_is_refused_with_400_and_nothing_changes(client, alice):
    client.api_login(alice.email)
    response = client.request("PATCH", "/api/me", body=b'{"channel": "pigeon"}',
                              headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "channel" in response.json()["fields"]
    assert Patient.get(Patient.user == alice.id).channel == "email"


def test_sms_needs_a_phone_number(client, alice):
    Patient.update(phone="").where(Patient.user == alice.id).execute()
    client.api_login(alice.email)
    response = client.request("PATCH", "/api/me", body=b'{"channel": "both"}',
                              headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "phone number" in response.json()["fields"]["channel"]
    assert Patient.get(Patient.user == alice.id).channel == "email"


def test_an_invalid_phone_is_a_clear_error(client, alice):
    client.api_login(alice.email)
    response = client.request("PATCH", "/api/me",
                              body=b'{"phone": "030 123", "channel": "sms"}',
                              headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "country code" in response.json()["fields"]["phone"]
    assert Patient.get(Patient.user == alice.id).channel == "email"


def test_clearing_the_phone_of_an_sms_patient_is_refused(client, alice):
    choose(alice, "sms")
    client.api_login(alice.email)
    response = client.request("PATCH", "/api/me", body=b'{"phone": ""}',
                              headers={"Content-Type": "application/json"})
    assert response.status == 400 and "SMS" in response.json()["fields"]["phone"]


def test_the_preferences_page_sets_the_channel_and_shows_the_error_beside_it(client, alice):
    login(client, alice)
    page = client.get("/patient/preferences")
    assert 'name="channel" value="email" checked' in page.text
    response = client.post("/patient/preferences/channel", {"channel": "both"})
    assert response.status == 303
    assert Patient.get(Patient.user == alice.id).channel == "both"
    Patient.update(phone="", channel="email").where(Patient.user == alice.id).execute()
    client.get("/patient/preferences")
    response = client.post("/patient/preferences/channel", {"channel": "sms"})
    assert response.status == 400
    assert 'id="e-channel"' in response.text and "SMS needs a phone number" in response.text
    assert Patient.get(Patient.user == alice.id).channel == "email"


# -- writing and sending --------------------------------------------------------------------------


def test_a_booking_by_sms_goes_to_the_gateway_and_says_nothing_medical(
        sms_settings, gateway, smtp, drain, alice, carol):
    choose(alice, "sms")
    appointment = book(alice, carol)
    drain()
    assert smtp.messages == []  # SMS only
    (request,) = gateway.requests
    assert request.path == f"/2010-04-01/Accounts/{sms_gateway.SID}/Messages.json"
    assert request.authorization == sms_gateway.credentials()
    form = request.form
    assert form["To"] == PHONE and form["From"] == sms_gateway.FROM
    assert form["StatusCallback"] == f"{settings.get().base_url}/sms/status"
    body = form["Body"]
    assert "Dr Carol Clark" in body and "Test Clinic" in body
    for secret in ("chest pain", "Cardiology", "Alice"):
        assert secret not in body
    assert sms_text.segments(body) <= 3
    (row,) = sms_rows()
    assert row.key == f"confirmation:{appointment.id}:" + row.key.split(":", 2)[2]
    assert row.status == "sent" and row.recipient == PHONE
    assert row.gateway_id.startswith("SM") and row.price == "-0.00750"
    assert row.price_unit == "USD" and row.segments >= 1


def test_a_german_patients_sms_is_in_german_and_an_english_ones_in_english(
        sms_settings, gateway, drain, alice, bob, carol):
    """The SMS speaks its patient's language, as the email does (clinic/i18n.py)."""
    settings.use(settings.get().replace(languages=("en", "de")))
    User.update(language="de").where(User.id == alice.id).execute()
    choose(alice, "sms")
    choose(bob, "sms")
    book(alice, carol, at="10:00")
    book(bob, carol, at="11:00")
    drain()
    bodies = sorted((request.form["Body"] for request in gateway.requests), key=len)
    german = next(body for body in bodies if "10:00" in body)
    english = next(body for body in bodies if "11:00" in body)
    assert "Ihr Termin bei Dr Carol Clark am" in german and "ist gebucht" in german
    assert "your appointment with Dr Carol Clark on" in english and "is booked" in english


def test_the_short_link_in_the_sms_opens_the_visit_page(sms_settings, gateway, drain, client,
                                                        alice, carol):
    choose(alice, "sms")
    book(alice, carol)
    drain()
    link = gateway.requests[0].form["Body"].rsplit(" ", 1)[1]
    base = settings.get().base_url
    assert link.startswith(f"{base}/s/") and len(link) - len(base) < 30
    path = link[len(base):]
    page = client.get(path, follow=True)
    assert page.status == 200 and "Dr Carol Clark" in page.text
    tampered = path[:-1] + ("A" if path[-1] != "A" else "B")
    assert client.get(tampered).status == 404


def test_both_channels_send_an_email_and_an_sms_under_two_keys(sms_settings, gateway, smtp,
                                                              drain, alice, carol):
    choose(alice, "both")
    appointment = book(alice, carol)
    drain()
    assert len(smtp.messages) == 1 and len(gateway.requests) == 1
    email, text = Message.select().order_by(Message.id)
    assert email.channel == "email" and text.channel == "sms"
    assert text.key == email.key + ":sms"
    # The invite's SEQUENCE counts emails only: the cancellation's is 1, not 2.
    appointments.cancel(appointment, alice)
    drain()
    (invite,) = smtp.messages[-1].message.iter_attachments()
    assert "SEQUENCE:1\r\n" in invite.get_content()
    assert "cancelled" in gateway.requests[-1].form["Body"]


def test_many_sms_go_over_one_keep_alive_connection(sms_settings, gateway, alice, carol):
    choose(alice, "sms")
    ids = []
    for n in range(5):
        message = outbox.enqueue("reminder_daily", f"reminder_daily:test:{n}", alice.email,
                                 context={"doctor_name": "Dr Carol Clark", "start": slot(1)},
                                 user=alice)
        ids.append(message.id)
    counts = delivery.deliver(ids)
    assert counts["sent"] == 5
    assert len(gateway.requests) == 5 and gateway.connections == 1


def test_reminders_go_by_the_chosen_channel(sms_settings, gateway, smtp, drain, alice, bob,
                                            carol):
    choose(alice, "sms")
    first = book(alice, carol, days=1, at="10:00")
    book(bob, carol, days=1, at="11:00")
    drain()
    morning = slot(1, "08:00")
    with time_machine.travel(morning, tick=False):
        assert reminders.send_daily(now=morning)["sent"] == 2
        drain()
    kinds = [(m.channel, m.recipient) for m in
             Message.select().where(Message.kind == "reminder_daily").order_by(Message.id)]
    assert sorted(kinds) == [("email", "bob@example.com"), ("sms", PHONE)]
    assert "reminder" in gateway.requests[-1].form["Body"]
    # A second run finds the key taken, whichever channel took it.
    with time_machine.travel(morning, tick=False):
        assert reminders.send_daily(now=morning) == {"sent": 0, "skipped": 0}
    events = [e.what for e in timeline.for_appointment(
        Appointment.with_people().where(Appointment.id == first.id).get(), now=morning)]
    assert "Reminder on the day SMS sent" in events


# -- failures -------------------------------------------------------------------------------------


def test_an_invalid_number_fails_at_once_and_the_rest_goes(sms_settings, gateway, alice, bob,
                                                          carol):
    choose(alice, "sms")
    choose(bob, "sms")
    Patient.update(phone="+49309999999").where(Patient.user == bob.id).execute()
    gateway.refuse("+49309999999")
    bad = book(bob, carol, at="11:00")
    book(alice, carol)
    counts = delivery.deliver([m.id for m in sms_rows()])
    assert counts["failed"] == 1 and counts["sent"] == 1
    failed = Message.get(Message.appointment == bad.id)
    assert failed.status == "failed" and failed.attempts == 1
    assert "21211" in failed.last_error


@pytest.mark.parametrize("mode", ["429", "500"])
def test_a_gateway_that_answers_429_or_5xx_is_tried_again_later(sms_settings, gateway, alice,
                                                                carol, mode):
    choose(alice, "sms")
    book(alice, carol)
    gateway.answer(mode)
    (row,) = sms_rows()
    delivery.deliver([row.id])
    row = reload(row)
    assert row.status == "pending" and row.attempts == 1 and mode in row.last_error
    assert row.due_at > clock.now()
    gateway.answer("accept")
    later = row.due_at + timedelta(seconds=1)
    assert sweeper.retry_failed(now=later)["sent"] == 1
    assert reload(row).status == "sent" and len(gateway.requests) == 2


def test_a_hanging_gateway_times_out_and_email_keeps_flowing(sms_settings, gateway, smtp,
                                                             alice, bob, carol):
    choose(alice, "sms")
    book(alice, carol)
    book(alice, carol, at="12:00")
    book(bob, carol, at="11:00")  # bob gets email
    gateway.answer("hang")
    counts = delivery.deliver([m.id for m in Message.select(Message.id)])
    assert len(smtp.messages) == 1  # the email went
    assert counts["sent"] == 1 and counts["retry"] == 1 and counts["deferred"] == 1
    first, second = sms_rows()
    assert reload(first).status == "pending" and "did not answer" in reload(first).last_error
    assert reload(second).attempts == 0  # not tried: left for the sweep
    gateway.answer("accept")
    assert sweeper.sweep() == 1
    assert reload(second).status == "sent"


def test_sms_rate_holds_what_has_no_room(sms_settings, gateway, alice, carol):
    settings.use(settings.get().replace(sms_rate=1))
    choose(alice, "sms")
    book(alice, carol)
    book(alice, carol, at="12:00")
    counts = delivery.deliver([m.id for m in sms_rows()])
    assert counts["sent"] == 1 and counts["deferred"] == 1
    assert len(gateway.requests) == 1
    delivery.forget_wake()  # the send_due it planned is this test's


# -- STOP and START -------------------------------------------------------------------------------


def post_signed(client, path, form, signature=None):
    url = settings.get().base_url + path
    signature = signature if signature is not None else sms_gateway.sign(url, form)
    return client.post(path, form, csrf=False, headers={"X-Twilio-Signature": signature})


def test_stop_opts_the_number_out_at_once_and_start_back_in(sms_settings, gateway, client,
                                                            drain, alice, carol):
    choose(alice, "sms")
    waiting = outbox.enqueue("reminder_daily", "reminder_daily:test:1", alice.email,
                             context={"doctor_name": "Dr Carol Clark", "start": slot(1)},
                             user=alice)
    response = post_signed(client, "/sms/inbound", {"From": PHONE, "Body": " Stop ",
                                                    "MessageSid": "SMx"})
    assert response.status == 200 and "<Response>" in response.text
    assert SmsOptOut.select().where(SmsOptOut.phone == PHONE).exists()
    assert reload(waiting).status == "skipped"  # what was waiting is not sent either
    client.api_login(alice.email)
    assert client.get_json("/api/me").json()["sms_opted_out"] is True
    appointment = book(alice, carol)
    drain()
    assert gateway.requests == []
    row = Message.get(Message.appointment == appointment.id)
    assert row.status == "skipped" and "replied STOP" in row.last_error
    events = timeline.for_appointment(
        Appointment.with_people().where(Appointment.id == appointment.id).get())
    assert any(e.what == "Confirmation SMS not sent" and "replied STOP" in e.detail
               for e in events)
    assert post_signed(client, "/sms/inbound", {"From": PHONE, "Body": "START"}).status == 200
    assert client.get_json("/api/me").json()["sms_opted_out"] is False


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "CANCEL", "end", "QUIT"])
def test_every_stop_word_opts_out(sms_settings, client, alice, word):
    post_signed(client, "/sms/inbound", {"From": PHONE, "Body": word})
    assert SmsOptOut.select().where(SmsOptOut.phone == PHONE).exists()


def test_other_replies_change_nothing(sms_settings, client, alice):
    post_signed(client, "/sms/inbound", {"From": PHONE, "Body": "stop sending me this please"})
    assert SmsOptOut.select().count() == 0


def test_a_forged_webhook_is_refused_and_changes_nothing(sms_settings, client, gateway, alice,
                                                         carol, drain):
    choose(alice, "sms")
    book(alice, carol)
    drain()
    (row,) = sms_rows()
    url = settings.get().base_url
    forged = {"From": PHONE, "Body": "STOP"}
    for signature in ("", "bm90IGEgc2lnbmF0dXJl",
                      sms_gateway.sign(url + "/sms/inbound", forged, token="guessed"),
                      sms_gateway.sign(url + "/sms/inbound", {**forged, "Body": "HELLO"})):
        assert post_signed(client, "/sms/inbound", forged, signature=signature).status == 403
    assert SmsOptOut.select().count() == 0
    report = {"MessageSid": row.gateway_id, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    bad = sms_gateway.sign(url + "/sms/inbound", report)  # signed for another address
    assert post_signed(client, "/sms/status", report, signature=bad).status == 403
    assert reload(row).status == "sent" and reload(row).delivery == "queued"


def test_delivery_reports_update_the_message(sms_settings, client, gateway, alice, bob, carol,
                                             drain):
    choose(alice, "sms")
    choose(bob, "sms")
    Patient.update(phone="+49307654321").where(Patient.user == bob.id).execute()
    book(alice, carol)
    book(bob, carol, at="11:00")
    drain()
    good, bad = sms_rows()
    for sid, state, code in ((good.gateway_id, "sent", ""), (good.gateway_id, "delivered", ""),
                             (good.gateway_id, "sent", ""),  # late: does not undo delivered
                             (bad.gateway_id, "undelivered", "30003")):
        response = post_signed(client, "/sms/status", {"MessageSid": sid, "MessageStatus": state,
                                                       "ErrorCode": code})
        assert response.status == 204
    good, bad = reload(good), reload(bad)
    assert good.status == "sent" and good.delivery == "delivered"
    assert bad.status == "failed" and bad.delivery == "undelivered"
    assert "30003" in bad.last_error and "out of reach" in bad.last_error


def test_without_a_gateway_an_sms_is_written_to_the_outbox_folder(smtp_settings, drain, alice,
                                                                  carol):
    choose(alice, "sms")
    book(alice, carol)
    drain()
    (row,) = sms_rows()
    assert row.status == "sent"
    (path,) = (settings.get().data_path / "outbox").glob("*-sms-*.txt")
    text = path.read_text()
    assert text.startswith(f"To: {PHONE}\n") and row.text_body in text


def test_the_messages_page_shows_sms_beside_emails(sms_settings, gateway, client, drain, alice,
                                                   carol, erin):
    choose(alice, "both")
    book(alice, carol)
    drain()
    login(client, erin)
    page = client.get("/admin/messages")
    assert page.status == 200
    assert "SMS" in page.text and PHONE in page.text and "0.00750 USD" in page.text
    (row,) = sms_rows()
    detail = client.get(f"/admin/messages/{row.id}")
    assert detail.status == 200 and row.gateway_id in detail.text
    assert "Dr Carol Clark" in detail.text


def test_local_times_in_the_sms_are_the_clinics(sms_settings, gateway, drain, alice, carol):
    choose(alice, "sms")
    appointment = book(alice, carol, at="09:30")
    drain()
    assert appointment.start.astimezone(TZ).strftime("%H:%M") == "09:30"
    assert "09:30" in gateway.requests[0].form["Body"]


def test_the_timeline_tells_of_a_move_once_and_of_both_messages(sms_settings, gateway, drain,
                                                                alice, carol):
    choose(alice, "both")
    appointment = book(alice, carol)
    appointments.reschedule(appointment, slot(3, "11:00"), alice)
    drain()
    events = [e.what for e in timeline.for_appointment(
        Appointment.with_people().where(Appointment.id == appointment.id).get())]
    assert events.count("Moved") == 1
    assert "New-time email sent" in events and "New-time SMS sent" in events


def test_an_sms_only_patient_s_move_is_on_the_timeline(sms_settings, gateway, drain, alice,
                                                       carol):
    choose(alice, "sms")
    appointment = book(alice, carol)
    appointments.reschedule(appointment, slot(3, "11:00"), alice)
    drain()
    events = [e.what for e in timeline.for_appointment(
        Appointment.with_people().where(Appointment.id == appointment.id).get())]
    assert events.count("Moved") == 1 and "New-time SMS sent" in events


def test_reminders_to_a_number_that_said_stop_are_skipped_with_the_reason(
        sms_settings, gateway, client, drain, alice, carol):
    choose(alice, "both")
    book(alice, carol, days=1)
    drain()
    post_signed(client, "/sms/inbound", {"From": PHONE, "Body": "STOP"})
    morning = slot(1, "08:00")
    with time_machine.travel(morning, tick=False):
        reminders.send_daily(now=morning)
        drain()
    email, text = (Message.select().where(Message.kind == "reminder_daily")
                   .order_by(Message.id))
    assert email.channel == "email" and email.status == "sent"  # email still goes
    assert text.status == "skipped" and "replied STOP" in text.last_error


def test_the_daily_figures_count_sms_apart_from_emails(sms_settings, gateway, drain, alice,
                                                       bob, carol):
    from clinic import stats

    choose(alice, "sms")
    book(alice, carol)
    book(bob, carol, at="11:00")
    drain()
    figures = stats.day_figures(clock.local(clock.now()).date())
    assert (figures["emails_sent"], figures["sms_sent"]) == (1, 1)


def test_a_bad_gateway_url_stops_the_start_with_what_is_wrong():
    from clinic.mail.gateway import parse_url

    config = parse_url("twilio://AC1:se%2Fcret@api.twilio.com?from=+15550001111")
    assert (config.sid, config.token, config.sender, config.port, config.secure) == (
        "AC1", "se/cret", "+15550001111", 443, True)
    assert parse_url("") is None
    for bad, words in (("https://api.twilio.com", "twilio://"),
                       ("twilio://api.twilio.com?from=+1555", "SID and auth token"),
                       ("twilio://AC1:tok@api.twilio.com", "sender")):
        with pytest.raises(ValueError, match=words):
            parse_url(bad)


def test_the_setting_is_read_from_the_environment(tmp_path):
    s = settings.load(environ={"CLINIC_SMS_URL": "twilio+http://AC1:tok@127.0.0.1:8080"
                                                 "?from=+15550001111",
                               "CLINIC_DATA_DIR": str(tmp_path), "CLINIC_SMS_RATE": "30"})
    assert s.sms_url.sender == "+15550001111" and s.sms_url.port == 8080
    assert not s.sms_url.secure and s.sms_rate == 30


def test_no_sms_kind_says_anything_medical_or_names_the_patient(app):
    from clinic.mail import sms

    start = slot(1, "10:00")
    context = {"patient_name": "Alice Adams", "doctor_name": "Dr Carol Clark",
               "specialization": "Cardiology", "reason": "chest pain", "diagnosis": "angina",
               "start": start, "end": start + timedelta(minutes=30), "timezone": "Europe/Berlin",
               "link": "http://x/visit/long-token", "cutoff": "2 hours"}
    kinds = sorted(path.stem for path in sms.SMS.glob("*.txt"))
    assert kinds == ["cancellation", "confirmation", "reminder_advance", "reminder_daily",
                     "rescheduled"]
    for kind in kinds:
        text, segments = sms.render(kind, context, 7, 3)
        assert "Dr Carol Clark" in text and "10:00" in text, kind
        for secret in ("Alice", "Cardiology", "chest pain", "angina", "long-token"):
            assert secret not in text, (kind, secret)
        assert text.endswith(sms.short_link(7, 3)) and 1 <= segments <= 3


def test_an_undelivered_sms_can_be_resent_and_its_new_report_counts(sms_settings, gateway,
                                                                   client, drain, alice,
                                                                   carol):
    choose(alice, "sms")
    book(alice, carol)
    drain()
    (row,) = sms_rows()
    post_signed(client, "/sms/status", {"MessageSid": row.gateway_id,
                                        "MessageStatus": "failed", "ErrorCode": "30005"})
    assert reload(row).status == "failed"
    assert outbox.resend(row.id)
    drain()
    again = reload(row)
    assert again.status == "sent" and again.gateway_id != row.gateway_id
    post_signed(client, "/sms/status", {"MessageSid": again.gateway_id,
                                        "MessageStatus": "delivered"})
    assert reload(row).delivery == "delivered"


def test_the_settings_page_says_where_sms_go(sms_settings, gateway, client, erin):
    login(client, erin)
    page = client.get("/admin/settings").text
    assert f"SMS go to the gateway</strong> {gateway.host}:{gateway.port}" in page
    assert f"{settings.get().base_url}/sms/inbound" in page
    assert sms_gateway.TOKEN not in page  # the auth token is a secret
    settings.use(settings.get().replace(sms_url=None))
    assert "No SMS gateway is set" in client.get("/admin/settings").text
