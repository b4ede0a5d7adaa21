"""SMS handed to a local Twilio-style gateway per second, beside emails handed to the SMTP sink.

    python -m bench.sms [--n 2000] [--runs 5]     the figures, as a Markdown table
    python -m bench.sms sink [--port 0]           the gateway alone (what the figures talk to)

Each run puts N due reminders in a fresh clinic's outbox (SQLite), rendered as the clinic
renders them, and times sweeper.sweep() delivering them: N emails to the SMTP sink
(bench/smtpsink.py), N SMS to the gateway, and N of each in one sweep. A message counts when its
server answered (the sink's 250, the gateway's 201) and the rate runs from the sweep's start to
the last answer. Both servers are child processes, so their work does not share the measured
interpreter. The gateway's own ceiling is measured too: one client posting the same form over
one keep-alive connection, doing nothing else.

The gateway answers POST /2010-04-01/Accounts/<sid>/Messages.json with 201 and a JSON body as
Twilio does, over HTTP/1.1 keep-alive, and prints ``port N`` once it listens, then one line per
SMS it took: ``<unix time> <To>``.
"""

import argparse
import http.client
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from bench import common

SID = "ACbench0000000000000000000000000000"
TOKEN = "bench-token"  # noqa: S105 (a local sink's)
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


# -- the gateway ----------------------------------------------------------------------------------


def sink(port=0):
    sids = itertools.count(1)
    out = sys.stdout
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are two writes: with Nagle's algorithm the body would wait for
        # the client's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_POST(self):
            form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            data = json.dumps({"sid": f"SM{next(sids):032x}", "status": "queued",
                               "to": form.get("To"), "num_segments": "1", "price": None,
                               "price_unit": "USD"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with lock:
                out.write(f"{time.time():.6f} {form.get('To')}\n")
                out.flush()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()
    return 0


class Gateway(common.Sink):
    """The gateway as a child process; ``arrivals`` as common.Sink keeps them."""

    def __init__(self):  # noqa: D107 (common.Sink's reader, another command)
        self.arrivals = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sms", "sink"],
                                     cwd=common.ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.proc.stdout.readline().split()
        if not first or first[0] != "port":
            raise RuntimeError("the gateway did not start")
        self.host, self.port = "127.0.0.1", int(first[1])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            at, rcpt = line.split(" ", 1)
            with self.cond:
                self.arrivals.append((float(at), rcpt.strip(), ""))
                self.cond.notify_all()

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the figures ----------------------------------------------------------------------------------


def _clinic(path, smtp, gateway):
    from clinic import db
    from clinic.mail.gateway import parse_url
    from clinic.web import create_app

    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    shutil.rmtree(path, ignore_errors=True)
    s = common.clinic_settings(path, smtp_host=smtp.host, smtp_port=smtp.port,
                               smtp_security="none")
    s = s.replace(sms_url=parse_url(f"twilio+http://{SID}:{TOKEN}@{gateway.host}:"
                                    f"{gateway.port}?from=+15550001111"))
    create_app(s)
    db.migrate()
    db.database.connect(reuse_if_open=True)


def _rows(run, n, channel):
    """N due reminders of ``channel`` as outbox rows, rendered as the outbox renders them."""
    from clinic import clock
    from clinic.mail import compose, sms

    now = clock.now()
    start = now + timedelta(hours=2)
    context = {"patient_name": "Ann Example", "doctor_name": "Dr Bea Example",
               "specialization": "Cardiology", "start": start,
               "end": start + timedelta(minutes=30), "timezone": str(common.ZONE),
               "link": "http://127.0.0.1/visit/x", "cutoff": "2 hours"}
    rows = []
    for i in range(n):
        row = dict(key=f"reminder_2h:{run}:{i}:{channel}", kind="reminder_advance",
                   channel=channel, attachments=[], message_id=compose.new_message_id(),
                   status="pending", priority=100, due_at=now, created_at=now, updated_at=now)
        if channel == "sms":
            text, segments = sms.render("reminder_advance", context, i + 1, i + 1)
            row.update(recipient=f"+4930{1000000 + i}", subject="", text_body=text,
                       html_body="", segments=segments)
        else:
            subject, text, html = compose.render("reminder_advance", **context)
            row.update(recipient=f"patient{i}@bench.clinic", subject=subject, text_body=text,
                       html_body=html, segments=0)
        rows.append(row)
    return rows


def _sweep(rows, servers):
    """Write ``rows``, sweep them out; the messages a second, until the last server answered."""
    from clinic import clock
    from clinic.db import database
    from clinic.mail import sweeper
    from clinic.models import Message

    with database.atomic():
        for lo in range(0, len(rows), 500):
            Message.insert_many(rows[lo:lo + 500]).execute()
    before = {server: server.count() for server in servers}
    expect = {server: 0 for server in servers}
    for row in rows:
        expect[servers[0] if row["channel"] == "email" or len(servers) == 1 else servers[1]] += 1
    started = time.time()
    tried = sweeper.sweep(now=clock.now())
    for server in servers:
        if not server.wait_for(before[server] + expect[server], timeout=120):
            raise RuntimeError(f"sweep tried {tried} of {len(rows)}; not all arrived")
    return len(rows) / (max(server.arrivals[-1][0] for server in servers) - started)


def _ceiling(gateway, n):
    """The gateway's own pace: one keep-alive connection posting one SMS's form, nothing else."""
    body = urlencode({"To": "+49301234567", "From": "+15550001111",
                      "Body": "Bench Clinic: reminder of your appointment" * 2}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic x"}
    connection = http.client.HTTPConnection(gateway.host, gateway.port, timeout=10)
    before = gateway.count()
    started = time.time()
    for _ in range(n):
        connection.request("POST", PATH, body, headers)
        connection.getresponse().read()
    connection.close()
    gateway.wait_for(before + n)
    return n / (gateway.arrivals[-1][0] - started)


def figures(n, runs):
    smtp, gateway = common.Sink(), Gateway()
    data = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    results = {"gateway alone (one connection, no clinic)": [], "emails to the SMTP sink": [],
               "SMS to the gateway": [], "emails and SMS in one sweep (2N)": []}
    try:
        for run in range(runs):
            results["gateway alone (one connection, no clinic)"].append(_ceiling(gateway, n))
            _clinic(data / f"email{run}", smtp, gateway)
            results["emails to the SMTP sink"].append(_sweep(_rows(run, n, "email"), [smtp]))
            _clinic(data / f"sms{run}", smtp, gateway)
            results["SMS to the gateway"].append(_sweep(_rows(run, n, "sms"), [gateway]))
            _clinic(data / f"both{run}", smtp, gateway)
            both = _rows(run, n, "email") + _rows(run, n, "sms")
            results["emails and SMS in one sweep (2N)"].append(_sweep(both, [smtp, gateway]))
    finally:
        smtp.close()
        gateway.close()
        shutil.rmtree(data, ignore_errors=True)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.sms", description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", default="figures", choices=("figures", "sink"))
    p.add_argument("--n", type=int, default=2000, help="messages of each channel a run")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--port", type=int, default=0, help="the sink's port")
    args = p.parse_args(argv)
    if args.what == "sink":
        return sink(args.port)
    busy = common.cpu_busy()
    load = common.load()
    results = figures(args.n, args.runs)
    m = common.machine()
    print(f"N = {args.n} a channel, median of {args.runs} runs; {m['cpu']}, {m['cores']} cores, "
          f"Python {m['python']}; before: {busy:.0%} of the CPUs busy with other work, load "
          f"{load}; after: load {common.load()}\n")
    print("| what | messages/s, median (min–max) |\n| --- | --- |")
    for what, rates in results.items():
        print(f"| {what} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
