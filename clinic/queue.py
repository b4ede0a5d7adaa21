"""The job queue: one Huey object whose storage follows CLINIC_QUEUE_URL.

The Huey object is made at import (tasks register on it with decorators), before settings are
known; ``configure()`` then gives it the storage the settings name: SQLite in its own file by
default, PriorityRedisStorage for redis:// (plain Redis storage rejects priorities), or
PostgresStorage for postgresql://.
"""

from pathlib import Path

from huey import Huey
from huey.storage import MemoryStorage

# Task priorities: higher runs first. Confirmations and reminders before reports and exports,
# bulk mail after those, housekeeping last.
URGENT = 100  # confirmations, cancellations, reminders
NORMAL = 50  # reports, exports, review requests
BULK = 10  # announcements
HOUSEKEEPING = 0  # statistics, clean-up


class ClinicHuey(Huey):
    storage_class = MemoryStorage  # until configure() names the real one


def create_huey():
    return ClinicHuey("clinic", utc=True)


def storage_for(url, name="clinic"):
    if url.startswith("sqlite:///"):
        from huey.storage import SqliteStorage

        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStorage(name, filename=str(path), timeout=10)
    if url.startswith("redis://"):
        from huey.storage import PriorityRedisStorage

        return PriorityRedisStorage(name, url=url)
    if url.startswith(("postgresql://", "postgres://")):
        from huey.storage import PostgresStorage

        return PostgresStorage(name, dsn=url)
    if url == "memory://":
        return MemoryStorage(name)
    raise ValueError(f"unsupported queue URL: {url}")


def configure(url):
    """Point the clinic's Huey at the queue at ``url``; returns the Huey object."""
    from huey_config import huey

    old = huey.storage
    huey.storage = storage_for(url, huey.name)
    if hasattr(old, "close"):
        old.close()
    return huey
