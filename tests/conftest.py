"""Fixtures: a clinic on a temporary SQLite file served by a real waitress server, HTTP clients,
and named people.

    alice, bob   patients          carol (cardiology), dave (dermatology)   doctors
    erin         the admin

Every doctor works every day 09:00-17:00 with 30-minute slots, so tests do not depend on the
weekday they run on. The clinic is in Europe/Berlin, which has daylight saving time.
"""

import signal
import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher
from waitress import wasyncore
from waitress.server import create_server

from clinic import auth, clock, db, people, settings, stats
from clinic.models import Doctor, Patient, User
from clinic.server import make_consumer
from clinic.web import create_app
from huey_config import huey
from tests import backends
from tests.client import Client
from tests.smtp import SMTPServer

TZ = ZoneInfo("Europe/Berlin")
PASSWORD = "password123"
EVERY_DAY = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                    "sun")}

# argon2id at its production cost is slow on purpose; tests hash hundreds of passwords.
# Same algorithm, cheaper parameters: only the speed differs.
auth.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only(reason): runs on the sqlite backend only")


def pytest_generate_tests(metafunc):
    """Every test that uses the clinic runs once per chosen backend (tests/backends.py)."""
    if "backend" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("sqlite_only")
    params = []
    for name in backends.chosen():
        marks = ()
        if only is not None and name != backends.SQLITE:
            reason = only.args[0] if only.args else only.kwargs.get("reason", "")
            marks = pytest.mark.skip(reason=f"SQLite only: {reason}")
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request):
    """The backend's name; a test on a backend whose server is absent is skipped (failed in
    CI) with the reason."""
    backends.require(request.param)
    return request.param


@pytest.fixture
def backend_urls(backend, tmp_path):
    """The database and queue settings of a clean clinic on ``backend``."""
    with backends.urls(backend, tmp_path / "data") as urls:
        yield urls


@pytest.fixture
def clinic_settings(tmp_path, backend_urls):
    return settings.load(
        environ={},
        **backend_urls,
        data_dir=str(tmp_path / "data"),
        timezone=TZ,
        secret_key="test-secret-key-0123456789abcdef",
        host="127.0.0.1",
        port=0,
        name="Test Clinic",
        address="1 Test Street, Berlin",
    )


@pytest.fixture
def app(clinic_settings):
    application = create_app(clinic_settings)
    db.migrate()
    stats.forget()
    db.database.connect(reuse_if_open=True)
    yield application
    db.database.close()


@pytest.fixture
def serving():
    """Runs waitress servers made by the test: ``serving(make)`` calls ``make(channels)``, which
    must pass ``map=channels`` to waitress's create_server, starts the server's loop over that
    map in a thread and returns the server; the servers stop when the test ends. The loop's
    thread also closes its server, so stopping never pulls a socket from under a select()."""
    running = []

    def start(make):
        channels = {}
        srv = make(channels)
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                wasyncore.loop(timeout=0.05, map=channels, use_poll=True, count=1)
            srv.task_dispatcher.shutdown()
            srv.close()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        running.append((stop, thread))
        return srv

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def new_server(serving):
    """A factory of waitress servers on free ports: ``new_server(app, threads=1)`` serves the app
    and returns its address; the servers stop when the test ends."""

    def start(app, threads=8):
        srv = serving(lambda channels: create_server(app, host="127.0.0.1", port=0,
                                                     threads=threads, ident="clinic-test",
                                                     map=channels))
        return f"http://127.0.0.1:{srv.effective_port}"

    return start


@pytest.fixture
def server(app, new_server):
    """The app served by waitress on a free port, with eight threads."""
    return new_server(app)


@pytest.fixture
def client(server):
    return Client(server)


@pytest.fixture
def new_client(server):
    """A factory of fresh browsers (separate cookie jars)."""
    return lambda: Client(server)


@pytest.fixture
def statements(app, monkeypatch):
    """The SQL statements, as (sql, params), that the test's thread runs on the clinic's database
    (not the jobs monitor's writer, whose batches follow their own timing). Clear it before the
    part a test counts."""
    seen = []
    database = db.database.obj
    execute_sql = database.execute_sql
    me = threading.get_ident()

    def record(sql, params=None, *args, **kwargs):
        if threading.get_ident() == me:
            seen.append((sql, params))
        return execute_sql(sql, params, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", record)
    return seen


def make_patient(email, name):
    return people.register_patient(email, PASSWORD, name, "1980-05-17", "+49 30 1234567")


def make_doctor(email, name, specialization, hours=None):
    return people.create_doctor(name, email, PASSWORD, specialization, 30, hours or EVERY_DAY)


@pytest.fixture
def alice(app):
    return make_patient("alice@example.com", "Alice Adams")


@pytest.fixture
def bob(app):
    return make_patient("bob@example.com", "Bob Brown")


@pytest.fixture
def carol(app):
    return make_doctor("carol@example.com", "Dr Carol Clark", "Cardiology")


@pytest.fixture
def dave(app):
    return make_doctor("dave@example.com", "Dr Dave Davis", "Dermatology")


@pytest.fixture
def erin(app):
    return people.create_admin("erin@example.com", PASSWORD, "Erin Admin")


@pytest.fixture
def dana(app):
    """The front desk (role ``desk``)."""
    return people.create_staff("Dana Desk", "dana@example.com", PASSWORD, "desk")


@pytest.fixture
def everyone(alice, bob, carol, dave, erin):
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin}


def doctor_of(user):
    return Doctor.select(Doctor, User).join(User).where(Doctor.user == user.id).get()


def patient_of(user):
    return Patient.get(Patient.user == user.id)


def slot(days_ahead=1, at="10:00", now=None):
    """A slot start (aware UTC) ``days_ahead`` clinic-local days from now at wall time ``at``."""
    now = now or clock.now()
    day = now.astimezone(TZ).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time.fromisoformat(at), tzinfo=TZ).astimezone(UTC)


def login(client, user):
    return client.login(user.email, PASSWORD)


@pytest.fixture
def smtp():
    """A real SMTP server in this process (tests/smtp.py): ``.messages`` holds what it accepted,
    ``.answer("451" | "550" | "hang" | "accept")`` changes how it answers."""
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_settings(app, smtp):
    """The running clinic's settings pointed at the ``smtp`` server: plain SMTP, 2 s timeout."""
    return settings.use(settings.get().replace(
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none",
        smtp_timeout=timedelta(seconds=2)))


# -- the queue ------------------------------------------------------------------------------------


@pytest.fixture
def drain():
    """``drain()`` runs every queued task in this thread, as a worker would (highest priority
    first), until the queue is empty; returns the tasks' names in the order they ran."""

    def run():
        names = []
        while (task := huey.dequeue()) is not None:
            names.append(task.name.rsplit(".", 1)[-1])
            huey.execute(task)
        return names

    return run


@pytest.fixture
def delivered(drain, smtp):
    """``delivered()`` runs the queued tasks (the sending ones among them) and returns the
    messages the ``smtp`` server took."""

    def run():
        drain()
        return smtp.messages

    return run


@pytest.fixture
def restore_signals():
    """Puts Python's SIGINT and SIGTERM handlers back after the test: Huey's consumer and the
    clinic's Process install their own."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def consumer(app, clinic_settings, restore_signals):
    """The real consumer in threads, as run.py starts it (without the periodic scheduler)."""
    pool = make_consumer(clinic_settings, periodic=False)
    pool.start()
    yield pool
    pool.stop(graceful=True)


@pytest.fixture
def finished():
    """``finished(task_id, signal)`` waits until Huey has sent ``signal`` (SIGNAL_COMPLETE,
    SIGNAL_ERROR, SIGNAL_EXECUTING, ...) for the task, in whatever thread runs it. Our receiver
    is connected after the monitor's, so by then the monitor has recorded it. Fails the test
    after ``timeout`` seconds."""
    seen = set()
    changed = threading.Condition()

    def note(sig, task, *args):
        with changed:
            seen.add((sig, task.id))
            changed.notify_all()

    huey.signal()(note)

    def wait(task_id, sig, timeout=10):
        with changed:
            arrived = changed.wait_for(lambda: (sig, task_id) in seen, timeout)
        assert arrived, f"Huey sent no {sig} for task {task_id} within {timeout} s"

    yield wait
    huey.disconnect_signal(note)
