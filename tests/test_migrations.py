"""The schema comes from clinic/migrations/; these tests keep it and clinic/models.py in step,
and show an existing database upgrades in place."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from peewee import SqliteDatabase, Table

from clinic import db
from clinic.models import MODELS
from tests import backends

ROOT = Path(__file__).resolve().parent.parent


def _schema(database):
    tables = {}
    for table in database.get_tables():
        # The migrations' own record, and Huey's tables when the queue shares the schema.
        if table == "schema_migration" or table.startswith("huey_"):
            continue
        tables[table] = {c.name: (c.data_type.upper(), c.null) for c in database.get_columns(table)}
    return tables


def _indexes(database):
    return {(t, tuple(i.columns), i.unique) for t in database.get_tables()
            for i in database.get_indexes(t)}


@contextlib.contextmanager
def _empty_database(backend, tmp_path):
    """A second, empty database on the same engine as the test's."""
    if backend == backends.SQLITE:
        yield SqliteDatabase(str(tmp_path / "reference.db"))
        return
    with backends.postgres_schema() as url:
        reference = db.open_database(url)
        try:
            yield reference
        finally:
            reference.close()


def test_migrations_build_exactly_the_schema_the_models_describe(app, backend, tmp_path):
    migrated = _schema(db.database.obj)
    with _empty_database(backend, tmp_path) as reference, reference.bind_ctx(MODELS):
        reference.create_tables(MODELS)
        assert migrated == _schema(reference)
        # Every index the models declare exists (the migrations may add more, like the partial
        # one).
        assert _indexes(reference) <= _indexes(db.database.obj)


def test_the_slot_index_is_partial_and_unique(app):
    index = next(i for i in db.database.get_indexes("appointment")
                 if i.name == "appointment_slot_taken")
    assert index.unique and "WHERE" in index.sql.upper() and "'cancelled'" in index.sql
    assert index.columns == ["doctor_id", "start"]


def test_migrating_again_changes_nothing(app):
    assert db.migrate() == []
    assert db.pending_migrations() == []


def test_an_existing_database_upgrades_in_place(clinic_settings):
    """Apply the first migration, store data, then run start-up's migrate(): every later
    migration applies and the data is still there."""
    from clinic.web import create_app

    create_app(clinic_settings)
    with db.database.connection_context():
        runner = db.runner()
        first = runner.migrations()[0].name
        runner.up(target=first)
        db.database.execute_sql(
            'INSERT INTO "user" (email, name, role, password_hash, active, created_at) '
            "VALUES ('old@example.com', 'Old Patient', 'patient', 'x', TRUE, "
            "'2020-01-01 00:00:00')")
    applied = db.migrate()
    assert first not in applied
    assert applied == [m.name for m in db.runner().migrations()][1:]
    with db.database.connection_context():
        assert db.database.execute_sql('SELECT name FROM "user"').fetchall() == [("Old Patient",)]


def test_processes_starting_together_migrate_once(clinic_settings):
    """Web and workers started at the same moment (a machine booting) each migrate at start: one
    does the work, the others wait for it and find nothing to do. Covers the queue's own tables
    too (Huey's, on PostgreSQL)."""
    env = {**os.environ, **backends.environ(clinic_settings)}
    starts = [subprocess.Popen([sys.executable, "run.py", "migrate"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(4)]
    outputs = [start.communicate(timeout=120)[0] for start in starts]
    assert [start.returncode for start in starts] == [0] * 4, outputs
    assert sum(out.startswith("Applied: ") for out in outputs) == 1, outputs
    assert sum("up to date" in out for out in outputs) == 3, outputs


@pytest.mark.parametrize("old, module, name", [
    ("clinic.tasks.run_job", "clinic.jobs.scheduler", "run_job"),
    ("clinic.tasks.send_messages", "clinic.mail.delivery", "send_messages"),
])
def test_runs_recorded_under_the_old_task_names_take_the_new_ones(clinic_settings, old, module,
                                                                   name):
    """The tasks left clinic/tasks.py for the modules whose work they do: a run recorded before
    the move names its task as Huey has it registered now, so Retry still finds it."""
    import importlib

    from clinic.models import TaskRun
    from clinic.web import create_app

    create_app(clinic_settings)
    with db.database.connection_context():
        runner = db.runner()
        before = [m.name for m in runner.migrations()]
        runner.up(target=before[before.index("0007_task_names") - 1])
        row = {"task_id": "t1", "job": name, "task": old, "summary": "", "progress_id": "",
               "state": "failed", "queued_at": "2026-01-01 00:00:00", "attempt": 1,
               "error": "boom", "traceback": "", "worker": ""}
        Table("task_run", tuple(row)).bind(db.database).insert(**row).execute()
    assert "0007_task_names" in db.migrate()
    declared = type(getattr(importlib.import_module(module), name).s())  # as Huey registered it
    with db.database.connection_context():
        assert (TaskRun.get(TaskRun.task_id == "t1").task
                == f"{declared.__module__}.{declared.__name__}" == f"{module}.{name}")
