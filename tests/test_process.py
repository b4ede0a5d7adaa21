"""The one process: `python run.py` serves pages and runs jobs, and SIGTERM / Ctrl-C stop it
cleanly, letting requests and jobs in flight finish.

The graceful-stop tests run clinic.server.Process in pytest's main thread (signal handlers need
it) and drive it from a helper thread; the start-up tests run run.py as a real subprocess.
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from clinic import db
from clinic.server import Process, prepare
from huey_config import huey

ROOT = Path(__file__).resolve().parent.parent


def _get(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read().decode()


def test_sigterm_lets_a_request_in_flight_finish(clinic_settings, restore_signals):
    app = prepare(clinic_settings)
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(10)
        return "finished"

    app.bottle.route("/test-slow", callback=slow)
    lines = []
    port_seen = threading.Event()

    def out(line):
        lines.append(line)
        if "running at" in line:
            port_seen.set()

    result = {}

    def drive():
        port_seen.wait(10)
        port = int(re.search(r":(\d+)/", next(x for x in lines if "running at" in x)).group(1))
        requester = threading.Thread(target=lambda: result.update(slow=_get(port, "/test-slow")))
        requester.start()
        entered.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        # The stop has begun while the request is still running; now let it finish.
        release.set()
        requester.join(10)

    driver = threading.Thread(target=drive)
    driver.start()
    Process(clinic_settings.replace(port=0), jobs=False, out=out, app=app).run()
    driver.join(10)
    assert result["slow"] == (200, "finished")
    assert any("SIGTERM received" in line for line in lines)
    assert lines[-1] == "clinic stopped"


_job_started = threading.Event()
_job_release = threading.Event()
_job_done = []


@huey.task()
def _slow_job(marker):
    _job_started.set()
    _job_release.wait(10)
    _job_done.append(marker)


def test_sigterm_lets_a_running_job_finish(clinic_settings, restore_signals):
    app = prepare(clinic_settings)
    _job_started.clear(), _job_release.clear(), _job_done.clear()
    lines = []

    def drive():
        _slow_job("report")
        assert _job_started.wait(15), "the consumer never picked up the job"
        os.kill(os.getpid(), signal.SIGTERM)
        _job_release.set()

    driver = threading.Thread(target=drive)
    driver.start()
    Process(clinic_settings.replace(port=0), web=False, out=lines.append, app=app).run()
    driver.join(10)
    assert _job_done == ["report"]
    assert lines[-1] == "clinic stopped"


def _run(args, env_extra, timeout=60):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True, check=False)


def test_invalid_setting_is_refused_in_one_line(tmp_path):
    done = _run(["migrate"], {"CLINIC_DATA_DIR": str(tmp_path), "CLINIC_PORT": "eighty"})
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "CLINIC_PORT='eighty' is invalid" in done.stderr


def test_unknown_timezone_is_refused(tmp_path):
    done = _run(["migrate"], {"CLINIC_DATA_DIR": str(tmp_path), "CLINIC_TIMEZONE": "Mars/Base"})
    assert done.returncode != 0 and "CLINIC_TIMEZONE" in done.stderr
    assert "Traceback" not in done.stderr


def _start(tmp_path, *args, **env):
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path / "data"), "CLINIC_PORT": "0",
           "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        match = re.search(r"running at http://127\.0\.0\.1:(\d+)/", line)
        if match:
            # "Sign in at ..." comes next on stdout; a worker's log line (stderr, merged here)
            # may come in between.
            for _ in range(20):
                lines.append(proc.stdout.readline().rstrip("\n"))
                if "Sign in at" in lines[-1]:
                    break
            return proc, int(match.group(1)), lines
    proc.wait(5)
    raise AssertionError("run.py did not start:\n" + "\n".join(lines))


def _stop(proc, lines):
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    lines.extend(rest.splitlines())
    return proc.returncode


def test_first_start_creates_the_admin_from_settings(tmp_path):
    proc, port, lines = _start(tmp_path, CLINIC_ADMIN_EMAIL="boss@example.org",
                               CLINIC_ADMIN_PASSWORD="a long secret")
    try:
        assert _get(port, "/login")[0] == 200
        assert any("Created the admin boss@example.org" in line for line in lines)
    finally:
        assert _stop(proc, lines) == 0
    assert "clinic stopped" in lines
    assert not any("Traceback" in line for line in lines)


def test_first_start_without_settings_prints_a_one_time_password(tmp_path):
    proc, port, lines = _start(tmp_path)
    try:
        match = next(re.search(r"admin (\S+) with the one-time password: (\S+)", x)
                     for x in lines if "one-time password" in x)
        assert match.group(1) == "admin@clinic.local" and len(match.group(2)) >= 12
        assert any(f"Sign in at http://127.0.0.1:{port}/login" in line for line in lines)
    finally:
        assert _stop(proc, lines) == 0


def test_demo_start_prints_the_demo_sign_ins_and_fills_the_clinic(tmp_path):
    proc, port, lines = _start(tmp_path, "--demo")
    try:
        text = "\n".join(lines)
        for email in ("admin@demo.clinic", "doctor@demo.clinic", "patient@demo.clinic"):
            assert email in text
        assert "demo1234" in text
        assert _get(port, "/login")[0] == 200
    finally:
        assert _stop(proc, lines) == 0
    # The data is really there, in the default SQLite file under the data folder.
    from clinic import settings as settings_module
    from clinic.models import Appointment, Treatment, User
    from clinic.web import create_app

    s = settings_module.load(environ={"CLINIC_DATA_DIR": str(tmp_path / "data")})
    create_app(s)
    with db.database.connection_context():
        patient = User.get(User.email == "patient@demo.clinic")
        doctor = User.get(User.email == "doctor@demo.clinic")
        visits = (Appointment.select().join(Treatment, on=(Treatment.appointment == Appointment.id))
                  .where(Appointment.patient == patient, Appointment.doctor == doctor,
                         Appointment.status == "completed").count())
        assert visits >= 3
        assert Appointment.select().where(Appointment.status.in_(["booked", "confirmed"])).count()
