"""The benchmark suite (bench/) at tiny sizes, so it cannot rot: every row runs once against a
200-appointment clinic and a real `python run.py`, and the figures are written the way
BENCHMARKS.md gets them. No timing is asserted. wrk's rows are left out of a quick run, and the
Celery peer whenever celery is not installed (it is in bench/requirements.txt, not in the
product's requirements)."""

import importlib.util
import json
import sqlite3
import sys
from contextlib import closing

import pytest

from bench import __main__ as bench_main
from bench import report


def _line(text, key):
    title = dict((k, w) for k, w, *_ in report.ROWS)[key].split("{")[0].strip()
    return next(row for row in text.splitlines() if row.startswith("| ") and title in row)


@pytest.mark.slow  # ~10 s: it starts and stops a real run.py and four Huey consumers
def test_a_quick_run_measures_every_row_and_keeps_the_analysis(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nAnalysis written by hand stays.\n")
    args = ["--quick", "--appointments", "200", "--data", str(tmp_path / "data"), "--out",
            str(out)]
    with_peer = importlib.util.find_spec("celery") is not None
    if not with_peer:
        args.append("--no-peer")  # celery is the benchmark's, not the product's
    assert bench_main.main(args) == 0

    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nAnalysis written by hand stays.\n")
    for key, *_ in report.ROWS:
        line = _line(text, key)
        if key.startswith("wrk_"):
            assert "pending: not in a quick run" in line
        else:
            assert "pending" not in line, line
    assert ("Celery" in _line(text, "noop")) is False  # the header names the peer, not a row
    [raw] = tmp_path.glob("results-*.json")
    result = json.loads(raw.read_text())
    assert result["skipped"].keys() <= {"wrk_patient", "wrk_dashboard"}
    assert result["rows"]["booking_p99"]["errors"] == 0
    assert result["rows"]["export"]["rows"] > 0
    assert (result["rows"]["noop"]["peer"] is not None) == with_peer
    # The clinics are left as generated: no task queued for nobody to run, no run on record.
    for n in (200, 100):
        folder = tmp_path / "data" / f"clinic-{n}"
        with closing(sqlite3.connect(folder / "clinic.db")) as db:
            runs = db.execute("SELECT job, state, queued_at FROM task_run").fetchall()
            assert runs == []
        with closing(sqlite3.connect(folder / "queue.db")) as queue:
            assert queue.execute("SELECT count(*) FROM task").fetchone() == (0,)

    # A second run replaces its figures between the markers and nothing else.
    result["date"] = "another day"
    report.write(out, result)
    again = out.read_text()
    assert again.count(report.START) == 1 and again.count(report.END) == 1
    assert "another day" in again and "Analysis written by hand stays." in again


def test_the_figures_say_whether_other_work_was_running_before_the_start():
    result = {"load_before": (1.9, 1.2, 0.8), "load_after": (1.7, 1.5, 1.1),
              "date": "today", "command": "python -m bench", "peer": "Celery + Redis",
              "machine": {"cpu": "a CPU", "cores": 2, "python": "3.11", "system": "Linux"},
              "params": {"runs": 1, "reminders": 10}, "appointments": 200, "small": 100,
              "rows": {}, "skipped": {}, "limits": {}}
    quiet = report.section({**result, "busy_before": 0.03})
    busy = report.section({**result, "busy_before": 0.4})
    assert "kept 3% of the CPUs busy (quiet)" in quiet and "not clean" not in quiet
    assert "kept 40% of the CPUs busy: **these figures are not clean.**" in busy
    assert "1.90, 1.20, 0.80" in quiet  # the load averages are given, not judged


def test_the_machine_s_cpu_use_is_measured():
    from bench import common

    busy = common.cpu_busy(0.2)
    if sys.platform == "linux":
        assert busy is not None
    assert busy is None or 0 <= busy <= 1


def test_the_language_bench_runs(capsys):
    """bench/i18n_render.py at one round of one render: it renders both pages in both languages
    (it checks each answer is a 200 and the German one says so)."""
    from bench import i18n_render

    i18n_render.main(["--rounds", "1", "--renders", "1"])
    assert "German / English: median" in capsys.readouterr().out


def test_the_sms_bench_runs_at_a_tiny_size(capsys):
    from bench import sms as sms_bench

    assert sms_bench.main(["--n", "20", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    for row in ("gateway alone", "emails to the SMTP sink", "SMS to the gateway",
                "emails and SMS in one sweep"):
        assert f"| {row}" in out
