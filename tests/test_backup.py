"""`python run.py backup PATH`: a consistent copy while the clinic writes, that restores."""

import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clinic import backup, db, settings
from clinic.models import LoginAttempt
from clinic.web import create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.sqlite_only("the online backup copies an SQLite file; PostgreSQL has pg_dump")
def test_backup_taken_during_writes_restores_to_a_sound_database(app, clinic_settings, tmp_path):
    stop = threading.Event()
    written = []

    def write():
        with db.database.connection_context():
            while not stop.is_set():
                with db.database.atomic():
                    LoginAttempt.create(email=f"w{len(written)}@example.com", ip="127.0.0.1")
                written.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(written) < 200:  # the writer is well under way
            threading.Event().wait(0.01)
        target = tmp_path / "backups" / "copy.db"
        steps = []
        backup.backup(clinic_settings.database_url, target,
                      progress=lambda done, total: steps.append((done, total)))
    finally:
        stop.set()
        writer.join()
    assert steps and steps[-1][0] == steps[-1][1]

    # Restore: the copy becomes the database of a new data folder, and the clinic runs on it.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(target, restored_dir / "clinic.db")
    check = sqlite3.connect(restored_dir / "clinic.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    restored = settings.load(environ={}, data_dir=str(restored_dir),
                             secret_key=clinic_settings.secret_key)
    create_app(restored)
    assert db.migrate() == []
    with db.database.connection_context():
        copied = LoginAttempt.select().count()
    assert 200 <= copied <= len(written)


@pytest.mark.sqlite_only("the online backup copies an SQLite file; PostgreSQL has pg_dump")
def test_backup_refuses_to_overwrite_the_database(app, clinic_settings):
    with pytest.raises(backup.BackupError):
        here = backup.sqlite_path(clinic_settings.database_url)
        backup.backup(clinic_settings.database_url, here)


def test_backup_explains_postgresql(tmp_path):
    with pytest.raises(backup.BackupError, match="pg_dump"):
        backup.backup("postgresql://localhost/clinic", tmp_path / "x.db")


def test_backup_command(tmp_path):
    env = {"CLINIC_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "run.py", "backup", str(tmp_path / "out.db")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "integrity checked" in done.stdout
    assert (tmp_path / "out.db").stat().st_size > 0
