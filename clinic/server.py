"""The running process: waitress serving the web app and Huey's consumer running the jobs in
threads beside it, and a clean stop on Ctrl-C or SIGTERM.

Stopping, in order: stop accepting connections; let requests in flight finish; let running jobs
finish (at most CLINIC_SHUTDOWN_TIMEOUT); then leave. Nothing is left half-written because
every write is a transaction and every job's effect is recorded in the outbox first.
"""

import _thread
import logging
import signal
import threading
import time

from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from clinic import db, monitor, settings
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


def make_consumer(s, scheduler=True, **options):
    """Huey's consumer as threads in this process. ``scheduler`` lets it run the periodic tasks:
    of all the processes that may, the one holding the scheduler lease does (clinic.jobs);
    ``options`` override Huey's consumer options."""
    import clinic.tasks  # noqa: F401  (registers the tasks)
    from clinic import jobs
    from huey_config import huey

    def lease():  # runs in Huey's scheduler thread
        with db.connection():
            return jobs.hold_scheduler(monitor.HOLDER)

    def release():
        with db.connection():
            jobs.release_scheduler(monitor.HOLDER)

    return huey.create_consumer(**{
        "lease": lease,
        "release": release,
        "workers": s.workers,
        "worker_type": "thread",
        "periodic": scheduler,
        "initial_delay": 0.05,
        # Idle workers are woken by enqueue() (clinic.queue); polling a second apart only finds
        # tasks queued by other processes.
        "max_delay": 1.0,
        "shutdown_timeout": s.shutdown_timeout.total_seconds(),
        **options,
    })


class QueueWarnings:
    """Stands in for waitress's queue logger. waitress warns "Task queue depth is N" each time a
    request has to wait for a free thread: under load, a log line for nearly every request
    (4,600 in 48 s of the bench's page load) that buries everything else the log says, and
    making each one (a log record, even if filtered out) took 7 % of the web process's Python
    time. One a minute gets through, saying how many more there were."""

    def __init__(self, logger, every=60.0, clock=time.monotonic):
        self.logger, self.every, self.clock = logger, every, clock
        self.last = None  # when one last got through
        self.held = 0

    def warning(self, message, *args):
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            self.held += 1
            return
        if self.held:
            message += f" (and {self.held} more such warnings since the last)"
        self.last, self.held = now, 0
        self.logger.warning(message, *args)


class Dispatcher(ThreadedTaskDispatcher):
    """waitress's request threads: one, and more (up to ``most``, CLINIC_WEB_THREADS) only while
    requests are held up.

    Python runs one thread at a time, and every SQLite call lets another take a turn, so
    threads serving requests side by side mostly wait for each other: with four, the bench's
    pages came at 0.6 times the rate of one (the machine switched threads 44,000 times a
    second, 135 times a page).
    One thread alone, though, would hold every visitor up behind one slow request: one that
    waits for SQLite's write lock while a job writes, say. So a watch thread looks at the line
    every ``stall`` seconds while requests come: when requests wait and none was taken since
    the last look, one more thread starts. Once the line moves again and no request has been
    running for longer than ``stall``, a thread goes every ``calm`` seconds, down to one (not
    while one is stuck: the others would only be needed again). It sleeps while no request
    comes. (Requests taken are counted, not compared: waitress queues a connection, not a
    request, so the same one can be first in line again.)"""

    def __init__(self, most, stall=0.1, calm=1.0):
        super().__init__()
        self.most, self.stall, self.calm = most, stall, calm
        self.added = 0  # requests queued so far
        self.busy = {}  # thread ident -> when it took the request it is serving
        self.looks = 0  # the watch's looks at the line, and threads started: for tests
        self.started = 0
        self.waiting = threading.Event()  # a request was queued
        self.closing = threading.Event()
        self.set_thread_count(1)
        self.watch = threading.Thread(target=self._watch, name="clinic-web-watch", daemon=True)
        self.watch.start()

    def start_new_thread(self, target, thread_no):
        self.started += 1
        super().start_new_thread(target, thread_no)

    def add_task(self, task):
        # waitress's own, with the count and the timing added under the same lock. Called from
        # waitress's loop, and from a request thread when a client pipelines requests.
        with self.lock:
            self.queue.append(_Timed(task, self.busy))
            self.added += 1
            self.queue_cv.notify()
            idle = len(self.threads) - self.stop_count - self.active_count
            if len(self.queue) > idle:
                self.queue_logger.warning("Task queue depth is %d", len(self.queue) - idle)
        if not self.waiting.is_set():
            self.waiting.set()

    def running(self):
        """Threads serving, not counting those told to go."""
        with self.lock:
            return len(self.threads) - self.stop_count

    def shutdown(self, cancel_pending=True, timeout=5):
        self.closing.set()
        self.waiting.set()  # lets the watch see it
        self.watch.join(timeout)
        return super().shutdown(cancel_pending=cancel_pending, timeout=timeout)

    def _watch(self):
        while True:
            self.waiting.wait()
            if self.closing.is_set():
                return
            self.waiting.clear()
            seen, calm = None, 0.0
            while not self.closing.wait(self.stall):
                self.looks += 1
                now = time.monotonic()
                with self.lock:
                    queued = len(self.queue)
                    taken = self.added - queued
                running = self.running()
                stuck = any(now - since > self.stall for since in tuple(self.busy.values()))
                if queued and taken == seen:
                    self._grow(running)
                    calm = 0.0
                elif stuck:
                    calm = 0.0
                else:
                    calm += self.stall
                    if calm >= self.calm and running > 1:
                        self.set_thread_count(running - 1)
                        calm = 0.0
                    elif not queued and running <= 1:
                        break  # back to sleep until a request waits again
                seen = taken

    def _grow(self, running):
        if running >= self.most or self.closing.is_set():
            return
        with self.lock:
            if self.stop_count:  # a thread told to go, still busy: it stays instead
                self.stop_count -= 1
                return
        self.set_thread_count(running + 1)


class _Timed:
    """A queued request (waitress's channel) that notes which thread serves it, and since when."""

    __slots__ = ("task", "busy")

    def __init__(self, task, busy):
        self.task, self.busy = task, busy

    def service(self):
        me = threading.get_ident()
        self.busy[me] = time.monotonic()
        try:
            return self.task.service()
        finally:
            del self.busy[me]

    def cancel(self):
        return self.task.cancel()

    def __repr__(self):
        return repr(self.task)


def web_server(app, s):
    """waitress serving ``app`` on settings ``s``. Behind a reverse proxy (CLINIC_TRUSTED_PROXY)
    the client's address and scheme come from the proxy's X-Forwarded-For and -Proto, so sign-in
    throttling counts each client, not the proxy; from anyone else those headers are dropped."""
    proxy = {}
    if s.trusted_proxy:
        proxy = {"trusted_proxy": s.trusted_proxy, "trusted_proxy_count": 1,
                 "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"}}
    dispatcher = Dispatcher(s.web_threads)
    try:
        # _dispatcher: waitress's way to bring one's own (it names it a test shim).
        server = create_server(app, host=s.host, port=s.port, ident="clinic",
                               _dispatcher=dispatcher, max_request_body_size=16 * 1024 * 1024,
                               clear_untrusted_proxy_headers=True, **proxy)
    except BaseException:
        dispatcher.shutdown()
        raise
    server.task_dispatcher.queue_logger = QueueWarnings(logging.getLogger("waitress.queue"))
    return server


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
                    monitor.interrupt_orphans()
                    monitor.beat()  # this one runs tasks (others can tell it is not gone)
            except Exception:
                log.exception("could not look for runs whose process is gone")
            self.consumer = make_consumer(s, scheduler=self.scheduler)
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
        """Wait until the requests in flight are answered, then end the server loop."""
        dispatcher = self.server.task_dispatcher
        deadline = time.monotonic() + self.settings.shutdown_timeout.total_seconds()
        while time.monotonic() < deadline:
            busy = dispatcher.active_count or dispatcher.queue
            writing = any(getattr(ch, "total_outbufs_len", 0) for ch in
                          list(self.server._map.values()))
            if not busy and not writing:
                break
            time.sleep(0.02)
        self.drained.set()
        _thread.interrupt_main()  # runs _on_signal in the main thread, which ends server.run()

    def _watch_workers(self):
        # Until the workers have stopped, not only until the stop begins: a graceful stop waits
        # up to CLINIC_SHUTDOWN_TIMEOUT for running tasks, and they are still running then.
        next_beat = time.monotonic() + monitor.BEAT_EVERY.total_seconds()
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
                next_beat = time.monotonic() + monitor.BEAT_EVERY.total_seconds()
                try:
                    with db.connection():
                        monitor.beat()
                except Exception:
                    log.exception("could not say that this process still runs tasks")
        if self.consumer is not None:  # here, so that no beat of this thread can come after
            try:
                with db.connection():
                    monitor.stop_beating()
            except Exception:
                log.exception("could not say that this process runs no more tasks")

    def _finish(self):
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
        self.workers_stopped.set()
        monitor.flush()  # the records of the last tasks, before the process ends
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
