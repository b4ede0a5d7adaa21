"""The clinic as several real processes: two `run.py web` and four `run.py worker` against
PostgreSQL and a shared Redis queue, mail to the SMTP server in this test. Needs PostgreSQL and
Redis (skipped without them; failed in CI).

What it shows, in one run (processes are slow to start, so the story is told once):
- two patients racing for one slot through two different web processes: one gets it;
- a worker killed with SIGKILL while the SMTP server is still taking its messages: the messages
  it held are delivered later, once, by the sweeper;
- the reminder sweep and the monthly reports queued several times at once and run by several
  workers together, and a scheduler running beside them: each email once;
- every email that the outbox says was sent arrived at the SMTP server exactly once;
- of the two workers that may schedule, one holds the scheduler and `health` names it;
- Refresh on the dashboard in one web process reaches the figures kept by the other.

The sweeper takes a row left in ``sending`` for a dead worker's only after delivery.stuck_after()
(10 minutes). Rather than wait, the recovering sweeps run as real `run.py job run outbox-sweep`
processes whose clock is moved that far ahead with time-machine: the same code, started later.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinic import appointments, clock, db, people, settings, stats
from clinic.jobs import scheduler
from clinic.mail import delivery
from clinic.models import Appointment, Message, MonthlyReport, TaskRun
from clinic.web import create_app
from tests import backends
from tests.client import Client
from tests.conftest import PASSWORD, TZ, make_doctor, make_patient
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
SECRET = "scale-out-secret-key-0123456789abcdef"

pytestmark = pytest.mark.slow

# The recovering sweep, started as if delivery.stuck_after() had passed: argv[1] is how far ahead.
SWEEP_LATER = """
import sys
from datetime import UTC, datetime, timedelta
import time_machine
from clinic import cli
with time_machine.travel(datetime.now(UTC) + timedelta(seconds=float(sys.argv[1]))):
    sys.exit(cli.main(["job", "run", "outbox-sweep"]))
"""


class Proc:
    """A clinic process started from run.py, its output collected line by line."""

    def __init__(self, name, args, env):
        self.name = name
        self.lines = []
        self.seen = threading.Condition()
        self.popen = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self.read_lines, daemon=True).start()

    def read_lines(self):
        for line in self.popen.stdout:
            with self.seen:
                self.lines.append(line.rstrip("\n"))
                self.seen.notify_all()

    def wait_for(self, pattern, timeout=30):
        regex = re.compile(pattern)
        with self.seen:
            found = self.seen.wait_for(
                lambda: any(regex.search(line) for line in self.lines), timeout)
        assert found, f"{self.name} did not print {pattern!r}:\n" + "\n".join(self.lines)
        return next(regex.search(line) for line in self.lines if regex.search(line))

    @property
    def pid(self):
        return self.popen.pid

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def api(port, method, path, token, payload=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps(payload).encode() if payload is not None else None
        conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                       "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def slots_ahead(now, first_after, last_before):
    """Half-hour starts between the two delays from now within every doctor's 09:00-17:00."""
    start = (now + first_after).replace(second=0, microsecond=0)
    start += timedelta(minutes=-start.minute % 30)
    found = []
    while start < now + last_before:
        local = start.astimezone(TZ)
        if 9 <= local.hour < 17:
            found.append(start)
        start += timedelta(minutes=30)
    return found


@pytest.fixture
def servers(tmp_path):
    """A fresh PostgreSQL schema for the data and a queue of its own on the shared Redis."""
    backends.require(backends.POSTGRES_REDIS)
    with backends.urls(backends.POSTGRES_REDIS, tmp_path / "data") as urls:
        yield urls


def test_many_processes_send_every_email_once_and_book_every_slot_once(servers, smtp, tmp_path):
    s = settings.load(environ={}, data_dir=str(tmp_path / "data"), **servers, timezone=TZ,
                      secret_key=SECRET,
                      smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none",
                      smtp_timeout=timedelta(seconds=10))
    create_app(s)
    db.migrate()
    stats.forget()
    now = clock.now()
    procs = []
    try:
        with db.database.connection_context():
            # The people, visits last month (for the reports), and visits in the next hours that
            # were booked two days ago (their 24 h reminders are due now).
            carol = make_doctor("carol@example.com", "Dr Carol Clark", "Cardiology")
            dave = make_doctor("dave@example.com", "Dr Dave Davis", "Dermatology")
            patients = [make_patient(f"p{n}@example.com", f"Patient {n}") for n in range(6)]
            people.create_admin("erin@example.com", PASSWORD, "Erin Admin")
            last_month = clock.local(now).date().replace(day=1) - timedelta(days=10)
            for n, doctor in enumerate((carol, dave, carol)):
                start = datetime(last_month.year, last_month.month, last_month.day, 10 + n,
                                 tzinfo=TZ).astimezone(UTC)
                Appointment.create(patient=patients[n], doctor=doctor, start=start,
                                   end=start + timedelta(minutes=30), status="completed",
                                   created_at=start, updated_at=start)
            ahead = slots_ahead(now, timedelta(hours=3), timedelta(hours=23))
            assert len(ahead) >= 4, ahead
            for n, start in enumerate(ahead[:4]):
                appointments.book(patients[n].id, dave.id, start, now=now - timedelta(days=2))
        # Those bookings' confirmations are already on the shared queue.

        env = {**os.environ, **backends.environ(s), "CLINIC_HOST": "127.0.0.1",
               "CLINIC_PORT": "0", "CLINIC_SMTP_HOST": smtp.host,
               "CLINIC_SMTP_PORT": str(smtp.port), "CLINIC_SMTP_SECURITY": "none",
               "CLINIC_SMTP_TIMEOUT": "10s", "CLINIC_WORKERS": "2",
               "CLINIC_SECRET_KEY": SECRET, "PYTHONUNBUFFERED": "1"}
        web_a = Proc("web A", ["run.py", "web"], env)
        web_b = Proc("web B", ["run.py", "web"], env)
        victim = Proc("worker 1", ["run.py", "worker", "--no-scheduler"], env)
        procs += [web_a, web_b, victim]
        ports = [int(p.wait_for(r"running at http://127\.0\.0\.1:(\d+)/").group(1))
                 for p in (web_a, web_b)]
        victim.wait_for("worker is running")
        smtp.wait_for(4, timeout=30)  # the four confirmations, sent by worker 1

        # -- two patients race for each of three slots, through different web processes ------
        smtp.answer("slow", delay=3.0)  # worker 1 will be caught mid-send
        tokens = {}
        for n, port in ((4, ports[0]), (5, ports[1])):
            status, body = api(port, "POST", "/api/login", "",
                               {"email": f"p{n}@example.com", "password": PASSWORD})
            assert status == 200, body
            tokens[n] = body["token"]
        race_slots = slots_ahead(now, timedelta(hours=3), timedelta(hours=23))[4:7]
        outcomes = []
        for start in race_slots:
            barrier = threading.Barrier(2)
            results = []

            def book(n, port, start=start, barrier=barrier, results=results):
                barrier.wait()
                results.append(api(port, "POST", "/api/appointments", tokens[n],
                                    {"doctor_id": carol.id, "start": start.isoformat()})[0])

            racers = [threading.Thread(target=book, args=(4, ports[0])),
                      threading.Thread(target=book, args=(5, ports[1]))]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(timeout=30)
            outcomes.append(sorted(results))
        assert outcomes == [[201, 409]] * 3

        # -- kill worker 1 while the SMTP server holds its messages unanswered ----------------
        until(lambda: smtp.handler.waiting, timeout=30, what="worker 1 to be sending")
        victim.popen.kill()
        victim.popen.wait()
        until(lambda: smtp.handler.abandoned, timeout=30,
              what="the SMTP server to see worker 1 go")
        with db.database.connection_context():
            stuck = {m.id for m in Message.select().where(Message.status == "sending")}
        assert stuck, "worker 1 died holding nothing: the test proved nothing"
        smtp.answer("accept")

        # -- more workers; one may schedule beside one that may too ---------------------------
        ticker = Proc("worker 2", ["run.py", "worker"], env)
        rival = Proc("worker 3", ["run.py", "worker"], env)
        plain = Proc("worker 4", ["run.py", "worker", "--no-scheduler"], env)
        procs += [ticker, rival, plain]
        for proc in (ticker, rival, plain):
            proc.wait_for("worker is running")

        # -- the reminder sweep and the monthly reports, queued three times each at once ------
        with db.database.connection_context():
            queued = [scheduler.run_job(name) for name in ("advance-reminders", "monthly-reports")
                      for _ in range(3)]
        def all_ran():
            with db.database.connection_context():
                states = [r.state for r in TaskRun.select().where(
                    TaskRun.task_id.in_([q.id for q in queued]))]
            return len(states) == len(queued) and all(st == "succeeded" for st in states)

        until(all_ran, timeout=60, what="the queued jobs to run")

        # -- the sweeper, as it runs once the stuck rows are old enough, in three processes ---
        later = (delivery.stuck_after() + timedelta(minutes=1)).total_seconds()
        sweeps = [subprocess.Popen([sys.executable, "-c", SWEEP_LATER, str(later)], cwd=ROOT,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True) for _ in range(3)]
        for sweep in sweeps:
            out, _ = sweep.communicate(timeout=120)
            assert sweep.returncode == 0, out

        # -- the outbox settles: nothing pending or being sent --------------------------------
        def settled():
            with db.database.connection_context():
                return not Message.select().where(
                    Message.status.in_(("pending", "sending"))).exists()

        until(settled, timeout=60, what="the outbox to settle")
        with db.database.connection_context():
            sent = {m.message_id: m for m in Message.select().where(Message.status == "sent")}
            statuses = Counter(m.status for m in Message.select())
            reports = MonthlyReport.select().count()
            recovered = [m.message_id for m in Message.select().where(Message.id.in_(stuck))]
        until(lambda: len(smtp.messages) >= len(sent), timeout=30,
              what="the SMTP server to get them all")
        assert statuses["failed"] == 0, statuses
        kinds = Counter(m.kind for m in sent.values())
        assert kinds["monthly_report"] == reports == 2  # one per doctor, however many runs
        assert kinds["reminder_advance"] == 4  # the visits booked two days ago
        assert kinds["confirmation"] == 4 + 3  # every booking that won its slot
        # Whether any arrived twice is counted once every process has stopped (below).

        # -- no slot twice ----------------------------------------------------------------------
        with db.database.connection_context():
            live = [(a.doctor_id, a.start) for a in Appointment.select().where(
                Appointment.status != "cancelled")]
        assert len(live) == len(set(live))

        # -- one scheduler, named by health -----------------------------------------------------
        health = subprocess.run([sys.executable, "run.py", "health"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        line = next(li for li in health.stdout.splitlines() if li.startswith("scheduler"))
        holders = {f"pid {p.pid}" for p in (ticker, rival)}
        assert " ok " in line and any("held by " in line and h in line for h in holders), line
        assert f"pid {plain.pid}" not in line

        # -- Refresh in web B reaches the figures kept by web A -------------------------------
        status, body = api(ports[0], "POST", "/api/login", "",
                           {"email": "erin@example.com", "password": PASSWORD})
        admin_token = body["token"]
        first = api(ports[0], "GET", "/api/admin/dashboard-stats", admin_token)[1]
        with db.database.connection_context():
            make_patient("late@example.com", "Late Patient")
        kept = api(ports[0], "GET", "/api/admin/dashboard-stats", admin_token)[1]
        assert kept["cached"] and kept["patients"] == first["patients"]
        browser = Client(f"http://127.0.0.1:{ports[1]}")
        browser.login("erin@example.com", PASSWORD)
        browser.get("/admin")  # the signed-in form's CSRF token
        assert browser.post("/admin/refresh-stats").status == 303
        fresh = api(ports[0], "GET", "/api/admin/dashboard-stats", admin_token)[1]
        assert not fresh["cached"] and fresh["patients"] == first["patients"] + 1

        for proc in procs:
            if proc is not victim:
                assert proc.stop() == 0, "\n".join(proc.lines)

        # -- every email the outbox sent arrived once (nothing is left that could send) -------
        with db.database.connection_context():
            sent_in_the_end = {m.message_id for m in Message.select().where(
                Message.status == "sent")}
        arrivals = Counter(smtp.message_ids())
        assert set(sent) <= sent_in_the_end == set(arrivals)
        assert max(arrivals.values()) == 1, [m for m, n in arrivals.items() if n > 1]
        assert all(arrivals[message_id] == 1 for message_id in recovered)
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()
        db.database.close()
