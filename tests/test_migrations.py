"""The schema comes from clinic/migrations/; these tests keep it and clinic/models.py in step,
and show an existing database upgrades in place."""

from peewee import SqliteDatabase

from clinic import db
from clinic.models import MODELS


def _schema(database):
    tables = {}
    for table in database.get_tables():
        if table == "schema_migration":
            continue
        tables[table] = {c.name: (c.data_type.upper(), c.null) for c in database.get_columns(table)}
    return tables


def _indexes(database):
    return {(t, tuple(i.columns), i.unique) for t in database.get_tables()
            for i in database.get_indexes(t)}


def test_migrations_build_exactly_the_schema_the_models_describe(app, tmp_path):
    migrated = _schema(db.database.obj)
    reference = SqliteDatabase(str(tmp_path / "reference.db"))
    with reference.bind_ctx(MODELS):
        reference.create_tables(MODELS)
    assert migrated == _schema(reference)
    # Every index the models declare exists (the migrations may add more, like the partial one).
    assert _indexes(reference) <= _indexes(db.database.obj)


def test_the_slot_index_is_partial_and_unique(app):
    sql = db.database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE name = 'appointment_slot_taken'").fetchone()[0]
    assert "UNIQUE" in sql.upper() and "status <> 'cancelled'" in sql


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
            "INSERT INTO user (email, name, role, password_hash, active, created_at) "
            "VALUES ('old@example.com', 'Old Patient', 'patient', 'x', 1, '2020-01-01 00:00:00')")
    applied = db.migrate()
    assert first not in applied
    assert applied == [m.name for m in db.runner().migrations()][1:]
    with db.database.connection_context():
        assert db.database.execute_sql("SELECT name FROM user").fetchall() == [("Old Patient",)]
