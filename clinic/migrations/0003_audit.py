"""The audit log's table, and the triggers that keep it append-only: the database itself refuses
to change or delete an entry, whatever the code asks (SQLite and PostgreSQL alike).

A frozen copy of the model as it was, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403

REFUSAL = "the audit log cannot be changed"


def up(migrator, db):
    class AuditEntry(Model):
        at = DateTimeField(index=True)
        user_id = IntegerField(null=True)
        user_name = CharField(max_length=200, default='')
        role = CharField(max_length=10, default='')
        patient_id = IntegerField(null=True)
        patient_name = CharField(max_length=200, default='')
        action = CharField(max_length=40)
        outcome = CharField(max_length=10)
        reason = CharField(max_length=300, default='')
        address = CharField(max_length=64, default='')
        path = CharField(max_length=300, default='')
        class Meta:
            database = db
            table_name = 'audit_entry'
            indexes = ((('patient_id', 'at'), False), (('user_id', 'at'), False))
    db.create_tables([AuditEntry])

    if isinstance(db, PostgresqlDatabase):  # noqa: F405
        db.execute_sql(
            "CREATE FUNCTION audit_entry_unchangeable() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$")
        # Row triggers catch UPDATE and DELETE; TRUNCATE skips them, so it gets its own.
        db.execute_sql(
            "CREATE TRIGGER audit_entry_unchangeable BEFORE UPDATE OR DELETE ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION audit_entry_unchangeable()")
        db.execute_sql(
            "CREATE TRIGGER audit_entry_not_truncated BEFORE TRUNCATE ON audit_entry "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_unchangeable()")
    else:
        # SQLite has no TRUNCATE, and a trigger on DELETE also turns off its "delete all rows"
        # shortcut, so these two cover every way to change a row.
        for event in ("UPDATE", "DELETE"):
            db.execute_sql(
                f"CREATE TRIGGER audit_entry_no_{event.lower()} BEFORE {event} ON audit_entry "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END")


def down(migrator, db):
    # Dropping the table drops its triggers too.
    migrator.migrate(migrator.drop_table('audit_entry'))
    if isinstance(db, PostgresqlDatabase):  # noqa: F405
        db.execute_sql("DROP FUNCTION audit_entry_unchangeable()")
