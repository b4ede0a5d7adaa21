"""The audit log (clinic/audit.py): every view or export of a patient's history and every access
refused is written down with who, role, patient, action, time, address and outcome; the admin
reads and filters it; nothing can change or delete it, the database included."""

import re
from datetime import datetime, timedelta

import pytest
from peewee import DatabaseError

from clinic import audit, cleanup, clock, db, exports
from clinic.models import Appointment, AuditEntry, Treatment, User
from tests.conftest import TZ, login

ADDRESS = "127.0.0.1"  # the test client's
WHO = ("user_id", "user_name", "role", "patient_id", "patient_name", "action", "outcome",
       "reason", "address", "path")


def completed_visit(patient, doctor, days_ago=3):
    """A past visit with its treatment: the patient is the doctor's, and has a history."""
    start = clock.now() - timedelta(days=days_ago)
    appointment = Appointment.create(patient=patient.id, doctor=doctor.id, start=start,
                                     end=start + timedelta(minutes=30), status="completed")
    Treatment.create(appointment=appointment.id, visit_type="Consultation",
                     diagnosis="Benign ectopic beats")
    return appointment


def logged():
    return list(AuditEntry.select().order_by(AuditEntry.id))


def summary(entry):
    return {name: getattr(entry, name) for name in WHO}


def entry_for(user, patient, action, path, outcome="allowed", reason=""):
    return {"user_id": user.id, "user_name": user.name, "role": user.role,
            "patient_id": patient.id if patient else None,
            "patient_name": patient.name if patient else "", "action": action,
            "outcome": outcome, "reason": reason, "address": ADDRESS, "path": path}


@pytest.fixture
def browser(new_client):
    """A browser signed in as ``user``, with the CSRF token of its new session."""

    def signed_in(user):
        visitor = new_client()
        login(visitor, user)
        visitor.get({"patient": "/patient", "doctor": "/doctor", "admin": "/admin/doctors"}[
            user.role])
        return visitor

    return signed_in


@pytest.fixture
def caller(new_client):
    """An API client signed in with a bearer token as ``user``."""

    def signed_in(user):
        visitor = new_client()
        visitor.api_login(user.email)
        return visitor

    return signed_in


# -- views of a history -------------------------------------------------------------------------


def test_a_patient_reading_her_own_history_is_logged(browser, alice, carol):
    completed_visit(alice, carol)
    visitor = browser(alice)
    before = clock.now()
    assert visitor.get("/patient/history").status == 200
    [entry] = logged()
    assert summary(entry) == entry_for(alice, alice, "view history", "GET /patient/history")
    assert before - timedelta(seconds=1) <= entry.at <= clock.now()


def test_a_doctor_opening_a_patients_record_is_logged(browser, alice, carol):
    completed_visit(alice, carol)
    response = browser(carol).get(f"/doctor/patients/{alice.id}")
    assert response.status == 200 and "Benign ectopic beats" in response.text
    assert [summary(e) for e in logged()] == [
        entry_for(carol, alice, "view history", f"GET /doctor/patients/{alice.id}")]


def test_an_admin_opening_a_patient_is_logged(browser, alice, carol, erin):
    completed_visit(alice, carol)
    assert browser(erin).get(f"/admin/patients/{alice.id}").status == 200
    assert [summary(e) for e in logged()] == [
        entry_for(erin, alice, "view history", f"GET /admin/patients/{alice.id}")]


def test_the_history_api_is_logged(caller, alice, carol):
    completed_visit(alice, carol)
    response = caller(carol).get(f"/api/patients/{alice.id}/history")
    assert response.status == 200 and response.json()["visits"]
    assert [summary(e) for e in logged()] == [
        entry_for(carol, alice, "view history", f"GET /api/patients/{alice.id}/history")]


def test_the_name_is_kept_as_it_was_at_the_time(browser, alice, carol):
    completed_visit(alice, carol)
    browser(carol).get(f"/doctor/patients/{alice.id}")
    User.update(name="Dr Carol Clark-Smith").where(User.id == carol.id).execute()
    assert logged()[0].user_name == "Dr Carol Clark"


# -- exports ------------------------------------------------------------------------------------


def test_starting_an_export_and_downloading_it_are_logged(browser, alice, carol):
    completed_visit(alice, carol)
    visitor = browser(alice)
    assert visitor.post("/patient/history/export").status == 303
    [export] = exports.Export.select()
    exports.build(export.task_id)
    download = f"/patient/exports/{export.task_id}/download"
    response = visitor.get(download)
    assert response.status == 200 and b"Benign ectopic beats" in response.body
    assert [summary(e) for e in logged()] == [
        entry_for(alice, alice, "export history", "POST /patient/history/export"),
        entry_for(alice, alice, "download export", f"GET {download}"),
    ]


def test_an_export_started_through_the_api_is_logged(caller, alice):
    assert caller(alice).post_json("/api/patient/export-history").status == 202
    assert [summary(e) for e in logged()] == [
        entry_for(alice, alice, "export history", "POST /api/patient/export-history")]


def test_someone_elses_export_is_refused_and_logged(browser, alice, bob, carol):
    completed_visit(alice, carol)
    record, _ = exports.start(alice)
    exports.build(record.task_id)
    download = f"/patient/exports/{record.task_id}/download"
    assert browser(bob).get(download).status == 404
    assert [summary(e) for e in logged()] == [
        entry_for(bob, alice, "view export", f"GET {download}", "refused",
                  f"may not see export {record.task_id}")]


# -- refusals -----------------------------------------------------------------------------------


def test_bob_asking_for_alices_appointment_is_refused_and_logged(browser, caller, alice, bob,
                                                                  carol):
    appointment = completed_visit(alice, carol)
    page = f"/patient/appointments/{appointment.id}"
    assert browser(bob).get(page).status == 404
    api = caller(bob)
    assert api.get(f"/api/appointments/{appointment.id}").status == 404
    assert api.post_json(f"/api/appointments/{appointment.id}/cancel").status == 404
    reason = f"may not see appointment {appointment.id}"
    assert [summary(e) for e in logged()] == [
        entry_for(bob, alice, "view appointment", f"GET {page}", "refused", reason),
        entry_for(bob, alice, "view appointment", f"GET /api/appointments/{appointment.id}",
                  "refused", reason),
        entry_for(bob, alice, "change appointment",
                  f"POST /api/appointments/{appointment.id}/cancel", "refused", reason),
    ]


def test_bob_asking_for_alices_history_is_refused_and_logged_once(caller, alice, bob, carol):
    completed_visit(alice, carol)
    response = caller(bob).get(f"/api/patients/{alice.id}/history")
    assert response.status == 404 and "Benign" not in response.text
    assert [summary(e) for e in logged()] == [
        entry_for(bob, alice, "view history", f"GET /api/patients/{alice.id}/history",
                  "refused", f"may not see patient {alice.id}")]


def test_a_doctor_asking_for_a_patient_who_is_not_hers_is_refused_and_logged(browser, alice,
                                                                            bob, carol, dave):
    completed_visit(bob, dave)
    visitor = browser(carol)
    assert visitor.get(f"/doctor/patients/{bob.id}").status == 404
    assert visitor.get("/doctor/patients/999999").status == 404
    assert [summary(e) for e in logged()] == [
        entry_for(carol, bob, "view history", f"GET /doctor/patients/{bob.id}", "refused",
                  f"may not see patient {bob.id}"),
        entry_for(carol, None, "view history", "GET /doctor/patients/999999", "refused",
                  "no patient 999999"),
    ]


def test_a_patient_calling_an_admin_api_or_page_is_refused_and_logged(browser, caller, alice,
                                                                      bob):
    assert caller(alice).get("/api/admin/dashboard-stats").status == 403
    assert browser(alice).get(f"/admin/patients/{bob.id}").status == 403
    assert [summary(e) for e in logged()] == [
        entry_for(alice, None, "call API", "GET /api/admin/dashboard-stats", "refused",
                  "patients may not use this API"),
        entry_for(alice, bob, "open page", f"GET /admin/patients/{bob.id}", "refused",
                  "patients may not use this page"),
    ]


def test_what_is_not_a_refusal_is_not_logged(browser, new_client, alice):
    visitor = browser(alice)
    assert visitor.get("/patient/doctors/999999").status == 404  # no such doctor: not a record
    assert visitor.get("/patient/appointments/12x").status == 404  # not an id at all
    anonymous = new_client()
    assert anonymous.get("/patient/history").status == 303  # sent to sign in
    assert anonymous.get(f"/api/patients/{alice.id}/history").status == 401
    assert logged() == []


# -- the admin's page ---------------------------------------------------------------------------


def at(*args):
    return datetime(*args, tzinfo=TZ)


@pytest.fixture
def log(alice, bob, carol, erin):
    """Four entries over three days, oldest first."""
    return [
        audit.record(carol, "view history", alice.id, address="10.0.0.1",
                     path=f"GET /doctor/patients/{alice.id}", now=at(2031, 3, 10, 9)),
        audit.record(bob, "view appointment", alice.id, "refused", "may not see appointment 7",
                     address="10.0.0.2", path="GET /patient/appointments/7",
                     now=at(2031, 3, 11, 9)),
        audit.record(alice, "export history", alice.id, address="10.0.0.3",
                     path="POST /patient/history/export", now=at(2031, 3, 11, 23, 59)),
        audit.record(erin, "view history", bob.id, address="10.0.0.4",
                     path=f"GET /admin/patients/{bob.id}", now=at(2031, 3, 12, 0, 0)),
    ]


def shown(page):
    """The ids of the entries a page lists, in order."""
    return [int(n) for n in re.findall(r'<tr id="entry-(\d+)"', page)]


def test_the_admin_reads_the_log_newest_first(browser, erin, log):
    response = browser(erin).get("/admin/audit")
    assert response.status == 200
    assert shown(response.text) == [e.id for e in reversed(log)]
    page = response.text
    assert "Dr Carol Clark" in page and "10.0.0.2" in page and "may not see appointment 7" in page
    assert "Wed 12 Mar 2031, 00:00:00" in page  # clinic time
    assert 'href="/admin/audit">Audit</a>' in page  # the menu
    assert "<form method=\"post\"" not in page.split("<main>")[1]  # nothing to change here


@pytest.mark.parametrize(("query", "expected"), [
    ("patient=alice", [2, 1, 0]),
    ("patient=ADAMS", [2, 1, 0]),
    ("user=carol", [0]),
    ("action=view+history", [3, 0]),
    ("outcome=refused", [1]),
    ("outcome=allowed&patient=alice", [2, 0]),
    ("from=2031-03-11&to=2031-03-11", [2, 1]),
    ("from=2031-03-12", [3]),
    ("to=2031-03-10", [0]),
])
def test_the_admin_filters_the_log(browser, erin, log, query, expected):
    response = browser(erin).get(f"/admin/audit?{query}")
    assert response.status == 200
    assert shown(response.text) == [log[i].id for i in expected]


def test_the_admin_filters_by_number(browser, alice, erin, log):
    visitor = browser(erin)
    assert shown(visitor.get(f"/admin/audit?patient={alice.id}").text) == [
        log[2].id, log[1].id, log[0].id]
    assert shown(visitor.get(f"/admin/audit?user={erin.id}").text) == [log[3].id]


def test_a_bad_filter_says_what_is_wrong(browser, erin, log):
    response = browser(erin).get("/admin/audit?from=yesterday&outcome=maybe")
    assert response.status == 400
    assert "Enter a date as YYYY-MM-DD." in response.text
    assert "Choose allowed or refused." in response.text


def test_the_log_is_paged(browser, erin, alice):
    for n in range(30):
        audit.record(erin, "view history", alice.id, now=at(2031, 3, 1) + timedelta(minutes=n))
    visitor = browser(erin)
    first = visitor.get("/admin/audit").text
    assert len(shown(first)) == 25 and 'rel="next"' in first
    second = visitor.get("/admin/audit?page=2").text
    assert len(shown(second)) == 5 and 'rel="next"' not in second
    assert not set(shown(first)) & set(shown(second))


def test_only_admins_read_the_log_and_a_refusal_is_itself_logged(browser, alice, carol):
    for user in (alice, carol):
        assert browser(user).get("/admin/audit").status == 403
    assert [summary(e) for e in logged()] == [
        entry_for(alice, None, "open page", "GET /admin/audit", "refused",
                  "patients may not use this page"),
        entry_for(carol, None, "open page", "GET /admin/audit", "refused",
                  "doctors may not use this page"),
    ]


# -- nothing changes it -------------------------------------------------------------------------


def test_the_database_refuses_to_change_or_delete_an_entry(log):
    attempts = [
        lambda: AuditEntry.update(outcome="allowed").where(AuditEntry.id == log[1].id).execute(),
        lambda: AuditEntry.delete().where(AuditEntry.id == log[1].id).execute(),
        lambda: AuditEntry.delete().execute(),
        lambda: db.database.execute_sql("UPDATE audit_entry SET user_name = 'nobody'"),
    ]
    if db.is_postgres():  # SQLite has no TRUNCATE
        attempts.append(lambda: db.database.execute_sql("TRUNCATE audit_entry"))
    for attempt in attempts:
        with (pytest.raises(DatabaseError, match="the audit log cannot be changed"),
              db.database.atomic()):
            attempt()
    assert [summary(e) for e in logged()] == [summary(e) for e in log]


def test_the_clean_up_leaves_the_log_alone(log):
    done = cleanup.run(now=at(2040, 1, 1))
    assert "audit" not in " ".join(done)
    assert [summary(e) for e in logged()] == [summary(e) for e in log]
