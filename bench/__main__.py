"""`python -m bench`: run the benchmark suite and write the figures into BENCHMARKS.md.

    python -m bench                       the whole suite (1,000,000 appointments, 5 runs)
    python -m bench --quick               a tiny run that only checks the suite works
    python -m bench --only queue,sweep    some rows
    python -m bench --profile sweep       one row under pyinstrument (bench/results/)

`bash bench/run.sh` does the same in its own virtualenv with bench/requirements.txt installed.
"""

import argparse
import json
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import common, report
from bench.common import Sink
from bench.suite import Bench, Params, quick_params

GROUPS = {
    "limits": ["limit_smtp", "limit_sqlite"],
    "queue": ["queue_rows"],
    "reminders": ["reminder_delivery"],
    "sweep": ["sweep"],
    "reports": ["reports"],
    "dashboard": ["dashboard"],
    "export": ["export"],
    "web": ["web"],
}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run, no wrk")
    p.add_argument("--appointments", type=int, help="size of the big clinic (default 1,000,000;"
                   " --quick: 200)")
    p.add_argument("--runs", type=int, help="runs per figure (default 5)")
    p.add_argument("--data", default="bench/results/data", help="where the generated clinics "
                   "live (kept between runs: generating a million takes a minute or two)")
    p.add_argument("--out", default="BENCHMARKS.md", help="the file the figures go into")
    p.add_argument("--only", help="comma-separated groups: " + ", ".join(GROUPS))
    p.add_argument("--no-peer", action="store_true", help="leave out Celery + Redis")
    p.add_argument("--profile", metavar="GROUP", help="run one group under pyinstrument")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    params = quick_params(args.appointments or 200) if args.quick else Params()
    if args.appointments and not args.quick:
        params.appointments = args.appointments
    if args.runs:
        params.runs = args.runs
    groups = args.only.split(",") if args.only else list(GROUPS)
    if args.profile:
        groups = [args.profile]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise SystemExit(f"unknown group(s): {', '.join(unknown)}; choose from {', '.join(GROUPS)}")

    def log(*parts):
        print(*parts, file=sys.stderr, flush=True)

    results_dir = Path(args.data).parent  # bench/results by default
    results_dir.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": common.machine(), "load_before": common.load(),
              "busy_before": common.cpu_busy(1.0 if args.quick else 5.0),
              "params": vars(params), "appointments": params.appointments,
              "small": params.small, "skipped": {}, "notes": {},
              "command": "python -m bench " + shlex.join(argv if argv is not None
                                                          else sys.argv[1:])}
    sink = Sink()
    peer = None
    from bench import peer as peer_module

    why = "left out (--no-peer)" if args.no_peer else peer_module.available()
    if why is None and groups != ["profile"] and not args.profile:
        try:
            peer = peer_module.Peer(sink, log=log)
            result["peer"] = (f"Celery {_version('celery')} with Redis {_redis_version()} as "
                              f"broker, worker `celery worker {' '.join(peer_module.POOL)}` "
                              "(Celery's default pool and, on 2 cores, its default concurrency)")
        except Exception as exc:  # noqa: BLE001 - reported in the file, the suite goes on
            why = f"the Celery worker did not start: {exc}"
    if peer is None:
        result["peer"] = f"not measured: {why}"
        log(f"peer: {result['peer']}")
    bench = Bench(params, args.data, peer=peer, log=log)
    bench.sink = sink
    try:
        for group in groups:
            for name in GROUPS[group]:
                log(f"== {name}")
                started = time.monotonic()
                try:
                    if args.profile:
                        _profiled(getattr(bench, name), results_dir / f"profile-{group}.txt")
                    else:
                        getattr(bench, name)()
                except Exception as exc:  # noqa: BLE001 - one row's failure is reported
                    traceback.print_exc()
                    result["skipped"][name] = f"failed: {type(exc).__name__}: {exc}"
                    if args.quick:
                        raise
                log(f"   {time.monotonic() - started:.1f} s")
    finally:
        if peer is not None:
            peer.close()
        sink.close()
    if params.quick and not params.wrk_seconds:
        for key in ("wrk_patient", "wrk_dashboard"):
            result["skipped"][key] = "not in a quick run"
    result.update(rows=bench.rows, limits=bench.limits, load_after=common.load())
    result["notes"].update(bench.notes)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (results_dir / f"results-{stamp}.json").write_text(json.dumps(result, indent=1,
                                                                  default=str))
    if not args.profile:
        report.write(args.out, result)
        log(f"figures written to {args.out}")
    return 0


def _profiled(fn, path):
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        fn()
    finally:
        profiler.stop()
        path.write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"profile written to {path}", file=sys.stderr)


def _version(name):
    from importlib.metadata import version

    return version(name)


def _redis_version():
    import redis

    from bench.celery_peer import REDIS_URL

    return redis.Redis.from_url(REDIS_URL).info()["redis_version"]


if __name__ == "__main__":
    sys.exit(main())
