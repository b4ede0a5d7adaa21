"""The database: one proxy every model binds to, opened from a URL, upgraded by migrations.

SQLite (the default) is opened with WAL, foreign keys and IMMEDIATE write transactions: deferred
BEGIN makes read-then-write transactions fail with "database is locked" under concurrent threads
(see DESIGN.md). PostgreSQL is reached through psycopg 3 from a postgresql:// URL.
"""

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from peewee import DatabaseProxy, DateTimeField, PostgresqlDatabase, SqliteDatabase, TextField
from playhouse import migrations as peewee_migrations
from playhouse.db_url import parse as parse_url

database = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "cache_size": -32 * 1024,  # 32 MiB
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
        return PostgresqlDatabase(name, autorollback=True, **params)
    raise ValueError(f"unsupported database URL: {url}")


def init(url):
    """Point the models at the database at ``url``; returns it."""
    if database.obj is not None and not database.is_closed():
        database.close()
    db = open_database(url)
    database.initialize(db)
    return db


def is_postgres():
    return isinstance(database.obj, PostgresqlDatabase)


def locked(query):
    """SELECT ... FOR UPDATE where the engine has it. SQLite needs none: IMMEDIATE transactions
    already serialise writers."""
    return query.for_update() if is_postgres() else query


def runner():
    return peewee_migrations.Runner(database.obj, str(MIGRATIONS_DIR))


def migrate():
    """Apply pending migrations; returns their names. Safe to call at every start."""
    with database.connection_context():
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
