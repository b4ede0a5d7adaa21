"""A realistic clinic of any size for the benchmarks:
``python -m bench.generate --appointments 1000000 [--data bench/results/data/clinic-1000000]``.

The database is made by the clinic's own code (create_app + its migrations), so the benchmarks
run against the real schema and indexes; the rows are then written in bulk (raw executemany,
50,000 rows a transaction), with a progress bar.

What a clinic of N appointments holds (N = 1,000,000: 200 doctors and 50,000 patients):

- doctors: N / 50, at least 2, at most 200; patients: N / 20, at least 10, at most 50,000;
  one admin. Everyone's password is ``bench1234`` (one argon2 hash, shared: quick to make).
- Doctors work every day 08:00-16:00 in 30-minute slots (every day, so that no figure depends on
  the weekday the suite runs on).
- Today and tomorrow: a normal day's worth each, the same whatever N: 2.8 visits per doctor a
  day, what the million-appointment clinic averages over its five years (560 a day with 200
  doctors). So the reminder sweep has the same work due at 10,000 and at 1,000,000 rows.
  Today's visits that ended are completed, the rest booked or confirmed; the reminders that
  fell due before the generator ran are in the outbox as sent, as a running clinic's would be.
- History: the rest, over the five years before today, completed (85 %, each with a
  treatment), no-show (5 %) or cancelled (10 %); visits older than a year archived, as the
  weekly clean-up leaves them.
- Named accounts: admin@bench.clinic, doctor1@bench.clinic, patient@bench.clinic (an ordinary
  patient with a visit tomorrow) and export@bench.clinic, who has up to 5,000 completed visits
  (for the export benchmark).
"""

import argparse
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import ZONE, clinic_settings

PASSWORD = "bench1234"  # noqa: S105 (every bench account's)
ADMIN = "admin@bench.clinic"
PATIENT = "patient@bench.clinic"
EXPORTER = "export@bench.clinic"
HOURS = {day: [["08:00", "16:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
SLOTS = 16  # 08:00-16:00 in 30 minutes
SLOT = timedelta(minutes=30)
YEARS = 5
DAY_VISITS_PER_DOCTOR = 2.8
EXPORT_VISITS = 5000
CHUNK = 50_000

SPECIALIZATIONS = ["General practice", "Cardiology", "Dermatology", "Paediatrics", "Neurology",
                   "Orthopaedics", "Gynaecology", "Ophthalmology", "ENT", "Psychiatry"]
FIRST = ["Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jan",
         "Katja", "Leon", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sami", "Tara", "Umut"]
LAST = ["Schmidt", "Müller", "Fischer", "Yilmaz", "Wagner", "Becker", "Hoffmann", "Kowalski",
        "Rossi", "Nguyen", "Richter", "Klein"]
VISITS = [
    ("Check-up", "Tiredness", "Iron deficiency", "Blood test, diet advice", "Iron 100 mg daily",
     "Recheck in 3 months"),
    ("Consultation", "Cough for two weeks", "Acute bronchitis", "Inhalation",
     "Ambroxol 30 mg", "Come back if fever"),
    ("Follow-up", "Blood pressure review", "Essential hypertension", "Medication adjusted",
     "Ramipril 5 mg", "Home readings twice a day"),
    ("Consultation", "Itchy rash on forearm", "Contact dermatitis", "Topical steroid",
     "Hydrocortisone 1% cream", "Avoid the new detergent"),
    ("Vaccination", "", "Routine immunisation", "Influenza vaccine given", "", ""),
    ("Check-up", "Knee pain after running", "Patellar tendinopathy", "Physiotherapy referral",
     "Ibuprofen 400 mg as needed", "Reduce running for 4 weeks"),
]
REASONS = ["Check-up", "Follow-up", "Cough", "Skin rash", "Blood pressure", "Vaccination",
           "Back pain", "Prescription renewal", ""]


def sizes(appointments):
    doctors = min(200, max(2, appointments // 50))
    patients = min(50_000, max(10, appointments // 20))
    per_day = max(1, round(doctors * DAY_VISITS_PER_DOCTOR))
    return doctors, patients, min(per_day, max(1, appointments // 4))


class Progress:
    """One line on stderr: [#####.....] done/total what."""

    def __init__(self, total, quiet=False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.started = time.monotonic()

    def add(self, n, what):
        self.done += n
        if self.quiet:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        end = "\n" if self.done >= self.total else ""
        print(f"\r  [{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} rows "
              f"{rate:,.0f}/s {what:<14}", end=end, file=sys.stderr, flush=True)


def _ts(instant):
    """How UTCDateTimeField stores an instant: naive UTC, ISO with a space."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def _slot_starts(day):
    """The 16 slot starts (aware UTC) of a clinic-local day; 08:00-16:00 never meets a DST jump."""
    first = datetime(day.year, day.month, day.day, 8, tzinfo=ZONE).astimezone(UTC)
    return [first + i * SLOT for i in range(SLOTS)]


def generate(data_dir, appointments, seed=1, now=None, quiet=False):
    """Create the clinic in ``data_dir`` (which must not hold one yet); returns a summary dict."""
    from clinic import auth, db
    from clinic.reminders import due_at, label
    from clinic.web import create_app

    data_dir = Path(data_dir)
    if (data_dir / "clinic.db").exists():
        raise SystemExit(f"{data_dir / 'clinic.db'} exists already; choose another --data")
    s = clinic_settings(data_dir)
    create_app(s)
    db.migrate()
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    today = now.astimezone(ZONE).date()
    n_doctors, n_patients, per_day = sizes(appointments)
    progress = Progress(appointments + n_patients + n_doctors, quiet)
    conn = db.database.connection()
    password_hash = auth.hash_password(PASSWORD)
    created = _ts(now - timedelta(days=365 * YEARS + 30))

    def insert(table, columns, rows):
        marks = ", ".join("?" * len(columns))
        names = ", ".join(f'"{c}"' for c in columns)
        with db.database.atomic():
            sql = f'INSERT INTO "{table}" ({names}) VALUES ({marks})'  # noqa: S608 (names: ours)
            conn.executemany(sql, rows)

    # language "": not chosen, the clinic's first (clinic/i18n.py)
    user_cols = ("id", "email", "name", "role", "password_hash", "active", "created_at",
                 "language")
    insert("user", user_cols, [(1, ADMIN, "Bench Admin", "admin", password_hash, 1, created, "")])
    doctor_ids = list(range(2, 2 + n_doctors))
    insert("user", user_cols, [
        (uid, f"doctor{i + 1}@bench.clinic", f"Dr {FIRST[i % 20]} {LAST[(i * 5) % 12]} {i + 1}",
         "doctor", password_hash, 1, created, "") for i, uid in enumerate(doctor_ids)])
    hours = json.dumps(HOURS, separators=(",", ":"), sort_keys=True)
    insert("doctor", ("user_id", "specialization", "slot_minutes", "working_hours"),
           [(uid, SPECIALIZATIONS[i % len(SPECIALIZATIONS)], 30, hours)
            for i, uid in enumerate(doctor_ids)])
    progress.add(n_doctors, "doctors")
    first_patient = 2 + n_doctors
    patient_ids = list(range(first_patient, first_patient + n_patients))
    exporter, regular = patient_ids[0], patient_ids[1]
    for lo in range(0, n_patients, CHUNK):
        part = patient_ids[lo:lo + CHUNK]
        users, profiles = [], []
        for uid in part:
            i = uid - first_patient
            email = {0: EXPORTER, 1: PATIENT}.get(i, f"patient{i}@bench.clinic")
            users.append((uid, email, f"{FIRST[i % 20]} {LAST[(i * 7) % 12]} {i}", "patient",
                          password_hash, 1, created, ""))
            profiles.append((uid, f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                             f"+49 30 555 {i:05d}", "email"))
        insert("user", user_cols, users)
        insert("patient", ("user_id", "date_of_birth", "phone", "channel"), profiles)
        progress.add(len(part), "patients")

    # -- appointments: history first (oldest first), then today and tomorrow ------------------
    n_recent = min(2 * per_day, appointments)
    n_history = appointments - n_recent
    days = [today - timedelta(days=d) for d in range(365 * YEARS, 0, -1)]
    capacity = len(days) * n_doctors * SLOTS
    fill = n_history / capacity
    # Every k-th completed visit of the history is the exporter's, up to EXPORT_VISITS.
    # (0.8, not 0.85: the share of completed visits varies, and the last ones must be reached.)
    export_every = max(4, int(n_history * 0.8 / EXPORT_VISITS))
    year_ago = now - timedelta(days=365)
    appt_cols = ("id", "patient_id", "doctor_id", "start", "end", "reason", "status",
                 "archived", "created_at", "updated_at")
    treat_cols = ("appointment_id", "visit_type", "symptoms", "diagnosis", "treatment",
                  "prescription", "notes", "created_at")
    counts = {"history": 0, "completed": 0, "exporter_visits": 0, "recent": 0, "reminders": 0}
    appts, treats = [], []
    next_id = 1

    def flush(what):
        if appts:
            insert("appointment", appt_cols, appts)
            insert("treatment", treat_cols, treats)
            progress.add(len(appts), what)
            appts.clear()
            treats.clear()

    def add(doctor, start, status, patient=None, created_before=None):
        nonlocal next_id
        if patient is None:
            patient = patient_ids[rng.randrange(1, n_patients)] if n_patients > 1 else regular
        end = start + SLOT
        booked_at = start - (created_before or timedelta(days=rng.randint(1, 30),
                                                         minutes=rng.randint(0, 600)))
        touched = end if status in ("completed", "no_show") else booked_at
        appts.append((next_id, patient, doctor, _ts(start), _ts(end), rng.choice(REASONS),
                      status, int(start < year_ago), _ts(booked_at), _ts(touched)))
        if status == "completed":
            visit = VISITS[next_id % len(VISITS)]
            treats.append((next_id, *visit, _ts(end)))
        next_id += 1
        if len(appts) >= CHUNK:
            flush("appointments")
        return next_id - 1, patient

    remaining = n_history
    for index, day in enumerate(days):
        if remaining <= 0:
            break
        starts = _slot_starts(day)
        # This day's share, so the history ends exactly at n_history.
        target = round(n_history * (index + 1) / len(days)) - (n_history - remaining)
        pairs = rng.sample(range(n_doctors * SLOTS), min(max(target, 0), n_doctors * SLOTS))
        for pair in sorted(pairs, key=lambda p: p % SLOTS):
            doctor, slot = doctor_ids[pair // SLOTS], starts[pair % SLOTS]
            roll = rng.random()
            status = "completed" if roll < 0.85 else "no_show" if roll < 0.90 else "cancelled"
            patient = None
            if status == "completed":
                counts["completed"] += 1
                if (counts["completed"] % export_every == 0
                        and counts["exporter_visits"] < EXPORT_VISITS):
                    patient = exporter
                    counts["exporter_visits"] += 1
            add(doctor, slot, status, patient)
            remaining -= 1
            counts["history"] += 1
    del fill, capacity

    # Today and tomorrow: per_day visits each, spread over the doctors and the day.
    reminders = []
    offsets = (timedelta(hours=24), timedelta(hours=2))
    for offset_days in (0, 1):
        day = today + timedelta(days=offset_days)
        starts = _slot_starts(day)
        n = min(per_day, n_recent - counts["recent"])
        for pair in sorted(rng.sample(range(n_doctors * SLOTS), n), key=lambda p: p % SLOTS):
            doctor, start = doctor_ids[pair // SLOTS], starts[pair % SLOTS]
            if start + SLOT <= now:
                roll = rng.random()
                status = "completed" if roll < 0.9 else "no_show"
            else:
                roll = rng.random()
                status = "booked" if roll < 0.68 else "confirmed" if roll < 0.92 else "cancelled"
            patient = regular if (offset_days == 1 and counts["recent"] == per_day) else None
            ident, patient_id = add(doctor, start, status, patient,
                                    created_before=timedelta(days=3))
            counts["recent"] += 1
            if status in ("booked", "confirmed"):
                stamp = start.strftime("%Y-%m-%dT%H:%MZ")
                for offset in offsets:
                    if due_at(start, offset, ZONE) <= now:
                        reminders.append((f"reminder_{label(offset)}:{ident}:{stamp}",
                                          "reminder_advance", ident, patient_id))
                if offset_days == 0 and now.astimezone(ZONE).hour >= 8:
                    reminders.append((f"reminder_daily:{ident}:{stamp}", "reminder_daily",
                                      ident, patient_id))
    flush("appointments")

    # The reminders a running clinic would have sent already.
    emails = dict(conn.execute('SELECT id, email FROM "user"').fetchall()) if reminders else {}
    msg_cols = ("key", "kind", "recipient", "user_id", "appointment_id", "subject", "text_body",
                "html_body", "attachments", "message_id", "status", "attempts", "last_error",
                "priority", "due_at", "claimed_at", "sent_at", "created_at", "updated_at",
                "channel", "segments", "gateway_id", "delivery", "price", "price_unit")
    stamp_now = _ts(now)
    insert("message", msg_cols, [
        (key, kind, emails[patient], patient, ident, "Reminder of your appointment", "", "",
         "[]", f"<{uuid.uuid4().hex}@bench.clinic>", "sent", 1, "", 100, stamp_now, stamp_now,
         stamp_now, stamp_now, stamp_now, "email", 0, "", "", "", "")
        for key, kind, ident, patient in reminders])
    counts["reminders"] = len(reminders)
    db.database.close()
    summary = {"appointments": next_id - 1, "doctors": n_doctors, "patients": n_patients,
               "per_day": per_day, "generated_at": now.isoformat(), **counts}
    (data_dir / "bench.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--appointments", type=int, default=1_000_000, metavar="N")
    p.add_argument("--data", help="folder for the clinic (default bench/results/data/clinic-N)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.appointments <= 5_000_000:
        p.error("--appointments must be between 1 and 5,000,000")
    data = args.data or f"bench/results/data/clinic-{args.appointments}"
    started = time.monotonic()
    summary = generate(data, args.appointments, seed=args.seed, quiet=args.quiet)
    print(f"{data}: {summary['appointments']:,} appointments ({summary['history']:,} history, "
          f"{summary['recent']:,} today and tomorrow), {summary['doctors']} doctors, "
          f"{summary['patients']:,} patients in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
