"""From a cancellation to the waitlist's first offer accepted by the SMTP server: a real
`python run.py` on a fresh SQLite clinic, the SMTP sink (bench/smtpsink.py) in a process of
its own, and the cancel sent over HTTP.

    python -m bench.waitlist_offer [--runs 30] [--data DIR]

Each run books a slot for the booker, puts a new patient on the doctor's waitlist for that day
(neither timed), then times from sending ``POST /api/appointments/<id>/cancel`` to the sink's
250 for the offer email to the waiting patient. Prints the median, p90, min and max.
"""

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from bench.common import ZONE, percentile

PASSWORD = "bench1234"  # noqa: S105 (a bench clinic's)
EVERY_DAY = {day: [["08:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                    "sun")}


def prepare(data_dir, waiters):
    """A clinic with an admin, one doctor, a booker and ``waiters`` patients; returns the
    doctor's id and the waiters' (id, email)."""
    from clinic import db, people, settings

    s = settings.use(common.clinic_settings(data_dir))
    db.init(s.database_url)
    db.migrate()
    with db.database.connection_context():
        people.create_admin("admin@bench.clinic", PASSWORD, "Bench Admin")
        doctor = people.create_doctor("Dr Wait", "doctor@bench.clinic", PASSWORD, "General", 30,
                                      EVERY_DAY)
        people.register_patient("booker@bench.clinic", PASSWORD, "Booker")
        waiting = [people.register_patient(f"waiter{i}@bench.clinic", PASSWORD, f"Waiter {i}")
                   for i in range(waiters)]
    db.database.close()
    return doctor.id, [(user.id, user.email) for user in waiting]


def call(browser, method, path, payload=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if payload is not None:
        body = json.dumps(payload)
        headers["Content-Type"] = "application/json"
    if browser.conn is None:
        browser.conn = http.client.HTTPConnection(browser.host, browser.port, timeout=60)
    browser.conn.request(method, path, body=body, headers=headers)
    response = browser.conn.getresponse()
    data = response.read()
    return response.status, json.loads(data or b"{}")


def measure(runs, data_dir):
    doctor_id, waiters = prepare(data_dir, runs)
    sink = common.Sink()
    port = common.free_port()
    env = common.clinic_env(data_dir, port, sink.port)
    proc = subprocess.Popen([sys.executable, "run.py"], cwd=common.ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("run.py did not start") from None
                time.sleep(0.05)
        browser = common.Browser(port)
        status, body = call(browser, "POST", "/api/login",
                            {"email": "admin@bench.clinic", "password": PASSWORD})
        token = body["token"]
        status, body = call(browser, "POST", "/api/login",
                            {"email": "booker@bench.clinic", "password": PASSWORD})
        booker_token, booker_id = body["token"], body["user"]["id"]
        time.sleep(3)  # past the start-up's first jobs
        today = datetime.now(UTC).astimezone(ZONE).date()
        for run, (waiter_id, email) in enumerate(waiters):
            day = today + timedelta(days=2 + run // 20)
            start = datetime(day.year, day.month, day.day, 8, tzinfo=ZONE) + \
                timedelta(minutes=30 * (run % 20))
            status, visit = call(browser, "POST", "/api/appointments",
                                 {"doctor_id": doctor_id, "start": start.isoformat(),
                                  "patient_id": booker_id}, token)
            if status != 201:
                raise RuntimeError(f"booking failed: {status} {visit}")
            status, entry = call(browser, "POST", "/api/waitlist",
                                 {"doctor_id": doctor_id, "from": day.isoformat(),
                                  "to": day.isoformat(), "patient_id": waiter_id}, token)
            if status != 201:
                raise RuntimeError(f"joining failed: {status} {entry}")
            time.sleep(0.2)  # the booking's confirmation goes out first
            index = sink.count()
            sent = time.time()
            status, _ = call(browser, "POST", f"/api/appointments/{visit['id']}/cancel",
                             {}, booker_token)
            if status != 200:
                raise RuntimeError(f"cancelling failed: {status}")
            arrived = sink.wait_for_rcpt(email, index)
            if arrived is None:
                raise RuntimeError("no offer arrived within 30 s")
            latencies.append(arrived - sent)
        browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        sink.close()
    return latencies


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.waitlist_offer")
    p.add_argument("--runs", type=int, default=30, help="cancellations to time")
    p.add_argument("--data", help="data folder (default: a temporary one, removed after)")
    args = p.parse_args(argv)
    data_dir = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="bench-wait-"))
    try:
        latencies = measure(args.runs, data_dir)
    finally:
        if not args.data:
            shutil.rmtree(data_dir, ignore_errors=True)
    ms = [x * 1000 for x in latencies]
    print(f"machine: {common.machine()}")
    print(f"cancellation -> first waitlist offer accepted by SMTP, {len(ms)} runs: "
          f"p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
          f"min {min(ms):.1f} ms, max {max(ms):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
