"""The clinic's details (name, address, phone, time zone, website) set from the admin's Clinic
page and GET/PATCH /api/admin/clinic, through real HTTP: in force at once (the schedules
included), the environment winning where set, bad input refused beside its field with nothing
saved, and the phone wherever a patient is told to call and in every email's footer.

Here the clinic is new: unlike the other tests' clinic, it has no time zone, name or address in
its environment (the ``clinic_settings`` fixture below)."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from clinic import appointments, details, people, settings
from clinic.errors import Conflict
from clinic.jobs import scheduler
from clinic.jobs.queue import NORMAL
from clinic.jobs.scheduler import SAME_DAY, Job
from clinic.models import ClinicSettings, Message
from tests.conftest import PASSWORD, login, slot
from tests.test_email_privacy import MORNING, every_kind, make_every_kind


@pytest.fixture
def clinic_settings(tmp_path, backend_urls):
    """A clinic with nothing about itself in the environment: what the Clinic page saves is
    what is in force."""
    return settings.load(environ={}, **backend_urls, data_dir=str(tmp_path / "data"),
                         secret_key="test-secret-key-0123456789abcdef", host="127.0.0.1",
                         port=0)


@pytest.fixture
def admin(client, erin):
    client.api_login(erin.email)
    return client


def patch(client, body):
    return client.request("PATCH", "/api/admin/clinic", body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})


BERLIN = {"name": "Praxis am Park", "address": "Parkstraße 1, 10115 Berlin",
          "phone": "+49 30 1234567", "timezone": "Europe/Berlin", "website": "praxis.example"}


# -- the API --------------------------------------------------------------------------------------


def test_a_new_clinic_answers_its_defaults_unconfirmed(admin):
    answer = admin.get("/api/admin/clinic")
    assert answer.status == 200, answer
    body = answer.json()
    assert body["name"] == "Clinic" and body["phone"] == "" and body["website"] == ""
    assert body["timezone"] == str(settings.get().timezone)  # the machine's
    assert body["timezone_confirmed"] is False and body["from_environment"] == []


def test_patch_saves_the_details_and_they_are_in_force_at_once(admin, new_client):
    answer = patch(admin, BERLIN)
    assert answer.status == 200, answer
    assert answer.json() == {
        "name": "Praxis am Park", "address": "Parkstraße 1, 10115 Berlin",
        "phone": "+49301234567", "timezone": "Europe/Berlin",
        "website": "https://praxis.example", "timezone_confirmed": True,
        "from_environment": []}
    assert admin.get("/api/admin/clinic").json() == answer.json()
    row = ClinicSettings.get_by_id(1)
    assert (row.phone, row.timezone, row.timezone_confirmed) == ("+49301234567",
                                                                 "Europe/Berlin", True)
    # Another browser's page, without a restart: the new name and zone.
    page = new_client().get("/").text
    assert "Praxis am Park" in page and "Clinic</a>" not in page
    # The clinic's phone is German now, so a number in German national format is read as one.
    assert patch(admin, {"phone": "030 7654321"}).json()["phone"] == "+49307654321"
    assert patch(admin, {"website": ""}).json()["website"] == ""


@pytest.mark.parametrize("body, field, words", [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Not a time zone"),
    ({"timezone": ""}, "timezone", "Not a time zone"),
    ({"phone": "call me maybe"}, "phone", "not a phone number"),
    ({"phone": "+49 30 12"}, "phone", "not a phone number"),
    ({"phone": "030 1234567"}, "phone", "country code"),  # no region known yet
    ({"name": "  "}, "name", "Enter the clinic's name"),
    ({"website": "not a site"}, "website", "website's address"),
    ({"name": 5}, "name", "Expected a string"),
    ({"colour": "blue"}, "colour", "Not a field"),
])
def test_a_bad_value_is_refused_with_its_field_and_nothing_is_saved(admin, body, field, words):
    answer = patch(admin, {**BERLIN, "name": "Changed", **body})
    assert answer.status == 400, answer
    assert field in answer.json()["fields"]
    assert words in answer.json()["fields"][field]
    assert not ClinicSettings.select().exists()
    assert admin.get("/api/admin/clinic").json()["name"] == "Clinic"


def test_the_environment_wins_and_says_so(admin):
    patch(admin, BERLIN)
    settings.use(settings.get().replace(name="Env Clinic", timezone=ZoneInfo("Asia/Tokyo")))
    body = admin.get("/api/admin/clinic").json()
    assert body["from_environment"] == ["name", "timezone"]
    assert (body["name"], body["timezone"], body["phone"]) == ("Env Clinic", "Asia/Tokyo",
                                                              "+49301234567")
    assert body["timezone_confirmed"] is True  # the environment chose it
    refused = patch(admin, {"name": "Mine", "phone": "+49 30 7654321"})
    assert refused.status == 409, refused
    assert "CLINIC_NAME" in refused.json()["fields"]["name"]
    assert admin.get("/api/admin/clinic").json()["phone"] == "+49301234567"  # nothing saved
    assert patch(admin, {"phone": "+49 30 7654321"}).status == 200


def test_only_an_admin_reads_or_changes_the_clinic(new_client, alice, carol):
    anonymous = new_client()
    assert anonymous.get("/api/admin/clinic").status == 401
    assert patch(anonymous, BERLIN).status == 401
    for person in (alice, carol):
        client = new_client()
        client.api_login(person.email)
        assert client.get("/api/admin/clinic").status == 403
        assert patch(client, BERLIN).status == 403
    assert not ClinicSettings.select().exists()


def test_a_cookie_signed_in_patch_needs_the_csrf_header(client, erin):
    login(client, erin)
    client.get("/admin/clinic")  # the signed-in page's CSRF token
    assert patch(client, BERLIN).status == 403
    answer = client.request("PATCH", "/api/admin/clinic", body=json.dumps(BERLIN).encode(),
                            headers={"Content-Type": "application/json",
                                     "X-CSRF-Token": client.csrf})
    assert answer.status == 200, answer


# -- the page -------------------------------------------------------------------------------------


def test_the_first_admin_sign_in_lands_on_the_clinic_page_until_the_zone_is_confirmed(
        new_client, erin):
    first = new_client()
    assert login(first, erin).location.endswith("/admin/clinic")
    page = first.get("/admin/clinic").text
    assert 'id="confirm-timezone"' in page and "Check the time zone" in page
    saved = first.post("/admin/clinic", {**BERLIN, "phone": "+49 30 1234567"})
    assert saved.status == 303 and saved.location.endswith("/admin/clinic")
    page = first.get("/admin/clinic").text
    assert "are saved and in force" in page and 'id="confirm-timezone"' not in page
    assert 'value="+49 30 1234567"' in page and 'value="Europe/Berlin"' in page
    assert login(new_client(), erin).location.endswith("/admin")


def test_the_page_says_what_is_wrong_beside_each_field_and_saves_nothing(client, erin):
    login(client, erin)
    client.get("/admin/clinic")
    answer = client.post("/admin/clinic", {**BERLIN, "timezone": "Nowhere/City",
                                           "phone": "call me maybe"})
    assert answer.status == 400
    page = answer.text
    assert '<p class="error" id="e-timezone">Not a time zone we know' in page
    assert '<p class="error" id="e-phone">This is not a phone number' in page
    assert 'value="call me maybe"' in page and 'value="Praxis am Park"' in page  # kept
    assert "Nothing was saved" in page
    assert not ClinicSettings.select().exists()
    assert details.current().name == "Clinic"


def test_a_value_from_the_environment_is_shown_but_not_editable(client, erin):
    settings.use(settings.get().replace(timezone=ZoneInfo("Asia/Tokyo")))
    login(client, erin)
    page = client.get("/admin/clinic").text
    assert 'value="Asia/Tokyo" disabled' in page and "<code>CLINIC_TIMEZONE</code>" in page
    assert 'name="timezone"' not in page
    # A time zone sent anyway is ignored; the rest is saved.
    saved = client.post("/admin/clinic", {**BERLIN, "timezone": "Europe/Berlin"})
    assert saved.status == 303
    assert (details.current().timezone, details.current().name) == (ZoneInfo("Asia/Tokyo"),
                                                                    "Praxis am Park")


# -- where the details appear ---------------------------------------------------------------------


def test_every_email_footer_has_the_phone_address_and_website(app, alice, carol, erin):
    details.update(BERLIN, erin)
    with time_machine.travel(MORNING, tick=False):
        make_every_kind(alice, carol, erin)
    messages = list(Message.select().where(Message.status != "skipped"))
    assert {m.kind for m in messages} == every_kind()
    for message in messages:
        for body in (message.text_body, message.html_body):
            if not body:  # a secret link's body is emptied once sent
                continue
            assert "+49 30 1234567" in body, message.kind
            assert "Parkstraße 1, 10115 Berlin" in body, message.kind
            assert "https://praxis.example" in body, message.kind
    cancellation = next(m for m in messages if m.kind == "cancellation")
    assert "please call the clinic on +49 30 1234567" in cancellation.text_body


def test_a_patient_told_to_call_is_given_the_number(client, app, alice, carol, erin):
    details.update({"phone": "+49 30 1234567"}, erin)
    soon = appointments.book(alice.id, carol.id, slot(2, "10:00"))
    with pytest.raises(Conflict) as refused:
        appointments.cancel(soon, alice, now=soon.start - timedelta(minutes=30))
    assert "Please call the clinic on +49 30 1234567." in refused.value.message
    with time_machine.travel(soon.start - timedelta(minutes=30), tick=False):
        login(client, alice)
        page = client.get(f"/patient/appointments/{soon.id}").text
    assert 'please call the clinic on <a href="tel:+49301234567"' in page


# -- the schedules --------------------------------------------------------------------------------


def test_a_daily_jobs_utc_time_moves_when_the_zone_is_changed_without_a_restart(admin):
    """08:00 in the clinic: 06:00 UTC in Berlin's summer, 12:00 UTC in New York's."""
    fired = []
    job = Job("daily-test", "daily_test_at", "08:00", lambda now: None, NORMAL, "A test job.",
              SAME_DAY)

    def tick():
        scheduler.tick(enqueue=lambda job, due: fired.append(due))

    start = datetime(2026, 7, 1, 5, 50, tzinfo=UTC)
    with scheduler.registry(job), time_machine.travel(start, tick=False) as traveller:
        assert patch(admin, {"timezone": "Europe/Berlin"}).status == 200
        tick()  # the first tick: yesterday's run is not caught up
        traveller.move_to(datetime(2026, 7, 1, 6, 0, 30, tzinfo=UTC))
        tick()
        assert fired == [datetime(2026, 7, 1, 6, 0, tzinfo=UTC)]
        rows = {row["name"]: row for row in scheduler.listing()}
        assert rows["daily-test"]["next_runs"][0] == datetime(2026, 7, 2, 6, 0, tzinfo=UTC)

        assert patch(admin, {"timezone": "America/New_York"}).status == 200
        rows = {row["name"]: row for row in scheduler.listing()}
        assert rows["daily-test"]["next_runs"][0] == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
        traveller.move_to(datetime(2026, 7, 2, 6, 0, 30, tzinfo=UTC))  # 02:00 in New York
        tick()
        traveller.move_to(datetime(2026, 7, 2, 12, 0, 30, tzinfo=UTC))  # 08:00 in New York
        tick()
    assert fired == [datetime(2026, 7, 1, 6, 0, tzinfo=UTC),
                     datetime(2026, 7, 2, 12, 0, tzinfo=UTC)]


# -- the one phone check --------------------------------------------------------------------------


@pytest.mark.parametrize("raw, region, expected", [
    ("+49 30 1234567", None, "+49301234567"),
    ("030 1234567", "DE", "+49301234567"),
    ("(030) 123-4567", "DE", "+49301234567"),
    ("+44 20 7946 0958", "DE", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("", None, ""),
])
def test_parse_phone_gives_e164(app, raw, region, expected):
    errors = {}
    assert people.parse_phone(raw, errors, region=region) == expected
    assert errors == {}


@pytest.mark.parametrize("raw, region", [("call me maybe", "DE"), ("call me maybe", None),
                                         ("+49 30 12", None), ("030 1234567", None),
                                         ("1" * 50, "DE")])
def test_parse_phone_refuses_what_is_not_a_number(app, raw, region):
    errors = {}
    people.parse_phone(raw, errors, region=region)
    assert "phone" in errors


def test_registration_keeps_the_phone_in_e164_and_refuses_a_non_number(client, app):
    client.get("/register")
    bad = client.post("/register", {"name": "Zoë", "email": "zoe@example.com",
                                    "password": PASSWORD, "phone": "call me maybe"})
    assert bad.status == 400 and '<p class="error" id="e-phone">' in bad.text
    good = client.post("/register", {"name": "Zoë", "email": "zoe@example.com",
                                     "password": PASSWORD, "phone": "+49 (30) 123 4567"})
    assert good.status == 303
    assert people.search_patients("zoe")[0].phone == "+49301234567"


def test_the_settings_page_shows_the_details_in_force_and_where_they_come_from(client, erin):
    details.update(BERLIN, erin)
    settings.use(settings.get().replace(name="Env Clinic"))
    login(client, erin)
    page = client.get("/admin/settings").text
    assert "+49 30 1234567 (on the Clinic page)" in page
    assert "Env Clinic</td>" in page and "Europe/Berlin (on the Clinic page)" in page
