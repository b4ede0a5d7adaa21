"""Amending a completed visit's record (clinic/records.py) through real HTTP: the doctor's
"Amend record" form and POST /api/appointments/<id>/amend keep the earlier text, who changed it
and when; the history pages and the CSV export say "amended"; the audit log has it; only the
visit's doctor may amend."""

from datetime import datetime, timedelta

import pytest
import time_machine

from clinic import appointments, exports
from clinic.models import Amendment, AuditEntry, Export, Treatment
from tests.conftest import TZ, login
from tests.test_exports import read_csv

RECORD = {"visit_type": "Consultation", "symptoms": "Cough for two weeks",
          "diagnosis": "Bronchitis", "treatment": "Rest and fluids",
          "prescription": "Amoxicillin 500 mg", "notes": "Back if no better in a week"}
VISIT = datetime(2031, 3, 12, 10, 0, tzinfo=TZ)
LATER = datetime(2031, 3, 13, 18, 30, tzinfo=TZ)  # the doctor corrects the record next evening


@pytest.fixture
def completed(alice, carol):
    """alice saw carol on Wed 12 Mar 2031 at 10:00; carol recorded it during the visit."""
    appointment = appointments.book(alice.id, carol.id, VISIT, now=VISIT - timedelta(days=1))
    appointments.complete(appointment, carol, RECORD, now=VISIT + timedelta(minutes=20))
    return appointment


@pytest.fixture
def later():
    with time_machine.travel(LATER, tick=False):
        yield


def signed_in(new_client, user):
    browser = new_client()
    login(browser, user)
    return browser


def test_the_doctor_amends_a_record_and_the_earlier_text_is_kept(completed, later, new_client,
                                                                  alice, carol):
    browser = signed_in(new_client, carol)
    page = browser.get(f"/doctor/appointments/{completed.id}").text
    assert "<summary>Amend record</summary>" in page
    assert f'action="/doctor/appointments/{completed.id}/amend"' in page
    assert ">Amoxicillin 500 mg</textarea>" in page  # the form starts from the record

    response = browser.post(f"/doctor/appointments/{completed.id}/amend", {
        **RECORD, "prescription": "Doxycycline 100 mg", "reason": "Allergic to penicillin"})

    assert response.status == 303
    record = Treatment.get_by_id(completed.id)
    assert record.prescription == "Doxycycline 100 mg" and record.diagnosis == "Bronchitis"
    assert record.amended_at == LATER
    amendment = Amendment.get()
    assert (amendment.author_id, amendment.author_name, amendment.at) == (
        carol.id, "Dr Carol Clark", LATER)
    assert amendment.before == {"prescription": "Amoxicillin 500 mg"}
    assert amendment.after == {"prescription": "Doxycycline 100 mg"}
    assert amendment.reason == "Allergic to penicillin"
    page = browser.get(response.location).text
    assert "The record is amended" in page
    assert "Thu 13 Mar 2031, 18:30" in page and "by Dr Carol Clark: Allergic to penicillin" in page
    assert "was <del>Amoxicillin 500 mg</del>, now <ins>Doxycycline 100 mg</ins>" in page

    entry = AuditEntry.get(AuditEntry.action == "amend record")
    assert (entry.user_id, entry.patient_id, entry.outcome) == (carol.id, alice.id, "allowed")
    assert entry.path == f"POST /doctor/appointments/{completed.id}/amend"


def test_the_histories_and_the_export_say_amended(completed, later, new_client, alice, carol,
                                                  erin, drain):
    browser = signed_in(new_client, carol)
    browser.get(f"/doctor/appointments/{completed.id}")
    browser.post(f"/doctor/appointments/{completed.id}/amend",
                 {**RECORD, "diagnosis": "Acute bronchitis"})

    doctors = browser.get(f"/doctor/patients/{alice.id}").text
    assert "Acute bronchitis" in doctors and "Amended Thu 13 Mar 2031, 18:30" in doctors
    patient = signed_in(new_client, alice)
    history = patient.get("/patient/history").text
    assert "Acute bronchitis" in history
    assert "Amended by the doctor Thu 13 Mar 2031, 18:30" in history

    admin = signed_in(new_client, erin)
    assert "Amended by the doctor Thu 13 Mar 2031, 18:30" in admin.get(
        f"/admin/appointments/{completed.id}").text
    assert "Amended Thu 13 Mar 2031, 18:30" in admin.get(f"/admin/patients/{alice.id}").text

    record, _ = exports.start(alice)
    drain()
    export = Export.get(Export.task_id == record.task_id)
    header, row = read_csv((exports.folder() / export.filename).read_bytes())
    assert header[-1] == "Amended" and row[header.index("Diagnosis")] == "Acute bronchitis"
    assert row[-1] == "amended 2031-03-13 18:30"


def test_an_amendment_must_change_something_and_keep_a_visit_type(completed, later, new_client,
                                                                  carol):
    browser = signed_in(new_client, carol)
    browser.get(f"/doctor/appointments/{completed.id}")
    same = browser.post(f"/doctor/appointments/{completed.id}/amend", RECORD)
    assert same.status == 400 and "Nothing was changed" in same.text
    empty = browser.post(f"/doctor/appointments/{completed.id}/amend",
                         {**RECORD, "visit_type": " ", "notes": "typed <b>text</b>"})
    assert empty.status == 400 and 'id="e-visit_type">Enter the type of visit.' in empty.text
    assert "typed &lt;b&gt;text&lt;/b&gt;" in empty.text  # kept, escaped
    assert Amendment.select().count() == 0
    assert Treatment.get_by_id(completed.id).amended_at is None


def test_only_the_visits_doctor_may_amend(completed, later, new_client, alice, dave, erin):
    for user, status in ((dave, 404), (alice, 403), (erin, 403)):
        browser = signed_in(new_client, user)
        browser.get("/account")
        response = browser.post(f"/doctor/appointments/{completed.id}/amend",
                                {**RECORD, "diagnosis": "Something else"})
        assert response.status == status, user.name
    assert Amendment.select().count() == 0
    assert Treatment.get_by_id(completed.id).diagnosis == "Bronchitis"


def test_a_visit_not_completed_has_no_record_to_amend(later, new_client, alice, carol):
    booked = appointments.book(alice.id, carol.id, datetime(2031, 3, 14, 9, 0, tzinfo=TZ))
    browser = signed_in(new_client, carol)
    assert "Amend record" not in browser.get(f"/doctor/appointments/{booked.id}").text
    response = browser.post(f"/doctor/appointments/{booked.id}/amend", RECORD)
    assert response.status == 409 and "Only the record of a completed visit" in response.text


def test_the_api_amends_the_fields_it_is_sent(completed, later, new_client, alice, carol):
    client = new_client()
    client.api_login(carol.email)

    response = client.post_json(f"/api/appointments/{completed.id}/amend",
                                {"notes": "Chest X-ray clear", "reason": "Result arrived"})

    assert response.status == 200, response
    body = response.json()
    assert body["treatment"]["notes"] == "Chest X-ray clear"
    assert body["treatment"]["diagnosis"] == "Bronchitis"  # left out: kept
    assert body["treatment"]["amended_at"] == "2031-03-13T18:30:00+01:00"
    assert body["amendments"] == [{
        "at": "2031-03-13T18:30:00+01:00", "author_id": carol.id,
        "author_name": "Dr Carol Clark", "reason": "Result arrived",
        "before": {"notes": "Back if no better in a week"},
        "after": {"notes": "Chest X-ray clear"}}]
    patient = new_client()
    patient.api_login(alice.email)
    visit, = patient.get(f"/api/patients/{alice.id}/history").json()["visits"]
    assert visit["notes"] == "Chest X-ray clear"
    assert visit["amended_at"] == "2031-03-13T18:30:00+01:00"
    bad = client.post_json(f"/api/appointments/{completed.id}/amend", {"notes": 5})
    assert bad.status == 400 and "notes" in bad.json()["fields"]
    assert Amendment.select().count() == 1
