"""Reports on demand and task status through real HTTP: POST /api/admin/reports/monthly starts a
background task (run here inline from the real queue), GET /api/tasks/<task_id> follows it from
PENDING through PROGRESS to SUCCESS or FAILURE, and only the one who started a task, or an admin,
may read it."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from clinic import people, reports
from clinic.jobs import progress
from clinic.jobs.queue import NORMAL
from clinic.models import Appointment, Message, MonthlyReport, TaskRecord, Treatment
from huey_config import huey
from tests.conftest import TZ

NOW = datetime(2026, 11, 15, 10, tzinfo=TZ).astimezone(UTC)
URL = "/api/admin/reports/monthly"


@pytest.fixture(autouse=True)
def mid_november():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def queue(app):
    huey.flush()
    yield huey
    huey.flush()


@pytest.fixture
def api_as(new_client):
    def sign_in(user):
        client = new_client()
        client.api_login(user.email)
        return client

    return sign_in


@pytest.fixture
def admin(api_as, erin):
    return api_as(erin)


@pytest.fixture
def october(alice, bob, carol, dave):
    """Carol saw alice twice in October; dave missed bob once."""
    for day, patient, doctor, status in ((5, alice, carol, "completed"),
                                         (6, alice, carol, "completed"),
                                         (7, bob, dave, "no_show")):
        start = datetime(2026, 10, day, 9, tzinfo=TZ).astimezone(UTC)
        appointment = Appointment.create(patient=patient.id, doctor=doctor.id, start=start,
                                         end=start + timedelta(minutes=30), status=status)
        if status == "completed":
            Treatment.create(appointment=appointment.id, visit_type="Check-up",
                             diagnosis="Angina", treatment="Rest")


def run_queued(queue):
    """What the consumer would do with the queued report task: run it."""
    [task] = [t for t in queue.pending() if t.name == "make_monthly_reports"]
    queue.execute(task)
    return task


def status_of(client, task_id):
    response = client.get(f"/api/tasks/{task_id}")
    assert response.status == 200, response
    return response.json()


# -- starting -------------------------------------------------------------------------------------


def test_an_admin_starts_a_months_reports_and_gets_202_with_the_task(admin, queue, october):
    response = admin.post_json(URL, {"month_year": "2026-10"})
    assert response.status == 202, response
    body = response.json()
    assert body == {"task_id": body["task_id"], "month_year": "2026-10", "status": "PENDING"}
    record = TaskRecord.get(TaskRecord.task_id == body["task_id"])
    assert (record.name, record.state, record.total) == ("monthly-reports", "PENDING", 2)
    [task] = queue.pending()
    assert task.name == "make_monthly_reports"
    assert task.args == (body["task_id"], "2026-10", None)
    assert task.priority == NORMAL
    assert MonthlyReport.select().count() == 0  # nothing is made before the task runs


def test_the_task_reports_progress_per_doctor_then_the_summary(admin, queue, october,
                                                               monkeypatch, carol, dave):
    task_id = admin.post_json(URL, {"month_year": "2026-10"}).json()["task_id"]
    assert status_of(admin, task_id) == {
        "task_id": task_id, "name": "monthly-reports", "state": "PENDING", "current": 0,
        "total": 2, "status": "Waiting to make the reports for October 2026", "result": None}

    seen = []
    step = progress.step

    def step_and_look(*args, **kwargs):  # what a browser polling the status would see
        step(*args, **kwargs)
        seen.append(status_of(admin, task_id))

    monkeypatch.setattr(progress, "step", step_and_look)
    run_queued(queue)

    assert [(s["state"], s["current"], s["total"]) for s in seen] == [
        ("PROGRESS", 0, 2), ("PROGRESS", 1, 2), ("PROGRESS", 2, 2)]
    assert seen[1]["status"] == "1 of 2 doctors: Dr Carol Clark, report sent"
    done = status_of(admin, task_id)
    assert done["state"] == "SUCCESS" and done["current"] == done["total"] == 2
    assert done["result"] == {
        "month_year": "2026-10", "total": 2, "successful": 2, "failed": 0, "success_rate": 1.0,
        "sent": 2, "already_sent": 0,
        "summary": {"total": 2, "successful": 2, "failed": 0, "success_rate": 1.0},
        "results": [{"id": carol.id, "name": "Dr Carol Clark", "outcome": "sent", "error": ""},
                    {"id": dave.id, "name": "Dr Dave Davis", "outcome": "sent", "error": ""}]}
    assert done["status"] == ("October 2026: 2 reports sent, 0 already sent before (not sent "
                              "again), 0 failed.")
    assert Message.select().where(Message.kind == "monthly_report").count() == 2


def test_running_a_month_again_emails_nobody_twice_and_says_so(admin, queue, october):
    reports.send_monthly()  # the job on 1 November... here run on the 15th: October
    task_id = admin.post_json(URL, {"month_year": "2026-10"}).json()["task_id"]
    run_queued(queue)
    result = status_of(admin, task_id)["result"]
    assert {name: result[name] for name in ("month_year", "total", "successful", "failed",
                                            "success_rate", "sent", "already_sent")} == {
        "month_year": "2026-10", "total": 2, "successful": 2, "failed": 0, "success_rate": 1.0,
        "sent": 0, "already_sent": 2}
    assert [r["outcome"] for r in result["results"]] == ["already_sent", "already_sent"]
    assert Message.select().where(Message.kind == "monthly_report").count() == 2


def test_one_doctors_report_on_demand(admin, queue, october, carol, dave):
    body = admin.post_json(URL, {"month_year": "2026-09", "doctor_id": dave.id}).json()
    assert TaskRecord.get(TaskRecord.task_id == body["task_id"]).total == 1
    run_queued(queue)
    assert status_of(admin, body["task_id"])["result"]["sent"] == 1
    [report] = MonthlyReport.select()
    assert (report.doctor_id, report.month) == (dave.id, "2026-09")
    assert "You had no appointments" in Message.get().text_body


def test_a_failed_doctor_counts_as_failed_in_the_summary(admin, queue, october, carol, dave,
                                                         monkeypatch):
    enqueue = reports.outbox.enqueue

    def refuse_dave(kind, key, recipient, **kwargs):
        if recipient == dave.email:
            raise OSError("disk full")
        return enqueue(kind, key, recipient, **kwargs)

    monkeypatch.setattr(reports.outbox, "enqueue", refuse_dave)
    task_id = admin.post_json(URL, {"month_year": "2026-10"}).json()["task_id"]
    run_queued(queue)
    done = status_of(admin, task_id)
    assert done["state"] == "SUCCESS"
    result = done["result"]
    assert {name: result[name] for name in ("month_year", "total", "successful", "failed",
                                            "success_rate", "sent", "already_sent")} == {
        "month_year": "2026-10", "total": 2, "successful": 1, "failed": 1, "success_rate": 0.5,
        "sent": 1, "already_sent": 0}
    assert result["summary"] == {"total": 2, "successful": 1, "failed": 1, "success_rate": 0.5}
    assert result["results"] == [
        {"id": carol.id, "name": "Dr Carol Clark", "outcome": "sent", "error": ""},
        {"id": dave.id, "name": "Dr Dave Davis", "outcome": "failed",
         "error": "OSError: disk full"}]


def test_a_task_that_raises_ends_as_failure_with_the_reason(admin, erin, app):
    record = progress.create("monthly-reports", user=erin, total=2)
    with pytest.raises(ValueError):
        reports.make_monthly_reports.call_local(record.task_id, "October")
    failed = status_of(admin, record.task_id)
    assert failed["state"] == "FAILURE"
    assert failed["status"] == ("The reports could not be made: ValueError: Invalid isoformat "
                                "string: 'October-01'")
    assert failed["result"] is None


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload, message", [
    ({"month_year": "2026-13"}, "month_year must be YYYY-MM, e.g. 2026-10"),
    ({"month_year": "10/2026"}, "month_year must be YYYY-MM, e.g. 2026-10"),
    ({"month_year": 202610}, "month_year must be YYYY-MM, e.g. 2026-10"),
    ({}, "month_year must be YYYY-MM, e.g. 2026-10"),
    ({"month_year": "2026-11"}, "month_year must be a month that has ended, e.g. 2026-10"),
    ({"month_year": "2027-01"}, "month_year must be a month that has ended, e.g. 2026-10"),
    ({"month_year": "2026-10", "doctor_id": "7"}, "Expected an id (a whole number)."),
])
def test_a_bad_request_is_400_saying_what_is_expected(admin, queue, carol, payload, message):
    response = admin.post_json(URL, payload)
    assert response.status == 400, response
    assert response.json()["error"] == message
    assert TaskRecord.select().count() == 0 and queue.pending() == []


def test_an_unknown_or_inactive_doctor_is_404(admin, queue, alice, dave):
    for doctor_id in (alice.id, 999_999, dave.id):
        if doctor_id == dave.id:
            people.set_active(dave.id, False)
        response = admin.post_json(URL, {"month_year": "2026-10", "doctor_id": doctor_id})
        assert response.status == 404, response
        assert response.json() == {"error": "No active doctor has that id."}
    assert TaskRecord.select().count() == 0 and queue.pending() == []


def test_only_admins_start_reports(api_as, alice, carol, queue):
    for user in (alice, carol):
        response = api_as(user).post_json(URL, {"month_year": "2026-10"})
        assert response.status == 403, response
    assert queue.pending() == []


# -- who may read a task --------------------------------------------------------------------------


def test_another_patient_or_doctor_cannot_read_a_task_but_its_owner_and_admins_can(
        api_as, alice, bob, carol, erin):
    alices = progress.create("export-history", user=alice, total=3)
    ericas = people.create_admin("erica@example.com", "password123", "Erica Admin")
    for reader in (alice, erin, ericas):
        assert status_of(api_as(reader), alices.task_id)["name"] == "export-history"
    for stranger in (bob, carol):
        response = api_as(stranger).get(f"/api/tasks/{alices.task_id}")
        assert response.status == 404, response
        assert response.json() == {"error": "No such task."}


def test_an_admins_report_task_is_hidden_from_patients_and_doctors(admin, api_as, alice, carol,
                                                                  queue):
    task_id = admin.post_json(URL, {"month_year": "2026-10"}).json()["task_id"]
    for user in (alice, carol):
        assert api_as(user).get(f"/api/tasks/{task_id}").status == 404


def test_an_unknown_task_is_404(admin):
    for task_id in ("0" * 32, "x" * 500, "%00"):
        response = admin.get(f"/api/tasks/{task_id}")
        assert response.status == 404, response
        assert response.json()["error"]


def test_reading_a_task_needs_signing_in(client, erin):
    record = progress.create("monthly-reports", user=erin)
    assert client.get(f"/api/tasks/{record.task_id}").status == 401
