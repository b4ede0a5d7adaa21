"""What every benchmark shares: the clinic's settings for a data folder, the machine's name, the
figures (median, min, max), the SMTP sink's process and a small HTTP client."""

import http.client
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
ZONE = ZoneInfo("Europe/Berlin")
SECRET = "bench-secret-key-0123456789abcdef0123"  # noqa: S105 (a test clinic's)


def clinic_settings(data_dir, **overrides):
    from clinic import settings

    return settings.load(environ={}, data_dir=str(data_dir), timezone=ZONE, secret_key=SECRET,
                         host="127.0.0.1", port=0, name="Bench Clinic", **overrides)


def clinic_env(data_dir, port, smtp_port=None):
    """The environment of a real `python run.py` on the clinic in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINIC_")}
    env.update(CLINIC_DATA_DIR=str(data_dir), CLINIC_PORT=str(port), CLINIC_HOST="127.0.0.1",
               CLINIC_TIMEZONE=str(ZONE), CLINIC_SECRET_KEY=SECRET, CLINIC_NAME="Bench Clinic",
               PYTHONUNBUFFERED="1")
    if smtp_port:
        env.update(CLINIC_SMTP_HOST="127.0.0.1", CLINIC_SMTP_PORT=str(smtp_port),
                   CLINIC_SMTP_SECURITY="none")
    return env


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the machine ----------------------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load():
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return (0.0, 0.0, 0.0)


def cpu_busy(seconds=3.0):
    """The share of all CPUs that was busy over the next ``seconds`` (from /proc/stat): how much
    other work the machine is doing before the suite starts; None where there is no /proc."""

    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 3)


def machine():
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "load": load()}


def rss_mb(pid):
    """Resident memory of a process in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- figures --------------------------------------------------------------------------------------


def percentile(values, q):
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def spread(values):
    """``{"median", "min", "max", "n"}`` of one figure over several runs."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


# -- the SMTP sink --------------------------------------------------------------------------------


class Sink:
    """The SMTP sink (bench/smtpsink.py) as a child process; ``arrivals`` holds
    ``(unix time, recipient, Message-ID)`` for every message it accepted, in order."""

    def __init__(self, delay=0.0):
        self.arrivals = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.smtpsink", "--delay", str(delay)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.proc.stdout.readline().split()
        if not first or first[0] != "port":
            raise RuntimeError("the SMTP sink did not start")
        self.host, self.port = "127.0.0.1", int(first[1])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            at, rcpt, ident = line.split(" ", 2)
            with self.cond:
                self.arrivals.append((float(at), rcpt, ident.strip()))
                self.cond.notify_all()

    def delay(self, seconds):
        self.proc.stdin.write(f"delay {seconds}\n")
        self.proc.stdin.flush()
        time.sleep(0.05)  # the sink reads its commands in a thread of its own

    def count(self):
        with self.cond:
            return len(self.arrivals)

    def wait_for(self, count, timeout=60):
        """Block until ``count`` messages have arrived in all; returns whether they did."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.arrivals) >= count, timeout)

    def wait_for_rcpt(self, rcpt, after, timeout=30):
        """The arrival time of the first message to ``rcpt`` at index ``after`` or later."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, to, _ in self.arrivals[after:]:
                    if to == rcpt:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def blast(host, port, sender, recipient, data, n):
    """Send ``data`` ``n`` times over one connection, pipelined as the sink allows (it offers
    PIPELINING): MAIL, RCPT and DATA in one write, each message's end with the next one's MAIL,
    one round trip a message. A client as light as a client can be, to find the sink's
    ceiling."""
    stuffed = re.sub(rb"(?m)^\.", b"..", data).rstrip(b"\r\n") + b"\r\n.\r\n"
    envelope = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        replies = sock.makefile("rb")

        def reply():
            while True:
                line = replies.readline()
                if not line or line[3:4] != b"-":
                    if not line or line[:1] not in b"23":
                        raise RuntimeError(f"the sink answered {line!r}")
                    return line

        reply()  # the greeting
        sock.sendall(b"EHLO bench\r\n")
        reply()
        sock.sendall(envelope)
        for left in range(n - 1, -1, -1):
            reply(), reply(), reply()  # MAIL, RCPT, DATA
            sock.sendall(stuffed + (envelope if left else b""))  # the next one's with this end
            reply()
        sock.sendall(b"QUIT\r\n")


# -- HTTP -----------------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One browser: a keep-alive connection, a cookie jar and the last form's CSRF token."""

    def __init__(self, port, host="127.0.0.1"):
        self.host, self.port = host, port
        self.cookies = {}
        self.csrf = None
        self.conn = None

    def request(self, method, path, form=None):
        headers = {}
        body = None
        if form is not None:
            body = urlencode({**form, "csrf_token": self.csrf or ""})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie, _, rest = value.partition(";")
                key, _, val = cookie.partition("=")
                if "max-age=0" in rest.lower() or not val.strip('"'):
                    self.cookies.pop(key.strip(), None)
                else:
                    self.cookies[key.strip()] = val
        text = data.decode("utf-8", "replace")
        match = CSRF_RE.search(text)
        if match:
            self.csrf = match.group(1)
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return response.status, response.getheader("Location", ""), text

    def login(self, email, password):
        self.request("GET", "/login")
        status, location, _ = self.request("POST", "/login",
                                           {"email": email, "password": password})
        if status != 303:
            raise RuntimeError(f"sign-in as {email} failed: HTTP {status}")
        self.request("GET", location)  # a sign-in changes the CSRF secret: the new token
        return location

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
