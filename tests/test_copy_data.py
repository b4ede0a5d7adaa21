"""`python run.py copy-data --to postgresql://...`: an SQLite clinic moves into PostgreSQL with
every row, id and value kept, and the clinic then runs on PostgreSQL. Needs PostgreSQL (skipped
without it; failed in CI)."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from peewee import sort_models

from clinic import appointments, clock, db, reviews, stats, transfer
from clinic.jobs import progress, scheduler
from clinic.models import MODELS, Appointment, User, table_name
from clinic.web import create_app
from tests import backends
from tests.conftest import slot

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.sqlite_only("the source of the copy is an SQLite clinic")


@pytest.fixture
def postgres_url():
    backends.require(backends.POSTGRES)
    with backends.postgres_schema() as url:
        yield url


def rows(database):
    """Every row of every table, as the models read them (ids, booleans, instants, JSON), in
    the order of each table's primary key (every model's first field)."""
    return {table_name(model): sorted(model.select().dicts().execute(database),
                                      key=lambda row: next(iter(row.values())))
            for model in sort_models(MODELS)}


@pytest.fixture
def clinic(app, alice, bob, carol, erin):
    """A clinic with a little of everything: a completed visit with its treatment and review, a
    cancelled booking whose slot was booked again, emails, daily figures, a task record, the
    scheduler's lease and a deactivated account."""
    now = clock.now()
    past = appointments.book(alice.id, carol.id, slot(-2, "10:00"), "Check-up",
                             now=now - timedelta(days=3))
    appointments.complete(past, carol, {"visit_type": "Check-up", "diagnosis": "Fine"},
                          now=past.start + timedelta(minutes=30))
    reviews.submit(reviews.review_url(past.id, now).rsplit("/", 1)[1], 5, "ok",
                   now=past.start + timedelta(hours=1))
    cancelled = appointments.book(alice.id, carol.id, slot(1, "10:00"), "Cough")
    appointments.cancel(cancelled, alice)
    appointments.book(bob.id, carol.id, slot(1, "10:00"), "Same slot, booked again")
    stats.record_day(now)
    progress.create("monthly-reports", user=erin, total=2)
    scheduler.hold_scheduler("old-host pid 7", now)
    User.update(active=False).where(User.id == bob.id).execute()
    return {"alice": alice, "carol": carol}


def test_every_row_arrives_with_its_id_and_values_and_the_clinic_runs_on_postgresql(
        clinic, clinic_settings, client, postgres_url):
    source = db.database.obj
    before = rows(source)
    assert all(before[table] for table in ("user", "appointment", "treatment", "message",
                                           "review", "doctor_rating", "daily_stat", "job_state"))

    counts = transfer.copy(clinic_settings.database_url, postgres_url, batch=7)

    assert counts == {table: len(found) for table, found in before.items()}
    create_app(clinic_settings.replace(database_url=postgres_url))
    assert db.is_postgres()
    db.database.connect(reuse_if_open=True)
    assert rows(db.database.obj) == before

    # The web app (the running test server) now reads PostgreSQL: alice signs in and sees her
    # visits, and a new booking takes the next id.
    client.api_login("alice@example.com")
    listed = client.get("/api/appointments").json()
    assert {a["id"] for a in listed["appointments"]} == {
        a["id"] for a in before["appointment"] if a["patient"] == clinic["alice"].id}
    booked = client.post_json("/api/appointments", {"doctor_id": clinic["carol"].id,
                                                     "start": slot(2, "11:00").isoformat()})
    assert booked.status == 201, booked
    assert booked.json()["id"] == max(a["id"] for a in before["appointment"]) + 1
    taken = client.post_json("/api/appointments", {"doctor_id": clinic["carol"].id,
                                                    "start": slot(2, "11:00").isoformat()})
    assert taken.status == 409  # the partial unique index came along


def test_a_target_with_data_is_refused(clinic, clinic_settings, postgres_url):
    transfer.copy(clinic_settings.database_url, postgres_url)
    with pytest.raises(transfer.TransferError, match="already holds data"):
        transfer.copy(clinic_settings.database_url, postgres_url)


def test_a_copy_that_fails_leaves_the_target_empty_and_names_the_table(clinic, clinic_settings,
                                                                      postgres_url):
    # SQLite keeps text longer than its column allows; PostgreSQL refuses it.
    Appointment.update(status="x" * 11).where(Appointment.id == 1).execute()
    with pytest.raises(transfer.TransferError, match=r"cannot copy appointment rows 1\.\.\d+"):
        transfer.copy(clinic_settings.database_url, postgres_url)
    target = db.open_database(postgres_url)
    with target.connection_context():
        assert not any(model.select().exists(target) for model in MODELS)


def test_the_command_moves_the_demo_clinic(tmp_path, postgres_url):
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path / "data"), "CLINIC_TIMEZONE": "UTC"}
    env.pop("CLINIC_DATABASE_URL", None)
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert run("demo").returncode == 0

    done = run("copy-data", "--to", postgres_url, "--batch", "50")

    assert done.returncode == 0, done.stderr
    assert "every table's row count matches the source" in done.stdout
    assert f"CLINIC_DATABASE_URL={postgres_url}" in done.stdout
    source = db.open_database(f"sqlite:///{tmp_path / 'data' / 'clinic.db'}")
    target = db.open_database(postgres_url)
    with source.connection_context(), target.connection_context():
        for model in MODELS:
            assert model.select().count(target) == model.select().count(source), model
        assert Appointment.select().count(target) > 100
    again = run("copy-data", "--to", postgres_url)
    assert again.returncode == 1 and "already holds data" in again.stderr
