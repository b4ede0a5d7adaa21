"""A consistent copy of the clinic's data while it runs.

SQLite's online backup API copies the database page by page; if another connection writes
meanwhile, the copy restarts from the changed pages, so the result is always one consistent
moment (never a file copied while half-written). The copy is written to a temporary file next
to the destination and renamed into place only once it passed ``PRAGMA integrity_check``.
"""

import os
import sqlite3
from pathlib import Path

PAGES_PER_STEP = 256  # small steps let writers in between


class BackupError(Exception):
    pass


def sqlite_path(database_url):
    if not database_url.startswith("sqlite:///"):
        raise BackupError("backup copies SQLite databases; for PostgreSQL use pg_dump "
                          "(see README: Backups)")
    return Path(database_url.removeprefix("sqlite:///"))


def backup(database_url, destination, progress=None):
    """Copy the database at ``database_url`` to ``destination``; returns its size in bytes.
    ``progress(done_pages, total_pages)`` is told how far it got."""
    source_path = sqlite_path(database_url)
    if not source_path.exists():
        raise BackupError(f"there is no database at {source_path}")
    destination = Path(destination)
    if destination.is_dir():
        destination = destination / "clinic-backup.db"
    if destination.resolve() == source_path.resolve():
        raise BackupError("the backup must not overwrite the database itself")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)

    def report(status, remaining, total):
        if progress is not None:
            progress(total - remaining, total)

    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(partial)
    try:
        source.backup(target, pages=PAGES_PER_STEP, progress=report)
        # The copy is a standalone file: no -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
        result = target.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise BackupError(f"the copy failed its integrity check: {result}")
    finally:
        target.close()
        source.close()
    os.replace(partial, destination)
    return destination.stat().st_size
