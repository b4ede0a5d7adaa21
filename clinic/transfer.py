"""Moving a clinic's data to another database: `python run.py copy-data --to postgresql://...`,
for a clinic that outgrows SQLite. (PostgreSQL to SQLite works the same way.)

1. Both databases are brought to the same schema: the source as every start does, the target
   from empty. A target that holds any row is refused: nothing is ever merged or overwritten.
2. Every table is copied in foreign-key order, ``batch`` rows at a time in primary-key order,
   ids kept. Values pass through the models' fields, so SQLite's 0/1 become booleans and its
   text dates become timestamps. The source is read in one transaction (one consistent moment)
   and the target written in one: a copy that fails leaves the target empty, ready to try again.
3. PostgreSQL's id sequences are moved past the copied ids, so the next row gets a fresh id.
4. Each table's rows are counted on both sides before the target commits; a difference fails
   the copy.

Stop the clinic (web and workers) first: rows written after the source's moment are not copied.
The queue is not copied either: the outbox rows are the record of what must still be sent, and
the sweeper sends them from the new queue.
"""

from peewee import AutoField, PeeweeException, PostgresqlDatabase, SqliteDatabase, fn, sort_models
from playhouse import migrations as peewee_migrations

from clinic import db, models
from clinic.models import table_name

BATCH = 1000


class TransferError(Exception):
    """The copy cannot start or did not complete; the message says why, for the admin."""


def _runner(database):
    return peewee_migrations.Runner(database, str(db.MIGRATIONS_DIR))


def _snapshot(source):
    """A read transaction on ``source`` that sees one moment throughout."""
    if isinstance(source, SqliteDatabase):
        return source.atomic("DEFERRED")  # WAL: a reader's snapshot, writers not blocked
    return source.atomic()


def copy(source_url, target_url, batch=BATCH, progress=None):
    """Copy every row of the clinic at ``source_url`` into the empty database at
    ``target_url``; returns ``{table: rows}``. ``progress(table, done, total)`` is told after
    each batch. Raises TransferError."""
    if source_url == target_url:
        raise TransferError("the source and the target are the same database")
    try:
        source, target = db.open_database(source_url), db.open_database(target_url)
    except ValueError as exc:
        raise TransferError(str(exc)) from None
    tables = sort_models(models.MODELS)
    try:
        source.connect()
        target.connect()
        _runner(source).up()
        _runner(target).up()
        filled = [table_name(m) for m in tables if m.select().exists(target)]
        if filled:
            raise TransferError("the target already holds data (in " + ", ".join(filled) +
                                "); copy into an empty database")
        counts = {}
        with _snapshot(source), target.atomic():
            if isinstance(source, PostgresqlDatabase):
                source.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for model in tables:
                counts[table_name(model)] = _copy_table(model, source, target, batch, progress)
            if isinstance(target, PostgresqlDatabase):
                _reset_sequences(target, tables)
            _verify(tables, source, target)
        return counts
    except PeeweeException as exc:
        raise TransferError(f"{type(exc).__name__}: {exc}".strip()) from exc
    finally:
        for database in (source, target):
            database.close()
            if hasattr(database, "close_all"):  # a pool keeps what close() gives back
                database.close_all()


def _primary_key(model):
    return next(field for field in model.select().selected_columns if field.primary_key)


def _copy_table(model, source, target, batch, progress):
    pk = _primary_key(model)
    total = model.select().count(source)
    done, last = 0, None
    while True:
        query = model.select().order_by(pk).limit(batch).dicts()
        if last is not None:
            query = query.where(pk > last)
        rows = list(query.execute(source))
        if not rows:
            return done
        try:
            with target.atomic():  # a savepoint: the error names the table, not a later one
                model.insert_many(rows).as_rowcount().execute(target)
        except PeeweeException as exc:
            ids = f"{rows[0][pk.name]}..{rows[-1][pk.name]}"
            raise TransferError(f"cannot copy {table_name(model)} rows {ids}: "
                                f"{str(exc).strip()}") from exc
        done += len(rows)
        last = rows[-1][pk.name]
        if progress is not None:
            progress(table_name(model), done, total)


def _reset_sequences(target, tables):
    """Next id = the largest copied id + 1, for every table whose id the database assigns."""
    for model in tables:
        pk = _primary_key(model)
        if not isinstance(pk, AutoField):
            continue
        sequence = fn.pg_get_serial_sequence(f'"{table_name(model)}"', pk.column_name)
        model.select(fn.setval(sequence, fn.COALESCE(fn.MAX(pk), 0) + 1, False)).scalar(target)


def _verify(tables, source, target):
    wrong = []
    for model in tables:
        have, copied = model.select().count(source), model.select().count(target)
        if have != copied:
            wrong.append(f"{table_name(model)} ({have} rows, {copied} copied)")
    if wrong:
        raise TransferError("the copy does not match the source: " + ", ".join(wrong))
