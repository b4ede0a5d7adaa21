"""Is the clinic well? The checks behind `python run.py health` (exit code 0 only when all pass,
for cron or a monitor) and the admin's settings check page."""

from dataclasses import dataclass
from datetime import timedelta

from clinic import clock, db, settings
from clinic.jobs import monitor
from clinic.mail import errors, sender

SCHEDULER_LATE = timedelta(minutes=2)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _database():
    try:
        pending = db.pending_migrations()
    except Exception as exc:  # noqa: BLE001 - whatever stops the database is the answer
        return Check("database", False, f"unreachable: {exc}")
    if pending:
        return Check("database", False, "not migrated: pending " + ", ".join(pending))
    return Check("database", True, "reachable and migrated")


def _queue():
    from huey_config import huey

    try:
        depth = huey.pending_count()
    except Exception as exc:  # noqa: BLE001
        return Check("queue", False, f"unreachable: {exc}")
    return Check("queue", True, f"{depth} task(s) waiting")


def _scheduler(now):
    ticked = monitor.last_tick()
    if ticked is None:
        return Check("scheduler", False, "has never ticked: is a worker with the scheduler "
                                         "running?")
    age = now - ticked
    when = clock.local(ticked).strftime("%Y-%m-%d %H:%M:%S")
    holder = monitor.scheduler_holder(now)
    held = f"held by {holder}, " if holder else ""
    if age > SCHEDULER_LATE:
        return Check("scheduler", False, f"{held}last ticked at {when}, "
                                         f"{int(age.total_seconds())} s ago")
    return Check("scheduler", True, f"{held}last ticked at {when}")


def smtp_check(s=None):
    """Can we reach the SMTP server and sign in? In outbox-folder mode: can we write there?"""
    s = s or settings.get()
    if not s.smtp_host:
        folder = s.data_path / "outbox"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".health"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            return Check("smtp", False, f"no SMTP server set and the outbox folder {folder} is "
                                        f"not writable: {exc}")
        return Check("smtp", True, f"no SMTP server set: emails are written to {folder}")
    try:
        sender.Sender(s).check()
    except errors.TransientError as exc:
        return Check("smtp", False, str(exc))
    signed_in = f", signed in as {s.smtp_user}" if s.smtp_user else ""
    return Check("smtp", True, f"{s.smtp_host}:{s.smtp_port} reachable ({s.smtp_security})"
                               f"{signed_in}")


def run(now=None):
    """Every check, in order. The database comes first; without it the scheduler cannot be
    read."""
    now = now or clock.now()
    checks = [_database()]
    if checks[0].ok:
        with db.database.connection_context():
            checks.append(_scheduler(now))
    else:
        checks.append(Check("scheduler", False, "unknown: the database is unreachable"))
    checks.append(_queue())
    checks.append(smtp_check())
    return checks
