"""`python run.py [command]`: the clinic's command line.

    serve        web pages and background jobs in one process (the default)
    web          web pages only          worker      background jobs only
    createadmin  add an admin            demo        fill an empty database with a demo clinic
    migrate      upgrade the database    job         list or run the scheduled jobs
    settings     show every setting       backup      copy the database while it runs
    health       is all well? (exit code 0 only then)
    copy-data    move the data into another database (SQLite to PostgreSQL)
"""

import argparse
import getpass
import logging
import re
import secrets
import sys

from clinic import db, settings
from clinic.errors import Invalid
from clinic.settings import SettingsError


def _settings():
    try:
        return settings.ensure_secret_key(settings.load())
    except SettingsError as exc:
        raise SystemExit(f"clinic: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"clinic: cannot use the data folder: {exc}") from None


def _prepare():
    """Settings, database and queue configured, migrations applied."""
    from clinic.server import prepare

    s = _settings()
    try:
        prepare(s)
    except Exception as exc:  # noqa: BLE001 - one line for the admin, not a traceback
        raise SystemExit(f"clinic: cannot open the database ({s.database_url}): {exc}") from None
    return s


def _progress(done, total, what):
    width = 30
    filled = int(width * done / max(total, 1))
    end = "\n" if done >= total else ""
    print(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what:<20}", end=end,
          flush=True)


def ensure_admin(s, out=print):
    """On the first start, the admin: from CLINIC_ADMIN_EMAIL / CLINIC_ADMIN_PASSWORD, or with a
    one-time password printed once."""
    from clinic import people
    from clinic.models import User

    with db.database.connection_context():
        if User.select().where(User.role == "admin").exists():
            return None
        email = s.admin_email or "admin@clinic.local"
        password = s.admin_password or secrets.token_urlsafe(12)
        try:
            people.create_admin(email, password)
        except Invalid as exc:
            raise SystemExit(f"clinic: cannot create the admin {email!r}: {exc.message}") from None
    if s.admin_password:
        out(f"Created the admin {email} with the password from CLINIC_ADMIN_PASSWORD.")
    else:
        out(f"Created the admin {email} with the one-time password: {password}")
        out("Sign in and change it; it is not shown again.")
    return email


def load_demo(out=print):
    from clinic import demo

    with db.database.connection_context():
        if not demo.is_empty():
            out("The database already has data; the demo clinic is only added to an empty one.")
            return False
        out("Creating the demo clinic...")
        counts = demo.create(progress=_progress)
    out("Demo clinic: {doctors} doctors, {patients} patients, {appointments} appointments, "
        "{treatments} treatments, {waitlist} waiting on a waitlist.".format(**counts))
    return True


def demo_banner(out=print):
    from clinic import demo

    out("Demo sign-ins (password demo1234 for each):")
    out(f"  admin    {demo.ADMIN}\n  desk     {demo.DESK}\n  doctor   {demo.DOCTOR}\n"
        f"  patient  {demo.PATIENT}")


def cmd_serve(args, web=True, jobs=True):
    from clinic.server import Process

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    logging.getLogger("huey").setLevel(logging.WARNING)
    s = _prepare()
    if getattr(args, "demo", False):
        load_demo()
    if web:
        ensure_admin(s)
    from clinic import demo

    with db.database.connection_context():
        has_demo = not demo.is_empty() and demo.has_demo_accounts()
    if web and has_demo:
        demo_banner()
    scheduler = getattr(args, "scheduler", True)
    Process(s, web=web, jobs=jobs, scheduler=scheduler).run()
    return 0


def cmd_createadmin(args):
    from clinic import people

    _prepare()
    email = args.email or input("Email: ").strip()
    password = args.password or getpass.getpass("Password (at least 8 characters): ")
    with db.database.connection_context():
        try:
            people.create_admin(email, password, args.name)
        except Invalid as exc:
            print(f"clinic: {exc.message}", file=sys.stderr)
            for field, message in exc.fields.items():
                print(f"  {field}: {message}", file=sys.stderr)
            return 2
    print(f"Created the admin {email}.")
    return 0


def cmd_demo(args):
    _prepare()
    if not load_demo():
        return 1
    demo_banner()
    return 0


def cmd_migrate(args):
    s = _settings()
    from clinic.web import create_app

    create_app(s)
    applied = db.migrate()
    print("Applied: " + ", ".join(applied) if applied else "The database is up to date.")
    return 0


def cmd_job(args):
    from clinic.jobs import scheduler

    _prepare()
    with db.database.connection_context():
        if args.job_command == "list":
            for row in scheduler.listing():
                print(f"{row['name']:<20} {row['schedule']}")
                print(f"{'':<20} next: {row['next']}   last: {row['last']}")
            return 0
        if args.job_command == "run":
            try:
                scheduler.get(args.name)
            except KeyError:
                names = ", ".join(j.name for j in scheduler.JOBS)
                print(f"clinic: no job named {args.name!r}. Jobs: {names}", file=sys.stderr)
                return 2
            print(f"Running {args.name} ...")
            result = scheduler.run(args.name, progress=_progress)
            if isinstance(result, dict):
                for key, value in result.items():
                    print(f"  {key}: {value}")
            else:
                print(f"  {result}")
            return 0
        if args.job_command == "history":
            return _job_history(args)
    return 2


def _job_history(args):
    from clinic import clock
    from clinic.jobs import monitor

    runs = monitor.history(failed=args.failed, limit=max(1, args.limit))
    if not runs:
        print("No failed task runs." if args.failed else "No task runs yet.")
    for run in runs:
        error = run.error.splitlines()[0][:120] if run.error and run.state != "succeeded" else ""
        print(f"{clock.local(run.queued_at):%Y-%m-%d %H:%M:%S %Z}  {run.job:<20} {run.state:<11} "
              f"{monitor.format_runtime(run.runtime):>10}  {error}".rstrip())
    return 0


def cmd_backup(args):
    from clinic import backup

    s = _prepare()
    print(f"Backing up {s.database_url} to {args.path} ...")
    try:
        size = backup.backup(s.database_url, args.path,
                             progress=lambda done, total: _progress(done, total, "pages"))
    except backup.BackupError as exc:
        print(f"clinic: {exc}", file=sys.stderr)
        return 1
    print(f"Backup written: {args.path} ({size / 1024 / 1024:.1f} MiB), integrity checked.")
    return 0


def cmd_copy_data(args):
    from clinic import transfer

    s = _settings()
    source, target = _masked(s.database_url), _masked(args.to)
    print(f"Copying {source} to {target} (stop the clinic's web and workers first) ...")
    try:
        counts = transfer.copy(s.database_url, args.to, batch=max(1, args.batch),
                               progress=lambda table, done, total: _progress(done, total, table))
    except transfer.TransferError as exc:
        print(f"\nclinic: copy-data: {exc}", file=sys.stderr)
        return 1
    print(f"Copied {sum(counts.values())} rows in {len(counts)} tables; every table's row count "
          "matches the source.")
    print(f"Now set CLINIC_DATABASE_URL={target} and start the clinic.")
    return 0


def _masked(url):
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)  # passwords in URLs


def cmd_health(args):
    from clinic import health

    s = _settings()
    from clinic.web import create_app

    try:
        create_app(s)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check, not a traceback
        print(f"database   FAIL  cannot open {s.database_url}: {exc}")
        return 1
    checks = health.run()
    for check in checks:
        print(f"{check.name:<10} {'ok  ' if check.ok else 'FAIL'}  {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


def settings_table():
    """The README's table of settings, made from their declarations."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for env, default, help_text in settings.describe():
        shown = f"`{default}`" if default not in (None, "") else ""
        rows.append(f"| `{env}` | {shown} | {help_text.replace('|', '/')} |")
    return "\n".join(rows)


def cmd_settings(args):
    if args.markdown:
        print(settings_table())
        return 0
    s = _settings()
    secret = settings.secrets_named()
    for env, _, _ in settings.describe():
        value = getattr(s, env.removeprefix("CLINIC_").lower())
        shown = "(set)" if env in secret and value else value
        if isinstance(shown, str):
            shown = _masked(shown)
        print(f"{env:<32} {shown}")
    return 0


def parser():
    p = argparse.ArgumentParser(
        prog="python run.py",
        description="clinic: appointment software for a small clinic, in one process.",
        epilog="Settings come from CLINIC_* environment variables; see README.md.")
    p.add_argument("--demo", action="store_true",
                   help="fill an empty database with a demo clinic before starting")
    sub = p.add_subparsers(dest="command", metavar="command")
    serve = sub.add_parser("serve", help="web pages and background jobs (the default)")
    serve.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                       help="add the demo clinic if empty")
    web = sub.add_parser("web", help="web pages only (jobs run in a separate worker)")
    web.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                     help="add the demo clinic if empty")
    worker = sub.add_parser("worker", help="background jobs only")
    worker.add_argument("--no-scheduler", dest="scheduler", action="store_false",
                        help="run queued jobs but not the periodic schedule")
    admin = sub.add_parser("createadmin", help="add an admin account")
    admin.add_argument("--email")
    admin.add_argument("--password", help="prompted for when not given")
    admin.add_argument("--name", default="Administrator")
    sub.add_parser("demo", help="fill an empty database with the demo clinic")
    sub.add_parser("migrate", help="upgrade the database schema")
    sub.add_parser("health", help="check the database, queue, scheduler and SMTP; exit code 0 "
                                  "only when all is well")
    backup = sub.add_parser("backup", help="a consistent copy of the database, while it runs")
    backup.add_argument("path", help="file (or folder) to write the copy to")
    copy = sub.add_parser("copy-data", help="copy this clinic's data into another, empty "
                                            "database (SQLite to PostgreSQL)")
    copy.add_argument("--to", required=True, metavar="URL",
                      help="the target database, e.g. postgresql://clinic@db.example/clinic")
    copy.add_argument("--batch", type=int, default=1000, metavar="N",
                      help="rows per batch (default 1000)")
    show = sub.add_parser("settings", help="show every setting's value (secrets hidden)")
    show.add_argument("--markdown", action="store_true", help="print the README's table")
    job = sub.add_parser("job", help="list or run the scheduled jobs, or show their history")
    job_sub = job.add_subparsers(dest="job_command", metavar="job_command", required=True)
    job_sub.add_parser("list", help="each job with its schedule and next run")
    run = job_sub.add_parser("run", help="run one job now, in the foreground")
    run.add_argument("name")
    history = job_sub.add_parser("history", help="the latest task runs, newest first")
    history.add_argument("--failed", action="store_true", help="only the failed ones")
    history.add_argument("--limit", type=int, default=20, metavar="N",
                         help="how many to show (default 20)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    command = args.command or "serve"
    handlers = {
        "serve": cmd_serve,
        "web": lambda a: cmd_serve(a, web=True, jobs=False),
        "worker": lambda a: cmd_serve(a, web=False, jobs=True),
        "createadmin": cmd_createadmin,
        "demo": cmd_demo,
        "migrate": cmd_migrate,
        "job": cmd_job,
        "settings": cmd_settings,
        "backup": cmd_backup,
        "health": cmd_health,
        "copy-data": cmd_copy_data,
    }
    return handlers[command](args)
