"""The peer: the same work done the way a clinic on Flask + Celery + Redis would write it.

    celery -A bench.celery_peer worker --pool=prefork -c 2

Redis is the broker (BENCH_REDIS_URL, default redis://127.0.0.1:6379/13); the queue has a name
of its own, so nothing else on that Redis is touched. No result backend: an email task's result
is of no use, and a clinic would not pay for storing it.

- ``send_email``: one email per task, over a new SMTP connection, built like the clinic's (text
  and HTML alternatives); the usual way to write it.
- ``noop``: does nothing (queue overhead alone).
- ``stamp``: records when it started, in a Redis list, for the pickup latency.
"""

import os
import smtplib
import time
from email.message import EmailMessage

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = "clinic_bench_peer"
STAMPS = "clinic_bench:stamps"

app = Celery("bench_peer", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_redis = None


def _stamps():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    return _redis


@app.task
def noop():
    return None


@app.task
def stamp(sent_at):
    """Pickup latency: the time from the producer's apply_async to this task's start."""
    _stamps().rpush(STAMPS, f"{time.time() - sent_at:.6f}")


@app.task
def send_email(recipient, subject, text, html):
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Bench Clinic <noreply@bench.clinic>"
    msg["To"] = recipient
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    host = os.environ.get("BENCH_SMTP_HOST", "127.0.0.1")
    port = int(os.environ["BENCH_SMTP_PORT"])
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.send_message(msg)
