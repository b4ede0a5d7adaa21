"""Which emails a patient wants (clinic/preferences.py): their page, the one-click unsubscribe
link and its List-Unsubscribe headers, and optional emails they said no to recorded as skipped
with the reason, never sent and never silently dropped. Real SMTP, real HTTP."""

import base64
import re
from datetime import timedelta

import pytest

from clinic import announcements, appointments, clock, reminders, reviews, signing
from clinic.mail import preferences, sweeper
from clinic.models import Message, OptOut
from tests.conftest import login, slot
from tests.test_reviews import completed_visit

LINK = re.compile(r"https?://[^/\s]+(/unsubscribe/[A-Za-z0-9_.-]+)")


def kinds_of(received):
    """The outbox kind of each message the SMTP server received."""
    kinds = {m.message_id: m.kind for m in Message.select(Message.message_id, Message.kind)}
    return [kinds[r.message["Message-ID"]] for r in received]


def opted_out(user):
    return {row.kind for row in OptOut.select().where(OptOut.user == user.id)}


def todays_visit(patient, doctor):
    """A visit later today, booked a week ago; returns it and a moment today before it."""
    start = slot(0, "16:00")
    visit = appointments.book(patient.id, doctor.id, start, now=start - timedelta(days=7))
    return visit, start - timedelta(hours=7)


# -- the patient's page ---------------------------------------------------------------------------


def test_a_patient_chooses_their_emails_on_their_page(client, alice):
    login(client, alice)
    home = client.get("/patient")
    assert 'href="/patient/preferences"' in home.text
    page = client.get("/patient/preferences")
    assert page.status == 200
    assert page.text.count('value="1" checked') == 3  # everything, until they say otherwise
    saved = client.post("/patient/preferences", {"reviews": "1"}, follow=True)
    assert "Your email choices are saved." in saved.text
    assert opted_out(alice) == {"reminders", "announcements"}
    assert preferences.choices(alice) == {"reminders": False, "reviews": True,
                                          "announcements": False}
    client.post("/patient/preferences", {"reviews": "1", "reminders": "1",
                                         "announcements": "1"})
    assert opted_out(alice) == set()


def test_only_patients_have_the_preferences_page(client, carol):
    login(client, carol)
    assert client.get("/patient/preferences").status == 403
    anonymous = client.__class__(f"http://{client.host}:{client.port}")
    assert anonymous.get("/patient/preferences").status == 303  # to sign in


# -- opted out: skipped with the reason -----------------------------------------------------------


def test_a_reminder_the_patient_opted_out_of_is_skipped_with_the_reason_and_not_sent(
        smtp_settings, smtp, alice, carol):
    visit, morning = todays_visit(alice, carol)
    sweeper.sweep()  # the booking's confirmation: always sent
    assert kinds_of(smtp.messages) == ["confirmation"]
    preferences.save(alice, {"reminders": False})

    assert reminders.send_daily(now=morning) == {"sent": 0, "skipped": 1}
    row = Message.get(Message.kind == "reminder_daily")
    assert (row.status, row.last_error) == ("skipped", "the patient opted out of reminders")
    assert row.appointment_id == visit.id and row.user_id == alice.id
    assert reminders.send_daily(now=morning) == {"sent": 0, "skipped": 0}  # recorded once
    sweeper.sweep()
    assert len(smtp.messages) == 1


def test_a_review_request_the_patient_opted_out_of_is_skipped_with_the_reason(app, alice, carol):
    now = clock.now()
    visit = completed_visit(alice, carol, now - timedelta(hours=3))
    preferences.save(alice, {"reviews": False})
    assert reviews.send_requests(now=now) == {"requested": 0}
    row = Message.get(Message.appointment == visit.id, Message.kind == "review_request")
    assert (row.status, row.last_error) == ("skipped", "the patient opted out of review requests")


def test_saying_no_skips_what_of_that_kind_is_still_waiting(app, alice, bob, erin):
    announcement, _ = announcements.start(erin, "Closed", "We are closed.", {"type": "all"})
    announcements.send(announcement.id)
    preferences.save(alice, {"announcements": False}, via="link")
    statuses = {m.user_id: (m.status, m.last_error) for m in Message.select().where(
        Message.kind == "announcement")}
    assert statuses == {alice.id: ("skipped", "the patient opted out of announcements"),
                        bob.id: ("pending", "")}


def test_emails_that_always_go_out_ignore_the_choices(smtp_settings, smtp, alice, carol):
    preferences.save(alice, {choice: False for choice in preferences.KINDS})
    appointment = appointments.book(alice.id, carol.id, slot(2))
    sweeper.sweep()
    appointments.cancel(appointment, alice)
    sweeper.sweep()
    assert kinds_of(smtp.messages) == ["confirmation", "cancellation"]
    assert [r.rcpt_tos for r in smtp.messages] == [[alice.email]] * 2
    for received in smtp.messages:
        assert "List-Unsubscribe" not in received.message
        assert "/unsubscribe/" not in received.raw.decode()


# -- the one-click link ---------------------------------------------------------------------------


def test_every_optional_email_carries_its_one_click_link_and_headers(smtp_settings, smtp, alice,
                                                                     carol, erin):
    visit, morning = todays_visit(alice, carol)
    reminders.send_daily(now=morning)
    # Begun yesterday, so it never overlaps today's visit with the same doctor, whatever the hour.
    completed_visit(alice, carol, clock.now() - timedelta(hours=1), hours_before=23)
    reviews.send_requests()
    announcement, _ = announcements.start(erin, "Closed", "We are closed.", {"type": "all"})
    announcements.send(announcement.id)
    sweeper.sweep()
    optional = [r for r, kind in zip(smtp.messages, kinds_of(smtp.messages), strict=True)
                if kind != "confirmation"]
    assert sorted(kinds_of(optional)) == ["announcement", "reminder_daily", "review_request"]
    choices = set()
    for received in optional:
        message = received.message
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        path = LINK.search(text).group(1)
        assert path in html
        assert message["List-Unsubscribe"] == f"<{smtp_settings.base_url}{path}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"List-Unsubscribe: <{smtp_settings.base_url}{path}>\r\n".encode() in received.raw
        user, choice = preferences.for_token(path.removeprefix("/unsubscribe/"))
        assert user.id == alice.id
        choices.add(choice)
    assert choices == {"reminders", "reviews", "announcements"}


def token_for(user, choice):
    return preferences.token(user, choice)


def test_the_link_asks_first_and_a_get_changes_nothing(new_client, alice):
    browser = new_client()  # not signed in
    token = token_for(alice, "announcements")
    for _ in range(2):  # mail scanners follow links
        page = browser.get(f"/unsubscribe/{token}")
        assert page.status == 200
        assert "Yes, stop them" in page.text and "announcements from the clinic" in page.text
        assert "from the clinic from" not in page.text  # said once
        assert page.headers["cache-control"] == "no-store"
    assert opted_out(alice) == set()


def test_the_one_click_post_works_without_signing_in_or_a_csrf_token(new_client, alice):
    """RFC 8058: the mail client POSTs List-Unsubscribe=One-Click, with no cookies."""
    mail_client = new_client()
    token = token_for(alice, "reminders")
    response = mail_client.post(f"/unsubscribe/{token}", {"List-Unsubscribe": "One-Click"},
                                csrf=False)
    assert response.status == 200, response
    assert "you will get no more reminders of coming visits" in response.text
    assert opted_out(alice) == {"reminders"}
    assert OptOut.get(OptOut.user == alice.id).via == "link"
    again = mail_client.post(f"/unsubscribe/{token}", csrf=False)  # a second click: harmless
    assert again.status == 200 and opted_out(alice) == {"reminders"}
    undone = mail_client.post(f"/unsubscribe/{token}/undo", csrf=False)
    assert undone.status == 200 and "reminders of coming visits again" in undone.text
    assert opted_out(alice) == set()


def forged(token, **changes):
    """The token's payload changed, its signature kept (a token is ``<base64url(json)>.<mac>``,
    unpadded)."""
    body, mac = token.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    for old, new in changes.items():
        payload = payload.replace(old, new)
    return f"{base64.urlsafe_b64encode(payload.encode()).rstrip(b'=').decode()}.{mac}"


def test_a_link_cannot_be_forged_for_another_patient(new_client, alice, bob, carol):
    browser = new_client()
    token = token_for(alice, "announcements")
    attempts = [
        forged(token, **{f'"p":{alice.id}': f'"p":{bob.id}'}),  # another patient
        forged(token, announcements="reminders"),  # another kind
        signing.sign("review", {"p": bob.id, "k": "announcements"}),  # another purpose
        signing.sign("unsubscribe", {"p": bob.id, "k": "announcements"}, key="another key"),
        token_for(carol, "announcements"),  # not a patient
        signing.sign("unsubscribe", {"p": bob.id, "k": "everything"}),
        "not-a-token",
        token + "x",
    ]
    for attempt in attempts:
        assert browser.get(f"/unsubscribe/{attempt}").status == 404, attempt
        assert browser.post(f"/unsubscribe/{attempt}", csrf=False).status == 404, attempt
        assert browser.post(f"/unsubscribe/{attempt}/undo", csrf=False).status == 404, attempt
    assert opted_out(alice) == opted_out(bob) == set()


def test_links_name_one_patient_and_one_kind_and_stay_the_same(app, alice, bob):
    assert token_for(alice, "reviews") == token_for(alice, "reviews")
    assert token_for(alice, "reviews") != token_for(bob, "reviews")
    assert token_for(alice, "reviews") != token_for(alice, "reminders")
    assert preferences.unsubscribe_url(alice, "confirmation") is None
    assert preferences.unsubscribe_url(alice, "reminder_advance").endswith(
        "/unsubscribe/" + token_for(alice, "reminders"))


@pytest.mark.parametrize("kind, choice", [("reminder_daily", "reminders"),
                                          ("reminder_advance", "reminders"),
                                          ("review_request", "reviews"),
                                          ("review_reminder", "reviews"),
                                          ("announcement", "announcements"),
                                          ("confirmation", None), ("cancellation", None),
                                          ("rescheduled", None), ("history_export", None),
                                          ("monthly_report", None)])
def test_only_reminders_reviews_and_announcements_can_be_refused(kind, choice):
    assert preferences.choice_of(kind) == choice
