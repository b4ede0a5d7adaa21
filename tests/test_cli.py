"""`python run.py <command>` on a temporary database, as whoever runs the machine uses it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path / "data"),
           "CLINIC_TIMEZONE": "Europe/Berlin"}

    def run_py(*args, stdin=None):
        return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=env,
                              input=stdin, capture_output=True, text=True, timeout=120,
                              check=False)

    return run_py


def test_every_command_has_help(run):
    for command in ("serve", "web", "worker", "createadmin", "demo", "migrate", "job", "health",
                    "backup", "settings"):
        done = run(command, "--help")
        assert done.returncode == 0 and "usage:" in done.stdout, command


def test_migrate_creates_and_then_finds_nothing_to_do(run):
    first = run("migrate")
    assert first.returncode == 0 and "Applied: 0001_initial" in first.stdout
    again = run("migrate")
    assert "The database is up to date." in again.stdout


def test_createadmin_then_refuses_a_second_with_the_same_email(run):
    done = run("createadmin", "--email", "chief@example.org", "--password", "long enough pw")
    assert done.returncode == 0 and "Created the admin chief@example.org." in done.stdout
    again = run("createadmin", "--email", "chief@example.org", "--password", "long enough pw")
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_createadmin_explains_a_short_password(run):
    done = run("createadmin", "--email", "chief@example.org", "--password", "short")
    assert done.returncode == 2 and "at least 8 characters" in done.stderr


def test_demo_fills_an_empty_clinic_once_with_progress(run):
    done = run("demo")
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stdout  # the progress bar reached its end
    assert "patient@demo.clinic" in done.stdout
    again = run("demo")
    assert again.returncode == 1 and "already has data" in again.stdout


def test_job_list_shows_every_job_with_its_schedule_and_next_run(run):
    done = run("job", "list")
    assert done.returncode == 0, done.stderr
    for name in ("daily-reminders", "advance-reminders", "monthly-reports", "review-requests",
                 "daily-stats", "cleanup", "retry-failed", "outbox-sweep", "no-shows"):
        assert name in done.stdout
    assert "every day at 08:00 Europe/Berlin" in done.stdout
    assert done.stdout.count("next:") >= 9


def test_job_run_runs_in_the_foreground_and_says_what_it_did(run):
    assert run("demo").returncode == 0
    done = run("job", "run", "monthly-reports")
    assert done.returncode == 0, done.stderr
    assert "Running monthly-reports" in done.stdout
    assert "doctors" in done.stdout and "sent: 4" in done.stdout  # the demo's four doctors
    again = run("job", "run", "monthly-reports")
    assert "already_sent: 4" in again.stdout and "sent: 0" in again.stdout


def test_job_run_of_an_unknown_job_lists_the_jobs(run):
    done = run("job", "run", "make-coffee")
    assert done.returncode == 2
    assert "no job named 'make-coffee'" in done.stderr and "daily-reminders" in done.stderr


def test_settings_hides_secrets(run):
    env_secret = {"CLINIC_SMTP_PASSWORD": "hunter22", "CLINIC_SECRET_KEY": "k" * 40}
    done = subprocess.run([sys.executable, "run.py", "settings"], cwd=ROOT,
                          env={**os.environ, **env_secret}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert "hunter22" not in done.stdout and "k" * 40 not in done.stdout
    assert "CLINIC_SMTP_PASSWORD" in done.stdout and "(set)" in done.stdout
