"""Languages: the catalogs hold every message the code and templates mark, every email renders in
every shipped language, pages follow the user or Accept-Language, and PATCH /api/me takes only an
offered language. Real HTTP, a real database and the SMTP test server."""

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from clinic import appointments, i18n, settings
from clinic.mail import compose
from clinic.models import User
from tests.conftest import slot

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("en", "de", "fr")


@pytest.fixture
def languages(app):
    """The running clinic offers English, German and French."""
    return settings.use(settings.get().replace(languages=SHIPPED))


def _extracted():
    """Every message babel.cfg finds in the code and the templates, as pybabel extract does."""
    with open(ROOT / "babel.cfg") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]
        if msgid:
            found.setdefault(msgid, filename)
    return found


def _catalog(language):
    with open(ROOT / "clinic" / "locale" / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=language)


def test_the_shipped_languages_are_english_german_and_french():
    assert set(SHIPPED) <= set(i18n.shipped())


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_catalog_translates_every_message_and_none_is_fuzzy(language):
    catalog = _catalog(language)
    extracted = _extracted()
    assert len(extracted) > 500  # the templates and the code were read
    missing = [f"{msgid!r} ({where})" for msgid, where in extracted.items()
               if msgid not in catalog]
    assert not missing, f"run pybabel extract/update (README) for: {missing[:10]}"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy in {language}: {fuzzy[:10]}"
    untranslated = [m.id for m in catalog if m.id and m.id in extracted
                    and not (all(m.string) if isinstance(m.string, tuple) else m.string)]
    assert not untranslated, f"untranslated in {language}: {untranslated[:10]}"


def test_the_english_catalog_holds_every_message():
    catalog = _catalog("en")
    assert [m for m in _extracted() if m not in catalog] == []


def test_placeholders_survive_translation():
    placeholder = re.compile(r"%\([a-z_]+\)[sd]")
    for language in ("de", "fr"):
        for message in _catalog(language):
            if not message.id or isinstance(message.id, tuple):
                continue
            assert (sorted(placeholder.findall(message.id))
                    == sorted(placeholder.findall(message.string))), (language, message.id)


# -- emails ----------------------------------------------------------------------------------------

START = datetime(2031, 3, 4, 9, 30, tzinfo=UTC)
CONTEXT = {  # every name some email's templates use
    "patient_name": "Alice Adams", "doctor_name": "Dr Carol Clark", "name": "Alice Adams",
    "specialization": "Cardiology", "start": START, "end": START + timedelta(minutes=30),
    "timezone": "Europe/Berlin", "link": "http://clinic.test/visit/t", "cutoff": timedelta(hours=2),
    "new_email": "new@example.com", "confirm_url": "http://clinic.test/account/email/t",
    "reset_url": "http://clinic.test/reset/t", "expires_at": START, "lifetime": timedelta(hours=1),
    "rows": 3, "download_url": "http://clinic.test/d", "review_url": "http://clinic.test/review/t",
    "month": date(2031, 2, 1), "labels": {"completed": "Completed"}, "days": [],
    "figures": {"appointments": 2, "by_status": {"completed": 2}, "treatments": 2, "patients": 1,
                "no_show_rate": 0.0},
    "subject": "Closed on Friday", "text": "The clinic is closed on Friday.",
    "unsubscribe_url": "http://clinic.test/unsubscribe/t",
    "why": "", "rebook_url": "http://clinic.test/patient/doctors",
    "change": "The password of your account was changed.", "change_values": {},
    "changed_at": START,
}
KINDS = sorted(p.name.removesuffix(".subject.txt")
               for p in (ROOT / "templates" / "emails").glob("*.subject.txt"))
# What each language's greeting and weekday look like, 4 March 2031 being a Tuesday.
SIGNS = {"en": ("Hello", "Tue"), "de": ("Guten Tag", "Di."), "fr": ("Bonjour", "mar.")}


@pytest.mark.parametrize("language", SHIPPED)
@pytest.mark.parametrize("kind", KINDS)
def test_every_email_renders_in_every_language(languages, kind, language):
    subject, text, html = compose.render(kind, language=language, **CONTEXT)
    assert subject and text.strip() and f'<html lang="{language}">' in html
    if kind == "announcement":  # the admin writes it, in the language they choose
        return
    greeting, weekday = SIGNS[language]
    assert greeting in text and greeting in html
    english_subject, english_text, _ = compose.render(kind, language="en", **CONTEXT)
    if language != "en":
        assert subject != english_subject and text != english_text
    if kind in ("confirmation", "cancellation", "rescheduled", "reminder_advance"):
        assert weekday in subject and weekday in text


def test_a_german_patient_gets_the_confirmation_in_german(languages, smtp_settings, delivered,
                                                          alice, carol):
    User.update(language="de").where(User.id == alice.id).execute()
    appointments.book(User.get_by_id(alice.id), carol.id, slot(2, "10:00"))
    [received] = delivered()
    message = received.message
    assert "Ihr Termin am" in message["Subject"] and "ist gebucht" in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    assert "Guten Tag Alice Adams," in body and "Ihr Termin ist gebucht." in body
    assert "Online-Änderungen sind bis 2 Stunden vor Beginn möglich." in body


def test_an_english_patient_gets_it_in_english_meanwhile(languages, smtp_settings, delivered,
                                                         alice, carol):
    appointments.book(User.get_by_id(alice.id), carol.id, slot(2, "10:00"))
    [received] = delivered()
    message = received.message
    assert "is booked" in message["Subject"]


# -- pages -----------------------------------------------------------------------------------------


def test_a_page_follows_accept_language(languages, client):
    page = client.get("/login", headers={"Accept-Language": "fr-CH, de;q=0.8, en;q=0.5"})
    assert '<html lang="fr">' in page.text and "Se connecter" in page.text
    page = client.get("/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert '<html lang="de">' in page.text and "Anmelden" in page.text


def test_an_unoffered_language_falls_back_to_the_first_offered(languages, client):
    page = client.get("/login", headers={"Accept-Language": "ja, zh;q=0.5"})
    assert '<html lang="en">' in page.text and "Sign in" in page.text


def test_a_clinic_with_only_english_offers_no_other(app, client):
    page = client.get("/register", headers={"Accept-Language": "de"})
    assert '<html lang="en">' in page.text and 'name="language"' not in page.text


def test_the_signed_in_users_language_beats_accept_language(languages, client, alice):
    User.update(language="de").where(User.id == alice.id).execute()
    client.login(alice.email)
    page = client.get("/patient", headers={"Accept-Language": "fr"})
    assert '<html lang="de">' in page.text and "Meine Termine" in page.text


def test_registering_keeps_the_language_chosen(languages, client):
    client.get("/register", headers={"Accept-Language": "de"})
    answer = client.post("/register", {"name": "Dora Diaz", "email": "dora@example.com",
                                       "password": "long enough pw", "language": "fr"})
    assert answer.status == 303, answer
    assert User.get(User.email == "dora@example.com").language == "fr"


def test_an_unknown_language_on_the_form_is_a_field_error(languages, client):
    client.get("/register")
    answer = client.post("/register", {"name": "Dora Diaz", "email": "dora@example.com",
                                       "password": "long enough pw", "language": "xx"})
    assert answer.status == 400 and 'id="e-language"' in answer.text
    assert not User.select().where(User.email == "dora@example.com").exists()


def test_a_form_error_speaks_the_pages_language(languages, client):
    client.get("/register", headers={"Accept-Language": "de"})
    answer = client.post("/register", {"name": "", "email": "x@example.com",
                                       "password": "long enough pw"},
                         headers={"Accept-Language": "de"})
    assert answer.status == 400 and "Geben Sie einen Namen ein." in answer.text


def test_dates_on_a_page_are_in_its_language(languages, client, alice, carol):
    User.update(language="de").where(User.id == alice.id).execute()
    start = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Berlin
    with i18n.using("de"):
        assert i18n.formatted(start) == "Di., 4. März 2031, 10:00"
        assert i18n.formatted(date(2031, 3, 1), "month") == "März 2031"
    with i18n.using("fr"):
        assert i18n.formatted(start, "day") == "mar. 4 mars 2031"
    with i18n.using("en"):
        assert i18n.formatted(start) == "Tue 04 Mar 2031, 10:00"


# -- the API ---------------------------------------------------------------------------------------


def _patch(client, changes):
    return client.request("PATCH", "/api/me", body=json.dumps(changes).encode(),
                          headers={"Content-Type": "application/json"})


def test_patch_me_sets_the_language_and_get_shows_it(languages, client, alice):
    client.api_login(alice.email)
    assert client.get("/api/me").json()["language"] is None
    answer = _patch(client, {"language": "de"})
    assert answer.status == 200 and answer.json()["language"] == "de"
    assert client.get("/api/me").json()["language"] == "de"


def test_patch_me_refuses_an_unknown_language(languages, client, alice):
    client.api_login(alice.email)
    answer = _patch(client, {"language": "klingon"})
    assert answer.status == 400
    assert "language" in answer.json()["fields"] and answer.json()["error"]
    assert User.get_by_id(alice.id).language == ""


def test_patch_me_refuses_a_language_the_clinic_does_not_offer(app, client, alice):
    client.api_login(alice.email)  # this clinic offers English only
    answer = _patch(client, {"language": "de"})
    assert answer.status == 400 and "en" in answer.json()["fields"]["language"]


def test_the_preferences_page_saves_the_language(languages, client, alice):
    client.login(alice.email)
    client.get("/patient/preferences")
    answer = client.post("/patient/preferences", {"reminders": "1", "language": "fr"},
                         follow=True)
    assert User.get_by_id(alice.id).language == "fr"
    assert '<html lang="fr">' in answer.text and "Vos choix d’e-mails sont enregistrés." in (
        answer.text)


def test_clinic_languages_must_have_a_catalog():
    with pytest.raises(settings.SettingsError, match="CLINIC_LANGUAGES"):
        settings.load(environ={"CLINIC_LANGUAGES": "en,xx"})
    assert settings.load(environ={"CLINIC_LANGUAGES": "de, en"}).languages == ("de", "en")


def test_an_unknown_language_on_the_preferences_page_is_a_field_error(languages, client, alice):
    client.login(alice.email)
    client.get("/patient/preferences")
    answer = client.post("/patient/preferences", {"reminders": "1", "language": "xx"})
    assert answer.status == 400, answer
    assert 'id="e-language"' in answer.text
    assert 'name="channel" value="email" checked' in answer.text  # the whole page, again
    assert User.get_by_id(alice.id).language == ""


def test_a_taken_time_is_refused_in_the_patients_language(languages, client, alice, bob, carol):
    appointments.book(bob.id, carol.id, slot(2, "10:00"))
    User.update(language="de").where(User.id == alice.id).execute()
    client.api_login(alice.email)
    answer = client.post_json("/api/appointments", {"doctor_id": carol.id,
                                                    "start": slot(2, "10:00").isoformat()})
    assert answer.status == 409, answer
    assert answer.json()["error"] == ("Diese Zeit wurde gerade von jemand anderem gebucht. "
                                      "Bitte wählen Sie eine andere.")


def test_the_ways_to_be_reached_read_in_the_patients_language(languages, client, alice):
    User.update(language="de").where(User.id == alice.id).execute()
    client.login(alice.email)
    page = client.get("/patient/preferences").text
    assert "Per SMS (Textnachricht)" in page and "Per E-Mail und SMS" in page
