"""The database: one proxy every model binds to, opened from a URL, upgraded by migrations.

SQLite (the default) is opened with WAL, foreign keys and IMMEDIATE write transactions: deferred
BEGIN makes read-then-write transactions fail with "database is locked" under concurrent threads
(docs/design.md). PostgreSQL is reached through psycopg 3 from a postgresql:// URL, with a pool of
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
    DatabaseProxy,
    DateTimeField,
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
    # 2 MiB a connection (SQLite's own default), not more: every thread keeps a connection, so a
    # bigger cache is paid once per thread, and it made the admin figures and the reminder sweep
    # no faster.
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
