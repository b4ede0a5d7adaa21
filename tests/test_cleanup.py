"""The weekly clean-up (cleanup.run): old email bodies, expired exports, old task records and
sign-ins go; old appointments are archived; clinical records are never deleted."""

import sys
from datetime import timedelta

import pytest

import clinic
from clinic import cleanup, clock, settings
from clinic.jobs import scheduler
from clinic.models import (
    Appointment,
    Export,
    JobState,
    Message,
    Session,
    TaskRecord,
    TaskRun,
    Treatment,
)

ATTACHMENT = [{"filename": "invite.ics", "content_type": "text/calendar", "text": "BEGIN"}]


def email(key, status, days_ago, now):
    at = now - timedelta(days=days_ago)
    return Message.create(key=key, kind="test", recipient="alice@example.com",
                          subject=f"Subject {key}", text_body="Hello", html_body="<p>Hello</p>",
                          attachments=ATTACHMENT, message_id=f"<{key}@localhost>",
                          status=status, created_at=at, updated_at=at,
                          sent_at=at if status == "sent" else None)


def reload(row):
    return type(row).get_by_id(row.id)


def has_body(message):
    message = reload(message)
    return bool(message.text_body or message.html_body or message.attachments)


def visit(patient, doctor, start, status="completed"):
    return Appointment.create(patient=patient, doctor=doctor, start=start,
                              end=start + timedelta(minutes=30), status=status,
                              updated_at=start + timedelta(hours=1))


def test_bodies_of_old_sent_and_failed_emails_go_and_the_record_stays(app):
    now = clock.now()
    old_sent = email("sent:old", "sent", 91, now)
    new_sent = email("sent:new", "sent", 89, now)
    old_failed = email("failed:old", "failed", 31, now)
    new_failed = email("failed:new", "failed", 29, now)
    old_pending = email("pending:old", "pending", 200, now)
    old_skipped = email("skipped:old", "skipped", 200, now)
    result = cleanup.run(now=now)
    assert (result["sent_bodies"], result["failed_bodies"]) == (1, 1)
    assert not has_body(old_sent) and not has_body(old_failed)
    assert all(map(has_body, (new_sent, new_failed, old_pending, old_skipped)))
    kept = reload(old_sent)
    assert (kept.subject, kept.status, kept.recipient) == ("Subject sent:old", "sent",
                                                           "alice@example.com")
    assert (kept.sent_at, kept.updated_at, kept.created_at) == (
        old_sent.sent_at, old_sent.updated_at, old_sent.created_at)
    assert Message.select().count() == 6


def test_work_is_done_in_batches_until_none_is_left(app):
    now = clock.now()
    messages = [email(f"sent:{n}", "sent", 100, now) for n in range(7)]
    assert cleanup.run(now=now, batch=3)["sent_bodies"] == 7
    assert not any(map(has_body, messages))


def test_a_second_run_finds_nothing_to_do(app, alice, carol):
    now = clock.now()
    email("sent:old", "sent", 100, now)
    visit(alice, carol, now - timedelta(days=400))
    TaskRecord.create(task_id="t1", name="export", created_at=now - timedelta(days=31))
    first = cleanup.run(now=now)
    assert (first["sent_bodies"], first["task_records"], first["archived"]) == (1, 1, 1)
    again = cleanup.run(now=now)
    assert again.pop("exports") in (0, "skipped")  # "skipped" where clinic/exports.py is absent
    assert again == {"sent_bodies": 0, "failed_bodies": 0, "task_records": 0, "task_runs": 0,
                     "sessions": 0, "archived": 0}


def test_task_records_older_than_30_days_are_deleted(app, alice):
    now = clock.now()
    old = TaskRecord.create(task_id="old", name="export", user=alice,
                            created_at=now - timedelta(days=30, minutes=1))
    recent = TaskRecord.create(task_id="recent", name="export", user=alice,
                               created_at=now - timedelta(days=29))
    assert cleanup.run(now=now)["task_records"] == 1
    assert TaskRecord.get_or_none(TaskRecord.id == old.id) is None
    assert TaskRecord.get_or_none(TaskRecord.id == recent.id) is not None


def test_task_runs_older_than_30_days_are_deleted(app):
    now = clock.now()
    TaskRun.create(task_id="old", job="cleanup", task="clinic.jobs.scheduler.run_job",
                   queued_at=now - timedelta(days=31))
    TaskRun.create(task_id="recent", job="cleanup", task="clinic.jobs.scheduler.run_job",
                   queued_at=now - timedelta(days=29))
    assert cleanup.run(now=now)["task_runs"] == 1
    assert [run.task_id for run in TaskRun.select()] == ["recent"]


def test_expired_sign_ins_are_deleted(app, alice):
    now = clock.now()
    Session.create(token_hash="a" * 64, user=alice, expires_at=now - timedelta(minutes=1))
    live = Session.create(token_hash="b" * 64, user=alice, expires_at=now + timedelta(days=1))
    assert cleanup.run(now=now)["sessions"] == 1
    assert [s.id for s in Session.select()] == [live.id]


def test_expired_export_files_and_links_are_purged(app, alice):
    pytest.importorskip("clinic.exports")
    now = clock.now()
    folder = settings.get().data_path / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "old.csv").write_text("Patient ID\n")
    (folder / "new.csv").write_text("Patient ID\n")
    old = Export.create(patient=alice, task_id="old", filename="old.csv",
                        expires_at=now - timedelta(hours=1))
    new = Export.create(patient=alice, task_id="new", filename="new.csv",
                        expires_at=now + timedelta(hours=1))
    assert cleanup.run(now=now)["exports"] == 1
    assert not (folder / "old.csv").exists() and reload(old).deleted
    assert (folder / "new.csv").exists() and not reload(new).deleted


def test_without_the_exports_module_that_step_is_skipped(app, monkeypatch):
    monkeypatch.delattr(clinic, "exports", raising=False)
    monkeypatch.setitem(sys.modules, "clinic.exports", None)  # as if it did not exist
    assert cleanup.run()["exports"] == "skipped"


def test_appointments_older_than_a_year_are_archived_and_keep_their_times(app, alice, bob,
                                                                           carol):
    now = clock.now()
    old = visit(alice, carol, now - timedelta(days=366))
    old_no_show = visit(bob, carol, now - timedelta(days=500), "no_show")
    recent = visit(alice, carol, now - timedelta(days=364))
    assert cleanup.run(now=now)["archived"] == 2
    assert reload(old).archived and reload(old_no_show).archived
    assert not reload(recent).archived
    assert reload(old).updated_at == old.updated_at
    assert reload(old_no_show).status == "no_show"


def test_clinical_records_are_never_deleted(app, alice, bob, carol, dave):
    now = clock.now()
    visits = []
    for n in range(12):
        start = now - timedelta(days=400 + 100 * n)
        appointment = visit(alice if n % 2 else bob, carol if n % 3 else dave, start,
                            ("completed", "cancelled", "no_show")[n % 3])
        if appointment.status == "completed":
            Treatment.create(appointment=appointment, visit_type="Check-up",
                             diagnosis=f"Diagnosis {n}", created_at=start)
        Message.create(key=f"confirmation:{n}", kind="confirmation", recipient="a@example.com",
                       subject="Booked", text_body="x", message_id=f"<{n}@localhost>",
                       appointment=appointment, status="sent", sent_at=start,
                       created_at=start, updated_at=start)
        visits.append(appointment)
    treatments = {t.appointment_id: t.diagnosis for t in Treatment.select()}
    result = cleanup.run(now=now + timedelta(days=3650), batch=5)
    assert result["archived"] == 12 and result["sent_bodies"] == 12
    assert Appointment.select().count() == 12
    assert {a.id: a.status for a in Appointment.select()} == {v.id: v.status for v in visits}
    assert {t.appointment_id: t.diagnosis for t in Treatment.select()} == treatments
    assert len(treatments) == 4
    # The messages stay linked to their visits too.
    assert Message.select().where(Message.appointment.is_null()).count() == 0


def test_the_cleanup_job_runs_it_and_records_the_counts(app):
    now = clock.now()
    email("sent:old", "sent", 100, now)
    result = scheduler.run("cleanup", now=now)
    assert result["sent_bodies"] == 1
    assert JobState.get_by_id("cleanup").last_result.startswith("sent_bodies 1, failed_bodies 0")
