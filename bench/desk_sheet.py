"""The front desk's day sheet at size: ``python -m bench.desk_sheet [--appointments 1000000]
[--doctors 50] [--runs 30] [--data bench/results/desk-sheet]``.

Makes a clinic of ``--doctors`` doctors (08:00-16:00 every day, 30-minute slots) with
``--appointments`` appointments: today about half full, the rest history before today, made by
the clinic's own migrations and written in bulk (kept in ``--data`` between runs). Then times,
in this process with no network in between:

- the sheet: clinic.desk.day_sheet(today), the doctors' columns with visits and free times;
- the page: GET /desk through the WSGI app as a signed-in desk user, template and session
  lookup included (the server time of one request).

Prints each one's median, min and max over ``--runs`` runs, after one warm-up run.
"""

import argparse
import io
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import ZONE, clinic_settings, load, machine
from bench.generate import CHUNK, HOURS, PASSWORD, SLOT, _slot_starts, _ts

DESK = "desk@bench.clinic"


def build(appointments, doctors, seed=1):
    """Write the clinic into the database create_app opened, unless it holds one already."""
    import json

    from clinic import auth, db
    from clinic.models import User

    db.migrate()
    if User.select().exists():
        return
    rng = random.Random(seed)
    conn = db.database.connection()
    today = datetime.now(UTC).astimezone(ZONE).date()
    password_hash = auth.hash_password(PASSWORD)
    created = _ts(datetime.now(UTC) - timedelta(days=3000))

    def insert(table, columns, rows):
        names = ", ".join(f'"{c}"' for c in columns)
        sql = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'  # noqa: S608
        with db.database.atomic():
            conn.executemany(sql, rows)

    # language "": not chosen, the clinic's first (clinic/i18n.py)
    user_cols = ("id", "email", "name", "role", "password_hash", "active", "created_at",
                 "language")
    doctor_ids = list(range(2, 2 + doctors))
    n_patients = max(10, appointments // 20)
    patient_ids = list(range(2 + doctors, 2 + doctors + n_patients))
    insert("user", user_cols, [(1, DESK, "Bench Desk", "desk", password_hash, 1, created, "")]
           + [(uid, f"doctor{uid}@bench.clinic", f"Dr Bench {uid}", "doctor", password_hash, 1,
               created, "") for uid in doctor_ids])
    insert("doctor", ("user_id", "specialization", "slot_minutes", "working_hours"),
           [(uid, "General practice", 30, json.dumps(HOURS)) for uid in doctor_ids])
    for lo in range(0, n_patients, CHUNK):
        part = patient_ids[lo:lo + CHUNK]
        insert("user", user_cols, [(uid, f"patient{uid}@bench.clinic", f"Patient {uid}",
                                    "patient", password_hash, 1, created, "") for uid in part])
        insert("patient", ("user_id", "date_of_birth", "phone", "channel"),
               [(uid, "1970-01-01", f"+4930{uid:07d}", "email") for uid in part])

    appt_cols = ("patient_id", "doctor_id", "start", "end", "reason", "status", "archived",
                 "created_at", "updated_at")
    rows = []

    def add(doctor, start, status):
        rows.append((rng.choice(patient_ids), doctor, _ts(start), _ts(start + SLOT), "",
                     status, 0, created, created))
        if len(rows) >= CHUNK:
            insert("appointment", appt_cols, rows)
            rows.clear()

    todays = 0
    for doctor in doctor_ids:  # today about half full
        for start in _slot_starts(today):
            if rng.random() < 0.5:
                add(doctor, start, rng.choice(("booked", "confirmed", "arrived", "completed")))
                todays += 1
    left, day = appointments - todays, today
    while left > 0:  # history: every slot of every doctor, day after day back in time
        day -= timedelta(days=1)
        for start in _slot_starts(day):
            for doctor in doctor_ids[:left]:
                add(doctor, start, rng.choice(("completed", "completed", "no_show",
                                               "cancelled")))
            left -= min(left, len(doctor_ids))
            if left <= 0:
                break
    insert("appointment", appt_cols, rows)
    conn.execute("ANALYZE")
    print(f"built {appointments:,} appointments, {doctors} doctors, {todays} today, back to "
          f"{day}", file=sys.stderr)


def timed(fn, runs):
    fn()  # warm-up: caches, compiled templates
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.desk_sheet",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--appointments", type=int, default=1_000_000)
    p.add_argument("--doctors", type=int, default=50)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--data", default="bench/results/desk-sheet")
    args = p.parse_args(argv)

    from clinic import auth, clock, db, desk
    from clinic.models import User
    from clinic.web import create_app
    from clinic.web.sessions import SESSION_COOKIE

    data_dir = Path(args.data) / f"clinic-{args.appointments}-{args.doctors}"
    data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(clinic_settings(data_dir))
    with db.database.connection_context():
        build(args.appointments, args.doctors)
        token = auth.start_session(User.get(User.email == DESK), "web")
    day = clock.local().date()
    print(f"{machine()}, load before {load()}", file=sys.stderr)

    def sheet():
        with db.database.connection_context():
            columns = desk.day_sheet(day)
        assert len(columns) == args.doctors

    def page():
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/desk", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "REMOTE_ADDR": "127.0.0.1",
                   "HTTP_COOKIE": f"{SESSION_COOKIE}={token}", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
        status = []
        body = b"".join(app(environ, lambda s, h, *exc: status.append(s)))
        assert status[0].startswith("200") and b"sheet-column" in body, status

    for name, fn in (("day sheet (desk.day_sheet)", sheet), ("GET /desk, server time", page)):
        ms = [s * 1000 for s in timed(fn, args.runs)]
        print(f"{name}: median {statistics.median(ms):.2f} ms (min {min(ms):.2f}, max "
              f"{max(ms):.2f}) over {args.runs} runs, {args.doctors} doctors, "
              f"{args.appointments:,} appointments")
    print(f"load after {load()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
