"""The benchmarks, one function a row. Each returns its figures over ``params.runs`` runs (median,
min, max); where the peer (Celery + Redis) does the same work, its figure comes from the same
run, measured right after ours, and ``x`` is how many times faster ours is (over 1: ours is
faster; for a latency it is peer / ours, for a rate ours / peer).

The clinic-side rows run in this process on the clinic's own functions, against the generated
databases; the web rows run against a real ``python run.py`` process on the big clinic.
"""

import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from bench.common import ZONE, Timer, percentile, spread


@dataclass
class Params:
    appointments: int = 1_000_000
    small: int = 10_000  # the sweep's comparison clinic
    runs: int = 5
    trickle: int = 40  # single tasks per pickup run
    # Stock SqliteHuey: each task waits for a poll up to 10 s apart; the gaps before each are
    # random over a whole poll, so tasks land anywhere in the workers' sleep, as after idling.
    stock_trickle: int = 6
    stock_max_delay: float = 10.0  # huey's default
    noops: int = 5000
    reminders: int = 5000
    clients: int = 16
    bookings: int = 20  # per client and run
    think: float = 1.0  # mean seconds between one client's bookings (0: back to back)
    confirmations: int = 20  # per run
    wrk_seconds: int = 10
    export_visits: int = 5000
    idle_wait: float = 75.0  # after start, before "memory at idle": past the first tick's jobs
    quick: bool = False


def quick_params(appointments=200):
    return Params(appointments=appointments, small=min(appointments, 100), runs=1, trickle=5,
                  stock_trickle=3, stock_max_delay=0.05, noops=100, reminders=30, clients=2,
                  bookings=3, think=0.0, confirmations=3, wrk_seconds=0, export_visits=0,
                  idle_wait=0.2, quick=True)


class Bench:
    def __init__(self, params, data, peer=None, log=print):
        self.p = params
        self.data = Path(data)
        self.peer = peer
        self.log = log
        self.sink = None
        self.rows = {}
        self.limits = {}
        self.notes = {}

    # -- set-up ---------------------------------------------------------------------------------

    def clinic(self, n):
        """The generated clinic of ``n`` appointments (made on first use)."""
        from bench.generate import generate

        path = self.data / f"clinic-{n}"
        if not (path / "bench.json").exists():
            shutil.rmtree(path, ignore_errors=True)
            self.log(f"generating a clinic of {n:,} appointments in {path} ...")
            generate(path, n, quiet=self.p.quick)
        return path, json.loads((path / "bench.json").read_text())

    def use(self, path, **overrides):
        """Point this process's clinic at the data folder ``path``; returns the settings."""
        from clinic import db, stats
        from clinic.web import create_app

        if db.database.obj is not None and not db.database.is_closed():
            db.database.close()
        s = common.clinic_settings(path, smtp_host=self.sink.host, smtp_port=self.sink.port,
                                   smtp_security="none", **overrides)
        create_app(s)
        db.migrate()
        stats.forget()
        db.database.connect(reuse_if_open=True)
        return s

    @contextlib.contextmanager
    def tasks_left_out(self):
        """The tasks a row queues in the clinic it uses (deliveries of the messages it writes and
        deletes again) leave with it, and so do the monitor's records of them: nobody runs them
        here, and left behind they were run by the web rows' `python run.py` and kept its jobs
        banner looking at a thousand runs queued for hours."""
        from clinic.models import TaskRun
        from huey_config import huey

        mark = TaskRun.select(TaskRun.id).order_by(TaskRun.id.desc()).scalar() or 0
        try:
            yield
        finally:
            TaskRun.delete().where(TaskRun.id > mark).execute()
            huey.flush()

    def fresh(self, name):
        path = self.data / "scratch" / name
        shutil.rmtree(path, ignore_errors=True)
        return self.use(path)

    # -- the physical limits ----------------------------------------------------------------------

    def limit_smtp(self):
        """The sink's own ceiling: a reminder's bytes (as the clinic writes it) sent from two
        client processes, each over one connection with MAIL, RCPT and DATA pipelined, so the
        sink, not its clients, sets the pace; and the sink's CPU a message."""
        from clinic import clock
        from clinic.mail import compose
        from clinic.models import Message

        self.fresh("limits")
        subject, text, html = self.sample_email()
        built = compose.build(Message(key="limit", kind="reminder_advance",
                                   recipient="b@bench.clinic", subject=subject, text_body=text,
                                   html_body=html, attachments=[],
                                   message_id=compose.new_message_id()), now=clock.now())
        data = built.as_bytes(policy=built.policy.clone(linesep="\r\n"))
        sender = compose.from_address().addr_spec
        n = max(50, self.p.reminders)
        rates, cpu = [], []
        for _ in range(self.p.runs):
            before, sink_cpu = self.sink.count(), _cpu(self.sink.proc.pid)
            started = time.time()
            clients = [multiprocessing.Process(target=common.blast, args=(
                self.sink.host, self.sink.port, sender, "b@bench.clinic", data, n // 2))
                for _ in range(2)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            if not self.sink.wait_for(before + 2 * (n // 2)):
                raise RuntimeError("the sink did not take every message")
            rates.append(2 * (n // 2) / (self.sink.arrivals[-1][0] - started))
            cpu.append((_cpu(self.sink.proc.pid) - sink_cpu) / (2 * (n // 2)))
        self.limits["smtp"] = spread(rates)
        self.limits["smtp_cpu_ms"] = spread([c * 1000 for c in cpu])
        self.limits["smtp_bytes"] = len(data)

    def limit_sqlite(self):
        """SQLite's single-row commit rate on this disk, WAL + synchronous=NORMAL like the
        clinic's database."""
        path = self.data / "scratch" / "commits.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma synchronous=normal")
        conn.execute("create table t (id integer primary key, v text)")
        n = 2000 if not self.p.quick else 200
        rates = []
        for _ in range(self.p.runs):
            with Timer() as t:
                for i in range(n):
                    conn.execute("begin immediate")
                    conn.execute("insert into t (v) values (?)", (str(i),))
                    conn.execute("commit")
            rates.append(n / t.seconds)
        conn.close()
        self.limits["sqlite"] = spread(rates)

    # -- the queue ------------------------------------------------------------------------------

    def _consumer(self, s, **options):
        from clinic.server import make_consumer

        return _started(make_consumer(s, **options))

    def queue_rows(self):
        """Pickup after idle, and no-op tasks per second, through the real in-process consumer;
        the same through Celery + Redis; stock SqliteHuey once for context."""
        from bench import ours

        s = self.fresh("queue")
        ours.reset()
        p50, p99, rates = [], [], []
        peer50, peer99, peer_rates, x50, x99, xrate = [], [], [], [], [], []
        for _ in range(self.p.runs):
            # Idle for minutes: every worker has backed off to its longest wait (max_delay);
            # starting them there is the same state without the minutes.
            consumer = self._consumer(s, initial_delay=1.0)
            try:
                time.sleep(0.05 if self.p.quick else 0.5)
                lat = self._trickle(lambda: ours.bench_stamp(time.perf_counter()),
                                    lambda n: ours.started(n), ours.STARTS)
                rate = self._noop_rate(ours.bench_noop, ours.ran, ours.reset)
            finally:
                consumer.stop(graceful=True)
            ours.reset()
            p50.append(percentile(lat, 50))
            p99.append(percentile(lat, 99))
            rates.append(rate)
            if self.peer:
                plat = self.peer.trickle(self.p.trickle)
                prate = self.peer.noop_rate(self.p.noops)
                peer50.append(percentile(plat, 50))
                peer99.append(percentile(plat, 99))
                peer_rates.append(prate)
                x50.append(peer50[-1] / p50[-1])
                x99.append(peer99[-1] / p99[-1])
                xrate.append(rate / prate)
        self._without_monitor(s)
        self.rows["pickup_p50"] = _row(p50, peer50, x50, unit="ms", scale=1000)
        self.rows["pickup_p99"] = _row(p99, peer99, x99, unit="ms", scale=1000)
        self.rows["noop"] = _row(rates, peer_rates, xrate, unit="tasks/s")
        self._stock_queue()

    def _without_monitor(self, s):
        """Once, for context: the same queue with the jobs monitor (clinic/jobs/runs.py, three
        database writes a task) disconnected from Huey's signals."""
        from bench import ours
        from clinic.jobs import runs
        from huey_config import huey

        huey.disconnect_signal(runs.record)
        try:
            consumer = self._consumer(s, initial_delay=1.0)
            try:
                time.sleep(0.2)
                lat = self._trickle(lambda: ours.bench_stamp(time.perf_counter()),
                                    lambda n: ours.started(n), ours.STARTS)
                rate = self._noop_rate(ours.bench_noop, ours.ran, ours.reset)
            finally:
                consumer.stop(graceful=True)
        finally:
            huey.signal(*runs.SIGNALS)(runs.record)
            ours.reset()
        self.rows["no_monitor"] = {"p50_ms": percentile(lat, 50) * 1000,
                                   "p99_ms": percentile(lat, 99) * 1000, "noop_rate": rate}

    def _trickle(self, send, wait, starts, gap=(0.02, 0.1)):
        """Single tasks, each sent once the one before has started, at random gaps (seconds)."""
        rng = random.Random(7)
        base = len(starts)
        for i in range(self.p.trickle):
            send()
            if not wait(base + i + 1):
                raise RuntimeError("a task did not start within 30 s")
            time.sleep(rng.uniform(*gap))
        return list(starts[base:])

    def _noop_rate(self, task, ran, reset):
        """Tasks per second, from the first enqueue to the last task done; one producer thread
        enqueues as fast as it can while the workers run (the web's situation)."""
        reset()
        n = self.p.noops
        started = time.perf_counter()
        for _ in range(n):
            task()
        if not ran(n):
            raise RuntimeError("the no-op tasks did not all run")
        return n / (time.perf_counter() - started)

    def _stock_queue(self):
        from bench import ours

        path = self.data / "scratch" / "stock-huey.db"
        path.unlink(missing_ok=True)
        plain, stamp, noop = ours.stock(path)
        ours.reset()
        # Huey's defaults; pinned at the longest wait (max_delay), as after minutes idle.
        consumer = _started(plain.create_consumer(workers=2, worker_type="thread",
                                                  initial_delay=self.p.stock_max_delay,
                                                  max_delay=self.p.stock_max_delay))
        try:
            time.sleep(0.2)
            p = self.p
            saved, p.trickle = p.trickle, p.stock_trickle
            try:
                lat = self._trickle(lambda: stamp(time.perf_counter()),
                                    lambda n: ours.started(n, timeout=3 * p.stock_max_delay + 5),
                                    ours.STARTS, gap=(0, p.stock_max_delay))
            finally:
                p.trickle = saved
        finally:
            consumer.stop(graceful=True)
        # Throughput with a short poll, so that the idle wait does not count.
        consumer = _started(plain.create_consumer(workers=2, worker_type="thread"))
        try:
            rate = self._noop_rate(noop, ours.ran, ours.reset)
        finally:
            consumer.stop(graceful=True)
        ours.reset()
        self.rows["stock_huey"] = {"p50_ms": percentile(lat, 50) * 1000,
                                   "p99_ms": percentile(lat, 99) * 1000,
                                   "max_ms": max(lat) * 1000, "samples": len(lat),
                                   "noop_rate": rate, "max_delay": self.p.stock_max_delay}

    # -- email ----------------------------------------------------------------------------------

    def reminder_delivery(self):
        """N due reminders in the outbox, delivered to the sink: ours by sweeper.sweep (batches of
        100 over one connection each), the peer one message per task."""
        from clinic import clock
        from clinic.mail import compose, sweeper
        from clinic.models import Message

        self.fresh("outbox")
        subject, text, html = self.sample_email()
        n = self.p.reminders
        ours_rates, peer_rates, xs = [], [], []
        for run in range(self.p.runs):
            now = clock.now()
            rows = [dict(key=f"reminder_2h:{run}:{i}", kind="reminder_advance",
                         recipient=f"patient{i}@bench.clinic", subject=subject, text_body=text,
                         html_body=html, attachments=[], message_id=compose.new_message_id(),
                         status="pending", priority=100, due_at=now, created_at=now,
                         updated_at=now) for i in range(n)]
            with mail_db_atomic():
                for lo in range(0, n, 500):
                    Message.insert_many(rows[lo:lo + 500]).execute()
            before = self.sink.count()
            started = time.time()
            tried = sweeper.sweep(now=clock.now())
            if tried != n or not self.sink.wait_for(before + n, timeout=120):
                raise RuntimeError(f"sweep sent {tried} of {n}")
            ours_rates.append(n / (self.sink.arrivals[-1][0] - started))
            if self.peer:
                peer_rates.append(self.peer.send_many(n, subject, text, html, self.sink))
                xs.append(ours_rates[-1] / peer_rates[-1])
        self.rows["reminders"] = _row(ours_rates, peer_rates, xs, unit="emails/s")

    def sample_email(self):
        """A rendered reminder (subject, text, html): what the peer's tasks send."""
        from clinic import clock, settings
        from clinic.mail import compose

        start = clock.now() + timedelta(hours=2)
        return compose.render("reminder_advance", patient_name="Ann Example",
                           doctor_name="Dr Bea Example", specialization="Cardiology",
                           start=start, end=start + timedelta(minutes=30), timezone=str(ZONE),
                           link=settings.get().base_url + "/a/xyz", cutoff="2 hours")

    # -- the big clinic ---------------------------------------------------------------------------

    def sweep(self):
        """reminders.send_advance at the big and the small clinic: the 5 minutes' worth that
        falls due at 10:00 (tomorrow's 10:00 visits' 24 h reminders, today's 12:00 visits' 2 h
        ones), and a run with nothing new due (its window read, every key found taken)."""
        result = {}
        for n in (self.p.appointments, self.p.small):
            path, info = self.clinic(n)
            self.use(path)
            day = datetime.fromisoformat(info["generated_at"]).astimezone(ZONE).date()
            at = datetime(day.year, day.month, day.day, 10, 0, 30, tzinfo=ZONE).astimezone(UTC)
            with self.tasks_left_out():
                due, idle, written = self._sweep_runs(at)
            if not self.p.quick and not all(written):
                raise RuntimeError(f"the sweep at {n:,} appointments found nothing due")
            result[n] = {"due": due, "idle": idle, "written": spread(written)}
        big, small = result[self.p.appointments], result[self.p.small]
        for key in ("due", "idle"):
            ratio = [b / s for b, s in zip(big[key], small[key], strict=True)]
            self.rows[f"sweep_{key}"] = {
                "ours": _ms(spread(big[key])), "small": _ms(spread(small[key])),
                "ratio": spread(ratio), "unit": "ms", "written": big["written"]}

    def _sweep_runs(self, at):
        """The sweep's runs at ``at`` in the clinic in use, taken back to 09:55:30 first (whenever
        the generator ran that day) and put back after."""
        from clinic import reminders
        from clinic.models import Message

        later, ended = _as_it_was(at - timedelta(minutes=5))
        # After the set-aside: SQLite hands its ids out again, and they must be free to go back.
        first = Message.select(Message.id).order_by(Message.id.desc()).scalar() or 0
        try:
            reminders.send_advance(now=at - timedelta(minutes=5))  # the morning so far
            mark = Message.select(Message.id).order_by(Message.id.desc()).scalar() or 0
            due, idle, written = [], [], []
            for _ in range(self.p.runs):
                with Timer() as t:
                    counts = reminders.send_advance(now=at)
                due.append(t.seconds)
                written.append(counts["sent"] + counts["skipped"])
                with Timer() as t:
                    reminders.send_advance(now=at)
                idle.append(t.seconds)
                Message.delete().where(Message.id > mark).execute()
        finally:
            Message.delete().where(Message.id > first).execute()
            _put_back(later, ended)
        return due, idle, written

    def reports(self):
        """reports.send_monthly for last month at the big clinic: every active doctor's report
        written with its email queued in the outbox (not delivered)."""
        from clinic import reports
        from clinic.models import Message, MonthlyReport

        path, info = self.clinic(self.p.appointments)
        self.use(path)
        day = datetime.fromisoformat(info["generated_at"]).astimezone(ZONE).date()
        at = datetime(day.year, day.month, 1, 9, tzinfo=ZONE).astimezone(UTC)
        times, visits = [], None
        with self.tasks_left_out():
            first = Message.select(Message.id).order_by(Message.id.desc()).scalar() or 0
            for _ in range(self.p.runs):
                MonthlyReport.delete().execute()
                Message.delete().where(Message.id > first).execute()
                with Timer() as t:
                    result = reports.send_monthly(now=at)
                times.append(t.seconds)
                if visits is None:
                    month = reports.previous_month(at)
                    visits = sum(len(v) for v in reports.visits(month).values())
            MonthlyReport.delete().execute()
            Message.delete().where(Message.id > first).execute()
        self.rows["reports"] = {"ours": spread(times), "unit": "s", "doctors": result["doctors"],
                                "sent": result["sent"], "visits": visits,
                                "month": result["month"]}

    def dashboard(self):
        from clinic import stats

        path, _ = self.clinic(self.p.appointments)
        self.use(path)
        fresh, cached = [], []
        for _ in range(self.p.runs):
            with Timer() as t:
                stats.dashboard(refresh=True)
            fresh.append(t.seconds)
            with Timer() as t:
                for _ in range(1000):
                    stats.dashboard()
            cached.append(t.seconds / 1000)
        self.rows["dashboard_fresh"] = {"ours": _ms(spread(fresh)), "unit": "ms"}
        self.rows["dashboard_cached"] = {"ours": _ms(spread(cached)), "unit": "ms"}

    def export(self):
        """One patient's history export (clinic.exports.build): time, and peak Python memory
        (tracemalloc) against a patient with a short history, to show it flat."""
        from clinic import exports
        from clinic.jobs import progress
        from clinic.models import Appointment, Export, Message, User

        path, _ = self.clinic(self.p.appointments)
        self.use(path)
        heavy = User.get(User.email == "export@bench.clinic")
        light = User.get(User.email == "patient@bench.clinic")
        first = Message.select(Message.id).order_by(Message.id.desc()).scalar() or 0

        def build(user, trace=False):
            record = progress.create(exports.TASK_NAME, user=user)
            Export.create(patient=user.id, task_id=record.task_id,
                          expires_at=datetime.now(UTC) + timedelta(hours=1))
            if trace:
                tracemalloc.start()
            with Timer() as t:
                result = exports.build(record.task_id)
            peak = tracemalloc.get_traced_memory()[1] if trace else None
            if trace:
                tracemalloc.stop()
            if "rows" not in result:
                raise RuntimeError(f"export failed: {result}")
            export = Export.get(Export.task_id == record.task_id)
            (exports.folder() / export.filename).unlink(missing_ok=True)
            return t.seconds, result["rows"], peak

        made = Export.select(Export.id).order_by(Export.id.desc()).scalar() or 0
        with self.tasks_left_out():  # each export emails its file
            times = [build(heavy)[0] for _ in range(self.p.runs)]
            _, rows, peak = build(heavy, trace=True)
            _, light_rows, light_peak = build(light, trace=True)
            Message.delete().where(Message.id > first).execute()
            Export.delete().where(Export.id > made).execute()
        self.rows["export"] = {
            "ours": spread(times), "unit": "s", "rows": rows, "peak_mb": peak / 2**20,
            "light_rows": light_rows, "light_peak_mb": light_peak / 2**20,
            "visits": Appointment.select().where(Appointment.patient == heavy.id).count()}

    # -- a real `python run.py` ------------------------------------------------------------------

    def web(self):
        path, info = self.clinic(self.p.appointments)
        path = self._copy(path, "web-clinic")
        from clinic import db

        if db.database.obj is not None:
            db.database.close()
        starts, idle_rss = [], []
        proc = None
        for run in range(self.p.runs):
            proc, port, seconds = self._start(path)
            starts.append(seconds)
            time.sleep(min(1.0, self.p.idle_wait))
            idle_rss.append(common.rss_mb(proc.pid))
            if run < self.p.runs - 1:
                self._stop(proc)
        self._settle(proc)
        self.rows["start"] = {"ours": spread(starts), "unit": "s"}
        self.rows["rss_idle"] = {"ours": spread(idle_rss), "unit": "MiB"}
        self.rows["rss_jobs"] = {"ours": {"median": common.rss_mb(proc.pid), "n": 1},
                                 "unit": "MiB"}
        try:
            if self.p.wrk_seconds and shutil.which("wrk"):
                self._wrk(port)
            elif self.p.wrk_seconds:
                self.notes["wrk"] = "wrk is not installed: apt-get install -y wrk"
            self._bookings(port, info)
            self._confirmations(port, info)
            self.rows["rss_after"] = {"ours": {"median": common.rss_mb(proc.pid), "n": 1},
                                      "unit": "MiB"}
        finally:
            self._stop(proc)
        if self.peer:
            self.rows["peer_start"] = {"ours": spread(self.peer.start_times), "unit": "s"}

    def _copy(self, path, name):
        """A copy of the clinic in ``path`` for a real `python run.py`, whose jobs change what
        they find (no-shows, review requests, reminders, reports) and whose bookings stay: the
        other rows, and the next suite run, read the clinic as it was generated."""
        copy = self.data / "scratch" / name
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        source, target = sqlite3.connect(path / "clinic.db"), sqlite3.connect(copy / "clinic.db")
        try:
            with target:
                source.backup(target)
        finally:
            source.close()
            target.close()
        return copy

    def _start(self, path):
        port = common.free_port()
        env = common.clinic_env(path, port, self.sink.port)
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "run.py"], cwd=common.ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
                    if r.status == 200:
                        return proc, port, time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"run.py exited with {proc.returncode}") from None
                time.sleep(0.01)
        raise RuntimeError("run.py did not answer within 60 s")

    def _stop(self, proc):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _settle(self, proc):
        """Wait until idle_wait seconds after the start (past the first scheduler tick and its
        jobs) and the process has used no CPU for 2 s."""
        deadline = time.monotonic() + self.p.idle_wait
        while time.monotonic() < deadline:
            time.sleep(0.5)
        last, quiet_since = _cpu(proc.pid), time.monotonic()
        while time.monotonic() - quiet_since < min(2.0, self.p.idle_wait):
            time.sleep(0.5)
            now = _cpu(proc.pid)
            if now - last > 0.02:
                quiet_since = time.monotonic()
            last = now

    def _wrk(self, port):
        admin, patient = common.Browser(port), common.Browser(port)
        admin.login("admin@bench.clinic", "bench1234")
        patient.login("patient@bench.clinic", "bench1234")
        admin.request("GET", "/admin")  # fills the dashboard's cache
        for key, browser, page in (("wrk_patient", patient, "/patient"),
                                   ("wrk_dashboard", admin, "/admin")):
            rates = []
            for _ in range(self.p.runs):
                out = subprocess.run(
                    ["wrk", "-t2", "-c32", f"-d{self.p.wrk_seconds}s", "-H",
                     f"Cookie: {browser.cookie_header()}", f"http://127.0.0.1:{port}{page}"],
                    capture_output=True, text=True, check=True).stdout
                if "Non-2xx" in out:
                    raise RuntimeError(f"wrk saw errors on {page}:\n{out}")
                rates.append(float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)))
            self.rows[key] = {"ours": spread(rates), "unit": "pages/s"}
        admin.close()
        patient.close()

    def _patients(self, info):
        n = min(self.p.clients, info["patients"] - 2, info["doctors"])
        return [(f"patient{i}@bench.clinic", 2 + i) for i in range(10, 10 + n)] if \
            info["patients"] > 12 + n else [(f"patient{i}@bench.clinic", 2 + i)
                                            for i in range(2, 2 + n)]

    def _bookings(self, port, info):
        """16 patients booking at the same time, each about once a second (random pauses of 0 to
        2 s between one's bookings), while the SMTP server takes 2 s to answer each message: the
        latency of each booking POST (the 303 after the commit). Then once, for context, the
        same with no pauses at all (every client books again as soon as it has its answer)."""
        self.rows["booking_p99"] = self._booking_runs(port, info, self.p.think, self.p.runs, 0)
        if self.p.think:
            saturated = self._booking_runs(port, info, 0.0, 1, self.p.runs)
            self.rows["booking_saturated"] = saturated

    def _booking_runs(self, port, info, think, runs, first_run):
        doctors = _doctor_ids(info)
        patients = self._patients(info)
        browsers = []
        for email, _ in patients:
            browser = common.Browser(port)
            browser.login(email, "bench1234")
            browsers.append(browser)
        self.sink.delay(2.0)
        before = self.sink.count()
        today = datetime.now(UTC).astimezone(ZONE).date()
        p50, p99, worst, errors = [], [], [], 0
        total = 0
        try:
            for run in range(first_run, first_run + runs):
                latencies = [[] for _ in browsers]
                failures = []

                def client(c, run=run, latencies=latencies, failures=failures):
                    browser = browsers[c]
                    pauses = random.Random(c)
                    for j in range(self.p.bookings):
                        if think:
                            time.sleep(pauses.uniform(0, 2 * think))
                        day = today + timedelta(days=10 + 2 * run + j // 16)
                        start = datetime(day.year, day.month, day.day, 8, tzinfo=ZONE) + \
                            timedelta(minutes=30 * (j % 16))
                        form = {"doctor_id": doctors[c], "start": start.isoformat(),
                                "date": day.isoformat(), "reason": "Check-up"}
                        with Timer() as t:
                            status, _, _ = browser.request("POST", "/patient/appointments", form)
                        latencies[c].append(t.seconds)
                        if status != 303:
                            failures.append(status)

                threads = [threading.Thread(target=client, args=(c,))
                           for c in range(len(browsers))]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                flat = [x for lat in latencies for x in lat]
                total += len(flat) - len(failures)
                errors += len(failures)
                p50.append(percentile(flat, 50))
                p99.append(percentile(flat, 99))
                worst.append(max(flat))
        finally:
            self.sink.delay(0)
        drained = self.sink.wait_for(before + total, timeout=120)
        for browser in browsers:
            browser.close()
        return {"ours": _ms(spread(p99)), "p50": _ms(spread(p50)), "max": _ms(spread(worst)),
                "unit": "ms", "clients": len(browsers), "errors": errors, "bookings": total,
                "drained": drained, "think": think}

    def _confirmations(self, port, info):
        """One booking at a time: from sending the booking POST to the SMTP server's 250 for its
        confirmation. The peer: from apply_async of the email task to the 250."""
        doctors = _doctor_ids(info)
        email, _ = self._patients(info)[0]
        browser = common.Browser(port)
        browser.login(email, "bench1234")
        today = datetime.now(UTC).astimezone(ZONE).date()
        rng = random.Random(3)
        ours, peer, xs = [], [], []
        for run in range(self.p.runs):
            lat = []
            for j in range(self.p.confirmations):
                day = today + timedelta(days=40 + 2 * run + j // 16)
                start = datetime(day.year, day.month, day.day, 8, tzinfo=ZONE) + \
                    timedelta(minutes=30 * (j % 16))
                form = {"doctor_id": doctors[0], "start": start.isoformat(),
                        "date": day.isoformat(), "reason": "Check-up"}
                index = self.sink.count()
                sent = time.time()
                status, _, _ = browser.request("POST", "/patient/appointments", form)
                if status != 303:
                    raise RuntimeError(f"booking failed: HTTP {status}")
                arrived = self.sink.wait_for_rcpt(email, index)
                if arrived is None:
                    raise RuntimeError("no confirmation arrived within 30 s")
                lat.append(arrived - sent)
                time.sleep(rng.uniform(0.05, 0.2))
            ours.append(percentile(lat, 50))
            if self.peer:
                peer.append(percentile(self.peer.confirmations(
                    self.p.confirmations, self.sink, self.sample_email()), 50))
                xs.append(peer[-1] / ours[-1])
        browser.close()
        self.rows["confirmation"] = _row(ours, peer, xs, unit="ms", scale=1000)


class _started:
    """A Huey consumer started in this thread, whose stop() puts back the signal handlers its
    start() replaced (the suite also runs inside pytest)."""

    def __init__(self, consumer):
        names = ("SIGINT", "SIGTERM", "SIGHUP")
        self.saved = {sig: signal.getsignal(sig) for sig in
                      (getattr(signal, n) for n in names if hasattr(signal, n))}
        self.consumer = consumer
        consumer.start()

    def stop(self, graceful=True):
        try:
            self.consumer.stop(graceful=graceful)
        finally:
            for sig, handler in self.saved.items():
                signal.signal(sig, handler)


def _as_it_was(moment):
    """Take the generated clinic back to how it was at ``moment`` on the day it was made: the
    advance reminders it recorded as sent that fall due later are set aside, and the visits
    starting later that it recorded as completed or missed (it ran after they ended) are booked
    again. Returns what _put_back() needs: the messages (every column, ids included) and the
    visits' ids by status. Without it the sweep's workload depended on the hour the clinic was
    generated (after 12:30 the 12:00 visits were over, and a run wrote 29 reminders, not 55)."""
    from clinic import reminders, settings
    from clinic.models import Appointment, Message

    offsets = {reminders.label(o): o for o in settings.get().reminder_offsets}
    rows = (Message.select(Message.id, Message.key, Appointment.start)
            .join(Appointment, on=(Message.appointment == Appointment.id))
            .where(Message.kind == "reminder_advance").tuples())
    ids = [ident for ident, key, start in rows
           if reminders.due_at(start, offsets[key.split(":")[0].removeprefix("reminder_")],
                               ZONE) > moment]
    later = []
    for lo in range(0, len(ids), 500):
        chunk = ids[lo:lo + 500]
        later += list(Message.select().where(Message.id.in_(chunk)).dicts())
        Message.delete().where(Message.id.in_(chunk)).execute()
    ended = {}
    for ident, status in (Appointment.select(Appointment.id, Appointment.status)
                          .where(Appointment.start > moment,
                                 Appointment.status.in_(("completed", "no_show"))).tuples()):
        ended.setdefault(status, []).append(ident)
    for ids in ended.values():
        for lo in range(0, len(ids), 500):
            chunk = ids[lo:lo + 500]
            # Cancelled as often as the generator cancels a visit still to come (8 %).
            for status, these in (("cancelled", [i for i in chunk if i % 25 < 2]),
                                  ("booked", [i for i in chunk if i % 25 >= 2])):
                Appointment.update(status=status).where(Appointment.id.in_(these)).execute()
    return later, ended


def _put_back(later, ended):
    from clinic.models import Appointment, Message

    try:
        for status, ids in ended.items():
            for lo in range(0, len(ids), 500):
                (Appointment.update(status=status)
                 .where(Appointment.id.in_(ids[lo:lo + 500])).execute())
    finally:
        if later:
            Message.insert_many(later).execute()


def mail_db_atomic():
    from clinic.db import database

    return database.atomic()


def _doctor_ids(info):
    return [str(2 + i) for i in range(info["doctors"])]


def _cpu(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(figures):
    return None if figures is None else {k: (v * 1000 if k != "n" else v)
                                         for k, v in figures.items()}


def _row(ours, peer, xs, unit, scale=1):
    scaled = (lambda f: _ms(f)) if scale == 1000 else (lambda f: f)
    return {"ours": scaled(spread(ours)), "peer": scaled(spread(peer)), "x": spread(xs),
            "unit": unit}
