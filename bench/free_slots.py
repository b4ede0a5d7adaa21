"""Free slots with visit types and time off: ``python -m bench.free_slots [--appointments N]``.

Builds a clinic with bench.generate (default 1,000,000 appointments; reuses --data if it holds
one), then gives doctor1 two visit types (60 and 90 minutes), a lunch break tomorrow, a clinic
holiday next week and a week of leave next month, and gives every other doctor time off too
(2,000 rows in all), and books two more visits tomorrow (60 and 90 minutes) beside the
generated ones. It then times ``slots.free_slots`` for tomorrow, the work behind
GET /api/doctors/<id>/slots: a standard visit, the 60-minute type and the 90-minute type, each
``--runs`` times after a warm-up, and prints the medians and p99s in milliseconds. The goal:
at most 5 ms.
"""

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from bench.generate import generate


def prepare(data_dir, appointments):
    from clinic import db
    from clinic.web import create_app

    if not (Path(data_dir) / "clinic.db").exists():
        generate(data_dir, appointments, quiet=True)
    create_app(common.clinic_settings(data_dir))
    db.migrate()
    db.database.connect(reuse_if_open=True)


def furnish(now):
    """Visit types, time off and tomorrow's bookings for doctor1 (idempotent enough: a second
    run of the script on the same data adds its rows again, which only makes it harder)."""
    from clinic import clock, visit_types
    from clinic.models import Appointment, Doctor, TimeOff, User

    doctor = Doctor.select(Doctor, User).join(User).where(
        User.email == "doctor1@bench.clinic").get()
    kinds = [visit_types.create("First consultation", 60, [doctor.user_id]),
             visit_types.create("Long procedure", 90, [doctor.user_id])]
    tomorrow = clock.local(now).date() + timedelta(days=1)
    midnight = clock.midnight(tomorrow)
    rows = [{"doctor": doctor.user_id, "start": midnight + timedelta(hours=12),
             "end": midnight + timedelta(hours=13), "reason": "Lunch break"},
            {"doctor": None, "start": clock.midnight(tomorrow + timedelta(days=7)),
             "end": clock.midnight(tomorrow + timedelta(days=8)), "reason": "Holiday"},
            {"doctor": doctor.user_id, "start": clock.midnight(tomorrow + timedelta(days=30)),
             "end": clock.midnight(tomorrow + timedelta(days=37)), "reason": "Leave"}]
    rng = random.Random(1)
    others = [d.user_id for d in Doctor.select(Doctor.user).where(Doctor.user != doctor.user_id)]
    for _ in range(2000 - len(rows)):
        start = midnight + timedelta(days=rng.randrange(-365, 365), hours=rng.randrange(8, 16))
        rows.append({"doctor": rng.choice(others) if others else None, "start": start,
                     "end": start + timedelta(hours=rng.choice((1, 2, 8))), "reason": "Away"})
    for row in rows:
        row.update(status="approved", created_at=now)
    TimeOff.insert_many(rows).execute()
    # Tomorrow half full: the existing visits stay; add mixed-length ones in the free gaps.
    patient = User.get(User.email == "patient@bench.clinic")
    taken = [(a.start, a.end) for a in Appointment.select().where(
        Appointment.doctor == doctor.user_id, Appointment.start >= midnight,
        Appointment.start < midnight + timedelta(days=1), Appointment.status != "cancelled")]
    at = midnight + timedelta(hours=8)
    for minutes in (60, 90):
        end = at + timedelta(minutes=minutes)
        if not any(s < end and e > at for s, e in taken) and at.hour < 12:
            Appointment.create(patient=patient.id, doctor=doctor.user_id, start=at, end=end,
                               status="booked", created_at=now, updated_at=now)
            taken.append((at, end))
        at = end + timedelta(minutes=60)
    return doctor, kinds, tomorrow


def timed(fn, runs):
    for _ in range(20):
        fn()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, common.percentile(seconds, 99) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appointments", type=int, default=1_000_000)
    parser.add_argument("--data", help="the clinic's folder (made if absent)")
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args(argv)
    data_dir = args.data or tempfile.mkdtemp(prefix="clinic-free-slots-")
    prepare(data_dir, args.appointments)

    from clinic import slots

    now = datetime.now(UTC)
    print(f"{common.machine()}; load before: {common.load()}")
    doctor, kinds, day = furnish(now)
    for label, minutes in (("standard visit", None), (f"{kinds[0].minutes} minutes", 60),
                           (f"{kinds[1].minutes} minutes", 90)):
        offered = slots.free_slots(doctor, day, now=now, minutes=minutes)
        median, p99 = timed(lambda m=minutes: slots.free_slots(doctor, day, now=now, minutes=m),
                            args.runs)
        print(f"free slots, {label}: median {median:.2f} ms, p99 {p99:.2f} ms "
              f"({len(offered)} starts offered, {args.runs} runs)")
    print(f"load after: {common.load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
