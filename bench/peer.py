"""The peer's side of each row: a real Celery worker process (bench/celery_peer.py) with a Redis
broker, driven from this process as a Flask app would drive it (apply_async)."""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT

POOL = ("--pool=prefork", "-c", "2")  # Celery's default pool, one process per core here


def available():
    """None when the peer can run, else why not."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed (bench/requirements.txt)"
    from bench import celery_peer

    try:
        redis.Redis.from_url(celery_peer.REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {celery_peer.REDIS_URL} does not answer: {exc}"
    return None


class Peer:
    def __init__(self, sink, log=print):
        import redis

        from bench import celery_peer

        self.cp = celery_peer
        self.redis = redis.Redis.from_url(celery_peer.REDIS_URL)
        self.sink = sink
        self.log = log
        self.start_times = []
        self.proc = None
        self.start()

    def start(self):
        """Start the worker; its start time is until it runs its first task."""
        self.redis.delete(self.cp.QUEUE, self.cp.STAMPS)
        env = {**os.environ, "BENCH_SMTP_PORT": str(self.sink.port),
               "BENCH_SMTP_HOST": self.sink.host, "BENCH_REDIS_URL": self.cp.REDIS_URL}
        celery = Path(sys.executable).parent / "celery"
        started = time.time()
        self.proc = subprocess.Popen(
            [str(celery), "-A", "bench.celery_peer", "worker", *POOL, "-l", "warning",
             "-n", f"bench-peer-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.cp.stamp.apply_async((started,))
        if self.redis.blpop(self.cp.STAMPS, timeout=60) is None:
            raise RuntimeError("the Celery worker did not start within 60 s")
        self.start_times.append(time.time() - started)

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self.redis.delete(self.cp.QUEUE, self.cp.STAMPS)

    def trickle(self, n):
        """Pickup latencies (s) of ``n`` single tasks sent one after another at random gaps."""
        rng = random.Random(7)
        self.redis.delete(self.cp.STAMPS)
        latencies = []
        for _ in range(n):
            self.cp.stamp.apply_async((time.time(),))
            _, value = self.redis.blpop(self.cp.STAMPS, timeout=30)
            latencies.append(float(value))
            time.sleep(rng.uniform(0.02, 0.1))
        return latencies

    def noop_rate(self, n):
        """No-op tasks per second: from the first apply_async until a stamp sent after the last
        no-op starts (the two workers have taken every no-op by then)."""
        self.redis.delete(self.cp.STAMPS)
        started = time.time()
        for _ in range(n):
            self.cp.noop.apply_async()
        while self.redis.llen(self.cp.QUEUE):
            time.sleep(0.001)
        self.cp.stamp.apply_async((time.time(),))
        if self.redis.blpop(self.cp.STAMPS, timeout=60) is None:
            raise RuntimeError("the peer's no-op tasks did not finish")
        return n / (time.time() - started)

    def send_many(self, n, subject, text, html, sink):
        """Emails per second for ``n`` email tasks, from the first apply_async to the sink's 250
        for the last message."""
        before = sink.count()
        started = time.time()
        for i in range(n):
            self.cp.send_email.apply_async((f"patient{i}@bench.clinic", subject, text, html))
        if not sink.wait_for(before + n, timeout=300):
            raise RuntimeError(f"the peer delivered {sink.count() - before} of {n}")
        return n / (sink.arrivals[-1][0] - started)

    def confirmations(self, n, sink, email):
        """Latencies (s) from apply_async of one email task to the sink's 250, one at a time."""
        rng = random.Random(3)
        latencies = []
        for i in range(n):
            index = sink.count()
            rcpt = f"peer{i}@bench.clinic"
            sent = time.time()
            self.cp.send_email.apply_async((rcpt, *email))
            arrived = sink.wait_for_rcpt(rcpt, index)
            if arrived is None:
                raise RuntimeError("the peer's email did not arrive within 30 s")
            latencies.append(arrived - sent)
            time.sleep(rng.uniform(0.05, 0.2))
        return latencies
