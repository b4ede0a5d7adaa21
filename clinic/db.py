"""The database: one proxy every model binds to, opened from a URL, upgraded by migrations.

SQLite (the default) is opened with WAL, foreign keys and IMMEDIATE write transactions: deferred
BEGIN makes read-then-write transactions fail with "database is locked" under concurrent threads
(see DESIGN.md). PostgreSQL is reached through psycopg 3 from a postgresql:// URL, with a pool of
connections.
"""

import contextlib
import fcntl
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from peewee import (
    AutoField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    IntegerField,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)
from playhouse import migrations as peewee_migrations
from playhouse.db_url import parse as parse_url
from playhouse.pool import PooledPostgresqlDatabase

database = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    # 2 MiB a connection (SQLite's own default), not more: every thread keeps a connection,
    # and 32 MiB each filled to 136 MiB once the first tick's jobs had read a million rows
    # (74 MiB with 2 MiB; the admin figures and the reminder sweep were no slower).
    "cache_size": -2 * 1024,
    "busy_timeout": 10_000,
}

# Python 3.12 deprecates sqlite3's implicit datetime adapter; state the format we store.
sqlite3.register_adapter(datetime, lambda dt: dt.isoformat(" "))


def open_database(url):
    """A peewee Database for ``sqlite:///path`` or ``postgresql://...``, not yet connected."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(
            str(path), pragmas=SQLITE_PRAGMAS, timeout=10, lock_type="IMMEDIATE",
            check_same_thread=False,
        )
    if url.startswith(("postgresql://", "postgres://")):
        params = parse_url(url)
        name = params.pop("database")
        # Pooled: each request and task takes a connection and gives it back. A new PostgreSQL
        # connection costs a server process and several milliseconds, more than most pages'
        # queries; one broken by a server restart is dropped, not handed out again.
        return PooledPostgresqlDatabase(name, max_connections=None, stale_timeout=300,
                                        **params)
    raise ValueError(f"unsupported database URL: {url}")


def init(url):
    """Point the models at the database at ``url``; returns it."""
    if database.obj is not None:
        if not database.is_closed():
            database.close()
        if isinstance(database.obj, PooledPostgresqlDatabase):
            database.obj.close_all()
    db = open_database(url)
    database.initialize(db)
    return db


@contextlib.contextmanager
def connection():
    """This thread's connection: the open one, or one opened now and closed after (where
    ``connection_context()`` would close a connection the caller still needs)."""
    if database.is_closed():
        with database.connection_context():
            yield
    else:
        yield


# The database object whose connection this thread keeps between requests and tasks (SQLite).
_kept = threading.local()


def acquire():
    """Take this thread's connection for one request or task. Returns whether the caller is to
    ``release()`` it after: False when the thread's own code already had one open (Huey's
    immediate mode runs a task inline, maybe inside the caller's transaction) and stays in
    charge of it."""
    if not database.is_closed():
        return getattr(_kept, "db", None) is database.obj
    # Entered and, on SQLite, never left: a connection_context() nested in a request then
    # leaves the connection open instead of closing it on exit.
    database.connection_context().__enter__()
    _kept.db = database.obj
    return True


def release():
    """End a request's or task's use of this thread's connection, leaving no transaction open.

    1. A transaction left open (a bug, or a failure between BEGIN and COMMIT) is rolled back
       by closing the connection: the next request or task opens a fresh one.
    2. PostgreSQL's connection goes back to the pool, so one broken by a server restart is
       dropped rather than reused.
    3. SQLite's stays open for the thread's next request or task (waitress's and Huey's threads
       live as long as the process): opening one runs five pragmas, which cost more than a
       page's queries, and its page cache stays warm."""
    obj = database.obj
    if obj.is_closed():
        _kept.db = None
        return
    if isinstance(obj, SqliteDatabase):
        conn = obj.connection()
        if conn.in_transaction or obj.in_transaction():
            conn.close()  # rolls back
            obj.dispose()
            _kept.db = None
        return
    _kept.db = None
    obj.close()


def is_postgres():
    return isinstance(database.obj, PostgresqlDatabase)


def locked(query):
    """SELECT ... FOR UPDATE where the engine has it. SQLite needs none: IMMEDIATE transactions
    already serialise writers."""
    return query.for_update() if is_postgres() else query


# -- plain SQL, for the few statements that run on every request or by the thousand ------------
# peewee builds a statement from its parts each time it runs, and builds a model object per row
# through its join machinery; for a page's small queries that took several times longer than
# the database took to answer them. These helpers run SQL written once, in the models' own
# table and column names, on either engine, and give back plain values.


def columns(*fields, table=None):
    """``"t"."col", ...`` of ``fields``, qualified by ``table`` (an alias) if given."""
    prefix = f'"{table}".' if table else ""
    return ", ".join(f'{prefix}"{field.column_name}"' for field in fields)


def select(sql, params=(), fields=None):
    """The rows of ``sql`` (written with ``?`` placeholders, whatever the engine) as tuples;
    with ``fields`` (one per column), each value turned into Python as that field would."""
    rows = execute(sql, params).fetchall()
    # Text and numbers come back as they are; instants, JSON and SQLite's 0/1 booleans need
    # their field's conversion.
    convert = [(i, field.python_value) for i, field in enumerate(fields or ())
               if type(field) not in _AS_IS]
    if not convert:
        return rows
    converted = []
    for row in rows:
        row = list(row)
        for i, to_py in convert:
            row[i] = to_py(row[i])
        converted.append(tuple(row))
    return converted


_AS_IS = {AutoField, CharField, TextField, IntegerField, FloatField}  # exactly these: not JSONField


def execute(sql, params=()):
    """Run ``sql`` (written with ``?`` placeholders) for its effect; returns the cursor."""
    return database.execute_sql(sql.replace("?", database.param), params)


def instance(model, fields, values):
    """A ``model`` object holding ``values`` (already Python) for ``fields``, as peewee makes
    one from a row: nothing marked changed."""
    obj = model(__no_default__=1)
    obj.__data__ = {field.name: value for field, value in zip(fields, values, strict=True)}
    return obj


def insert_new(model, fields, rows, returning=()):
    """INSERT the ``rows`` (tuples of python values in ``fields`` order) of ``model`` in one
    statement, skipping any whose unique key is taken (ON CONFLICT DO NOTHING); returns the
    ``returning`` columns of the rows inserted, as tuples.

    Plain SQL: peewee builds a many-row INSERT one value at a time, and for a reminder run's
    rows (twenty columns each) that took longer than the database took to write them. The
    values go through each field's db_value, and the fields not given get the model's
    defaults, as with peewee's insert_many."""
    if not rows:
        return []
    # The model's defaults for the fields not given, as peewee's insert_many fills them in.
    given = {field.name for field in fields}  # by name: a Field's == makes an expression
    defaults = [field for field in model._meta.sorted_fields
                if field.name not in given and field.default is not None]
    if defaults:
        fields = list(fields) + defaults
        rows = [(*row, *(field.default() if callable(field.default) else field.default
                         for field in defaults)) for row in rows]
    param = database.param
    one = f"({', '.join(param for _ in fields)})"
    sql = (f'INSERT INTO "{model._meta.table_name}" ({columns(*fields)}) '
           f'VALUES {", ".join(one for _ in rows)} ON CONFLICT DO NOTHING')
    if returning:
        sql += f" RETURNING {columns(*returning)}"
    convert = [field.db_value for field in fields]
    params = [to_db(value) for row in rows for to_db, value in zip(convert, row, strict=True)]
    cursor = database.execute_sql(sql, params)
    if not returning:
        return []
    back = [field.python_value for field in returning]
    return [tuple(to_py(value) for to_py, value in zip(back, row, strict=True))
            for row in cursor.fetchall()]


def runner():
    return peewee_migrations.Runner(database.obj, str(MIGRATIONS_DIR))


# PostgreSQL's advisory lock for migrations: any number, the same in every process.
MIGRATION_LOCK = 7_154_201_001


@contextlib.contextmanager
def _one_at_a_time():
    """Processes that start together migrate one after the other, and the later ones find
    nothing left to do. Without it they fail: PostgreSQL's CREATE TABLE IF NOT EXISTS breaks
    when another session creates the same table at the same moment, and each runner plans its
    migrations before the other has recorded any. SQLite takes a file lock beside the database
    (its own write lock would time out behind a long migration)."""
    obj = database.obj
    if isinstance(obj, PostgresqlDatabase):
        obj.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            obj.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    elif obj.database != ":memory:":
        with open(obj.database + ".migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield
    else:
        yield


def migrate():
    """Apply pending migrations; returns their names. Safe to call at every start, from any
    number of processes at once."""
    with connection(), _one_at_a_time():
        return runner().up()


def pending_migrations():
    with database.connection_context():
        return [m.name for m in runner().status() if m.path and not m.applied]


class UTCDateTimeField(DateTimeField):
    """Stores an instant as naive UTC; gives it back aware (UTC).

    Accepts aware datetimes of any zone. A naive value is refused rather than guessed at:
    the code must say which zone it means (clock.to_utc)."""

    def db_value(self, value):
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"{self.name}: naive datetime {value!r}; pass an aware one")
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        if isinstance(value, str):
            # SQLite gives back the naive UTC text the adapter wrote: read as UTC at once, a
            # fifth of the time of peewee's parsing followed by replace(tzinfo=UTC). A page
            # reads a few dozen of these.
            try:
                parsed = datetime.fromisoformat(value + "+00:00")
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return parsed
        value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class JSONField(TextField):
    """JSON kept as text, so it works the same on SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)
