"""`python run.py health`: database, queue, scheduler and SMTP; exit code 0 only when all is
well, so cron or a monitor can use it."""

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from clinic import clock, health
from clinic.jobs import runs
from tests import backends

ROOT = Path(__file__).resolve().parent.parent


def _tick(at):
    runs.set_state(runs.HEARTBEAT, last_started_at=at, last_finished_at=at,
                      last_result=f"ticked by {runs.HOLDER}")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(s, **env):
    full = {**os.environ, **backends.environ(s), **env}
    return subprocess.run([sys.executable, "run.py", "health"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def test_all_well_with_smtp_up_and_a_recent_tick(app, smtp, smtp_settings, clinic_settings):
    _tick(clock.now())
    checks = {c.name: c for c in health.run()}
    assert all(c.ok for c in checks.values()), checks
    assert runs.HOLDER in checks["scheduler"].detail
    assert f"127.0.0.1:{smtp.port} reachable" in checks["smtp"].detail


def test_a_stalled_scheduler_is_not_well(app):
    _tick(clock.now() - timedelta(minutes=5))
    check = next(c for c in health.run() if c.name == "scheduler")
    assert not check.ok and "s ago" in check.detail


def test_health_command_exits_non_zero_when_smtp_is_down(app, clinic_settings):
    _tick(clock.now())
    done = _health(clinic_settings, CLINIC_SMTP_HOST="127.0.0.1",
                   CLINIC_SMTP_PORT=str(_free_port()), CLINIC_SMTP_SECURITY="none",
                   CLINIC_SMTP_TIMEOUT="2s")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "smtp       FAIL" in done.stdout
    assert "database   ok" in done.stdout


def test_health_command_exits_zero_when_all_is_well(app, clinic_settings, smtp):
    _tick(clock.now())
    done = _health(clinic_settings, CLINIC_SMTP_HOST="127.0.0.1",
                   CLINIC_SMTP_PORT=str(smtp.port), CLINIC_SMTP_SECURITY="none")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" ok ") == 4


def test_outbox_folder_mode_counts_as_reachable(app, clinic_settings):
    check = health.smtp_check(clinic_settings)
    assert check.ok and "outbox" in check.detail
