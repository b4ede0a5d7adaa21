"""The no-shows job (appointments.mark_no_shows): visits still booked or confirmed an hour after
their start become no-shows, in one UPDATE, on a real database."""

import logging
from datetime import timedelta

from clinic import appointments, clock, db, settings
from clinic.jobs import scheduler
from clinic.models import Appointment, JobState


def visit(patient, doctor, start, status="booked"):
    return Appointment.create(patient=patient, doctor=doctor, start=start,
                              end=start + timedelta(minutes=30), status=status)


def status_of(appointment):
    return Appointment.get_by_id(appointment.id).status


def test_visits_still_open_an_hour_after_their_start_become_no_shows(app, alice, bob, carol):
    now = clock.now()
    booked = visit(alice, carol, now - timedelta(hours=2))
    confirmed = visit(bob, carol, now - timedelta(hours=1, minutes=1), "confirmed")
    assert appointments.mark_no_shows(now=now) == {"marked": 2}
    assert status_of(booked) == status_of(confirmed) == "no_show"
    assert Appointment.get_by_id(booked.id).updated_at == now


def test_visits_within_the_grace_hour_or_ahead_are_left_booked(app, alice, bob, carol, dave):
    now = clock.now()
    just_started = visit(alice, carol, now - timedelta(minutes=59))
    # With another doctor: one doctor's visits may not overlap (PostgreSQL refuses it).
    on_the_hour = visit(bob, dave, now - timedelta(hours=1))
    ahead = visit(alice, carol, now + timedelta(hours=1))
    assert appointments.mark_no_shows(now=now) == {"marked": 0}
    assert {status_of(a) for a in (just_started, on_the_hour, ahead)} == {"booked"}


def test_completed_and_cancelled_visits_are_never_marked(app, alice, bob, carol):
    now = clock.now()
    completed = visit(alice, carol, now - timedelta(hours=3), "completed")
    cancelled = visit(bob, carol, now - timedelta(hours=3), "cancelled")
    assert appointments.mark_no_shows(now=now) == {"marked": 0}
    assert (status_of(completed), status_of(cancelled)) == ("completed", "cancelled")


def test_a_second_run_marks_nothing_more(app, alice, carol):
    now = clock.now()
    visit(alice, carol, now - timedelta(hours=2))
    assert appointments.mark_no_shows(now=now) == {"marked": 1}
    assert appointments.mark_no_shows(now=now + timedelta(minutes=15)) == {"marked": 0}


def test_the_grace_period_is_the_no_show_after_setting(app, alice, carol):
    settings.use(settings.get().replace(no_show_after=timedelta(hours=3)))
    now = clock.now()
    late = visit(alice, carol, now - timedelta(hours=2))
    assert appointments.mark_no_shows(now=now) == {"marked": 0}
    assert appointments.mark_no_shows(now=now + timedelta(hours=1, seconds=1)) == {"marked": 1}
    assert status_of(late) == "no_show"


def test_the_setting_is_read_from_the_environment(tmp_path):
    loaded = settings.load(environ={"CLINIC_NO_SHOW_AFTER": "90m"}, data_dir=str(tmp_path))
    assert loaded.no_show_after == timedelta(minutes=90)
    assert settings.load(environ={}, data_dir=str(tmp_path)).no_show_after == timedelta(hours=1)


def test_the_update_is_one_statement_served_by_the_status_start_index(app, backend, alice, carol,
                                                                     caplog):
    visit(alice, carol, clock.now() - timedelta(hours=2))
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        appointments.mark_no_shows()
    statements = [r.msg for r in caplog.records if r.name == "peewee"]
    assert len(statements) == 1
    sql, params = statements[0]
    assert sql.startswith("UPDATE")
    if backend != "sqlite":
        return  # the plan below is SQLite's; PostgreSQL's planner scans tables this small
    plan = " ".join(str(row) for row in db.database.execute_sql("EXPLAIN QUERY PLAN " + sql,
                                                                params))
    assert "appointment_status_start" in plan


def test_the_no_shows_job_runs_it_and_records_what_it_did(app, alice, carol):
    now = clock.now()
    visit(alice, carol, now - timedelta(hours=2))
    assert scheduler.run("no-shows", now=now) == {"marked": 1}
    assert JobState.get_by_id("no-shows").last_result == "marked 1"


def test_a_doctor_can_still_complete_a_visit_the_job_marked_as_missed(app, alice, carol):
    from clinic import appointments
    from clinic.models import Appointment, Treatment
    from tests.conftest import slot

    booked_at = slot(-1, "08:00") - timedelta(days=1)
    start = slot(1, "10:00", now=booked_at)
    appointment = appointments.book(alice.id, carol.id, start, now=booked_at)
    assert appointments.mark_no_shows(now=start + timedelta(hours=2)) == {"marked": 1}
    late_evening = start + timedelta(hours=9)
    done = appointments.complete(Appointment.get_by_id(appointment.id), carol,
                                 {"visit_type": "Consultation"}, now=late_evening)
    assert done.status == "completed"
    assert Treatment.get(Treatment.appointment == appointment.id).visit_type == "Consultation"
