"""The running process: waitress serving the web app and Huey's consumer running the jobs in
threads beside it, and a clean stop on Ctrl-C or SIGTERM.

Stopping, in order: stop accepting connections; let requests in flight finish; let running jobs
finish (at most CLINIC_SHUTDOWN_TIMEOUT); then leave. Nothing is left half-written because
every write is a transaction and every job's effect is recorded in the outbox first.
"""

import logging
import signal
import threading
import time

from waitress import create_server

# Every module that declares tasks, so that the workers know them all (Huey finds a task by the
# module and name it was declared with).
from clinic import announcements, db, exports, reports, settings  # noqa: F401
from clinic.jobs import heartbeats, runs, scheduler
from clinic.mail import delivery  # noqa: F401
from clinic.web import create_app

log = logging.getLogger("clinic")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

HEALTH_CHECK_INTERVAL = 10  # seconds between checks that every worker thread is alive
STOP_BEATING_TIMEOUT = 60  # seconds a stop waits for the health thread to take the beat away


def prepare(s):
    """Configure everything on settings ``s`` and bring the database up to date."""
    app = create_app(s)
    applied = db.migrate()
    if applied:
        log.info("database migrated: %s", ", ".join(applied))
    return app


def make_consumer(s, periodic=True, **options):
    """Huey's consumer as threads in this process. ``periodic`` lets it run the periodic tasks:
    of all the processes that may, the one holding the scheduler lease does
    (clinic.jobs.scheduler); ``options`` override Huey's consumer options."""
    from huey_config import huey

    def lease():  # runs in Huey's scheduler thread
        with db.connection():
            return scheduler.hold_scheduler(runs.HOLDER)

    def release():
        with db.connection():
            scheduler.release_scheduler(runs.HOLDER)

    return huey.create_consumer(**{
        "lease": lease,
        "release": release,
        "workers": s.workers,
        "worker_type": "thread",
        "periodic": periodic,
        "initial_delay": 0.05,
        # Idle workers are woken by enqueue() (clinic.jobs.queue); polling a second apart only
        # finds tasks queued by other processes.
        "max_delay": 1.0,
        "shutdown_timeout": s.shutdown_timeout.total_seconds(),
        **options,
    })


def web_server(app, s, map=None):
    """waitress serving ``app`` on settings ``s`` (``map``: waitress's socket map, for a caller
    that runs the loop itself). Behind a reverse proxy (CLINIC_TRUSTED_PROXY)
    the client's address and scheme come from the proxy's X-Forwarded-For and -Proto, so sign-in
    throttling counts each client, not the proxy; from anyone else those headers are dropped."""
    proxy = {}
    if s.trusted_proxy:
        proxy = {"trusted_proxy": s.trusted_proxy, "trusted_proxy_count": 1,
                 "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"}}
    return create_server(app, host=s.host, port=s.port, threads=s.web_threads, ident="clinic",
                         max_request_body_size=16 * 1024 * 1024,
                         clear_untrusted_proxy_headers=True, map=map, **proxy)


class Process:
    """One clinic process: web, jobs, or both."""

    def __init__(self, s, web=True, jobs=True, scheduler=True, out=print, app=None):
        self.settings = s
        self.app = app  # already prepared (tests add routes); default: prepare(s)
        self.web = web
        self.jobs = jobs
        self.scheduler = scheduler and jobs
        self.out = out
        self.stopping = threading.Event()
        self.drained = threading.Event()
        self.stopped = threading.Event()
        self.workers_stopped = threading.Event()
        self.server = None
        self.consumer = None
        self.watcher = None

    def run(self):
        s = self.settings
        app = self.app or prepare(s)
        # Ours, set before anything starts (in the main thread, as signal handlers must be): a
        # stop must also stop the web server, and always gracefully.
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        if self.jobs:
            try:  # runs left "running" by processes that were killed
                with db.connection():
                    heartbeats.interrupt_orphans()
                    heartbeats.beat()  # this one runs tasks (others can tell it is not gone)
            except Exception:
                log.exception("could not look for runs whose process is gone")
            self.consumer = make_consumer(s, periodic=self.scheduler)
            self._start_consumer()
        self.watcher = threading.Thread(target=self._watch_workers, name="clinic-health",
                                        daemon=True)
        self.watcher.start()
        try:
            if self.stopping.is_set():
                return  # stopped while starting: nothing to serve (finally: _finish)
            if self.web:
                try:
                    self.server = web_server(app, s)
                except OSError as exc:
                    raise SystemExit(f"clinic: cannot listen on {s.host}:{s.port}: "
                                     f"{exc.strerror}. Set CLINIC_PORT to a free port.") from None
                url = f"http://{s.host}:{self.server.effective_port}"
                try:
                    self.out(f"clinic is running at {url}/  (Ctrl-C stops it)")
                    self.out(f"Sign in at {url}/login")
                    self.server.run()  # returns after _on_signal's interrupt
                except KeyboardInterrupt:
                    # The drained stop can land before server.run() has begun its loop.
                    if not self.drained.is_set():
                        raise
            else:
                self.out("clinic worker is running (Ctrl-C stops it)")
                self.stopping.wait()
        finally:
            self._finish()

    def _start_consumer(self):
        """Start Huey's workers, then put this process's handlers back: Huey's start() sets its
        own for SIGINT, SIGTERM and SIGHUP, whose stop only Huey's run() loop acts on, and this
        process does not run that loop. The stop signals are held while the workers start (a
        waiting task starts at once), so one that comes meanwhile reaches our handler."""
        hangup = signal.getsignal(signal.SIGHUP)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.consumer.start()
        finally:
            for sig in STOP_SIGNALS:
                signal.signal(sig, self._on_signal)
            signal.signal(signal.SIGHUP, hangup)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _on_signal(self, signum, frame):
        if self.drained.is_set():
            raise KeyboardInterrupt  # from _drain_web: ends server.run() in the main thread
        if self.stopping.is_set():
            self.out("already stopping; waiting for running work to finish")
            return
        self.out(f"{signal.Signals(signum).name} received: finishing requests and jobs")
        self.stopping.set()
        if self.server is not None:
            self.server.accepting = False  # no new connections from here on
            threading.Thread(target=self._drain_web, name="clinic-drain", daemon=True).start()

    def _drain_web(self):
        """Wait until every connection's requests are answered and their responses sent, then
        end the server loop."""
        deadline = time.monotonic() + self.settings.shutdown_timeout.total_seconds()
        while time.monotonic() < deadline:
            channels = list(self.server.active_channels.values())
            if not any(ch.requests or ch.total_outbufs_len for ch in channels):
                break
            time.sleep(0.02)
        self.drained.set()
        # _on_signal, run in the main thread, now ends server.run(); the trigger wakes its loop.
        signal.raise_signal(signal.SIGINT)
        self.server.pull_trigger()

    def _watch_workers(self):
        # Until the workers have stopped, not only until the stop begins: a graceful stop waits
        # up to CLINIC_SHUTDOWN_TIMEOUT for running tasks, and they are still running then.
        next_beat = time.monotonic() + heartbeats.BEAT_EVERY.total_seconds()
        while not self.workers_stopped.wait(HEALTH_CHECK_INTERVAL):
            if self.consumer is None:
                continue
            # Each on its own: this thread must go on, and a failed check must not stop the
            # beats (without them, another machine takes this process's runs for orphans).
            if not self.stopping.is_set():  # stopping workers are not to be restarted
                try:
                    self.consumer.check_worker_health()
                except Exception:
                    log.exception("could not check the worker threads")
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + heartbeats.BEAT_EVERY.total_seconds()
                try:
                    with db.connection():
                        heartbeats.beat()
                except Exception:
                    log.exception("could not say that this process still runs tasks")
        if self.consumer is not None:  # here, so that no beat of this thread can come after
            try:
                with db.connection():
                    heartbeats.stop_beating()
            except Exception:
                log.exception("could not say that this process runs no more tasks")

    def _finish(self):
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
        self.workers_stopped.set()
        if self.watcher is not None:
            self.watcher.join(STOP_BEATING_TIMEOUT)  # it takes this process's beat away
        if self.server is not None:
            try:
                self.server.close()
            except OSError as exc:  # already closed by waitress; must not mask the exit
                log.debug("closing the web server: %s", exc)
        if not db.database.is_closed():
            db.database.close()
        self.stopped.set()
        self.out("clinic stopped")


def serve(s=None, **kwargs):
    s = s or settings.load()
    Process(s, **kwargs).run()
