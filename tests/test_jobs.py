"""The job registry and the scheduler's tick, on a real SQLite database: once per due time
whatever the number of ticks or tickers, caught up once after downtime, in the clinic's zone
(Europe/Berlin; some tests move the clinic to New York)."""

import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from clinic import db, settings
from clinic.errors import NotFound
from clinic.jobs import schedule, scheduler
from clinic.jobs.queue import NORMAL
from clinic.jobs.scheduler import ALWAYS, SAME_DAY, Job
from clinic.models import JobState
from huey_config import huey
from tests.conftest import TZ

NEW_YORK = ZoneInfo("America/New_York")
ROOT = Path(__file__).resolve().parent.parent

calls = []


def count_visits(now):
    calls.append(now)
    return {"sent": 3, "skipped": 1}


def explode(now):
    raise RuntimeError("the SMTP server is on fire")


def a_job(at="08:00", catch_up=SAME_DAY, function=count_visits, name="test-job"):
    return Job(name, "test_job_at", at, function, NORMAL, "A job for tests.", catch_up)


@pytest.fixture(autouse=True)
def forget_calls():
    calls.clear()


@pytest.fixture
def queued():
    """What the tick enqueued, instead of Huey: [(name, due_at)]."""
    return []


@pytest.fixture
def tick(app, queued):
    """tick(now) with the enqueued jobs collected in ``queued``."""
    return lambda now: scheduler.tick(now, enqueue=lambda job, due: queued.append((job.name, due)))


def local(*args, tz=TZ):
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def minutes(start, end):
    while start < end:
        yield start
        start += timedelta(minutes=1)


def claimed(name, due):
    JobState.insert(name=name, last_due_at=due).execute()


# -- DST change days ------------------------------------------------------------------------------


@pytest.mark.parametrize("tz, day, expected", [
    (TZ, date(2026, 3, 29), utc(2026, 3, 29, 6)),
    (TZ, date(2026, 10, 25), utc(2026, 10, 25, 7)),
    (NEW_YORK, date(2026, 3, 8), utc(2026, 3, 8, 12)),
    (NEW_YORK, date(2026, 11, 1), utc(2026, 11, 1, 13)),
])
def test_ticking_every_minute_of_a_change_day_fires_0800_once(clinic_settings, tick, queued, tz,
                                                             day, expected):
    settings.use(clinic_settings.replace(timezone=tz))
    yesterday = day - timedelta(days=1)
    claimed("test-job", local(yesterday.year, yesterday.month, yesterday.day, 8, tz=tz))
    start = local(day.year, day.month, day.day, tz=tz)
    fired_at = []
    with scheduler.registry(a_job("08:00")):
        for now in minutes(start, start + timedelta(days=1)):
            if tick(now):
                fired_at.append(now)
    assert queued == [("test-job", expected)]
    assert fired_at == [expected]


@pytest.mark.parametrize("day, expected", [
    ((2026, 3, 29), utc(2026, 3, 29, 1)),  # 02:30 does not exist: 03:00 CEST
    ((2026, 10, 25), utc(2026, 10, 25, 0, 30)),  # 02:30 happens twice: the first, CEST
])
def test_ticking_through_a_change_day_fires_0230_once(tick, queued, day, expected):
    start = local(*day)
    claimed("test-job", start - timedelta(hours=12))
    with scheduler.registry(a_job("02:30")):
        for now in minutes(start, start + timedelta(days=1)):
            tick(now)
    assert queued == [("test-job", expected)]


# -- once per due time ----------------------------------------------------------------------------


def test_ticking_twice_for_the_same_due_time_fires_once(tick, queued):
    claimed("test-job", local(2026, 11, 9, 8))
    with scheduler.registry(a_job("08:00")):
        assert tick(local(2026, 11, 10, 8)) == [("test-job", local(2026, 11, 10, 8))]
        assert tick(local(2026, 11, 10, 8)) == []
        assert tick(local(2026, 11, 10, 8, 1)) == []
    assert queued == [("test-job", local(2026, 11, 10, 8))]


def test_tickers_in_several_threads_at_once_fire_each_due_time_once(app, queued):
    """Four schedulers tick at the same instant, twenty minutes running: twenty runs."""
    claimed("test-job", utc(2026, 11, 10, 7, 59))
    due_times = [utc(2026, 11, 10, 8, minute) for minute in range(20)]
    barrier = threading.Barrier(4)
    errors = []

    def ticker():
        try:
            for now in due_times:
                barrier.wait()
                scheduler.tick(now, enqueue=lambda job, due: queued.append((job.name, due)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            db.database.close()

    with scheduler.registry(a_job("every 1m", catch_up=ALWAYS)):
        threads = [threading.Thread(target=ticker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert sorted(due for _, due in queued) == due_times


def test_a_failed_enqueue_leaves_the_due_time_for_the_next_tick(app, tick, queued):
    claimed("test-job", local(2026, 11, 9, 8))

    def broken(job, due):
        raise ConnectionError("queue unreachable")

    with scheduler.registry(a_job("08:00")):
        assert scheduler.tick(local(2026, 11, 10, 8), enqueue=broken) == []
        assert JobState.get_by_id("test-job").last_due_at == local(2026, 11, 9, 8)
        assert tick(local(2026, 11, 10, 8, 1)) == [("test-job", local(2026, 11, 10, 8))]


# -- downtime and the first tick ------------------------------------------------------------------


def test_monthly_report_missed_while_down_fires_once_at_the_next_tick(tick, queued):
    claimed("monthly-reports", local(2026, 10, 1, 9))
    with scheduler.registry(scheduler.get("monthly-reports")):
        for now in minutes(local(2026, 10, 31, 23), local(2026, 11, 1, 7)):
            tick(now)
        assert queued == []
        # Down from 07:00 to 12:00; the 09:00 run was missed.
        for now in minutes(local(2026, 11, 1, 12), local(2026, 11, 1, 14)):
            tick(now)
    assert queued == [("monthly-reports", local(2026, 11, 1, 9))]


def test_monthly_report_is_caught_up_however_long_the_clinic_was_down(tick, queued):
    claimed("monthly-reports", local(2026, 10, 1, 9))
    with scheduler.registry(scheduler.get("monthly-reports")):
        tick(local(2026, 11, 20, 10))
        tick(local(2026, 11, 20, 10, 1))
    assert queued == [("monthly-reports", local(2026, 11, 1, 9))]


def test_daily_reminders_missed_are_sent_later_the_same_day(tick, queued):
    claimed("daily-reminders", local(2026, 11, 9, 8))
    with scheduler.registry(scheduler.get("daily-reminders")):
        for now in minutes(local(2026, 11, 10, 12), local(2026, 11, 10, 13)):
            tick(now)
    assert queued == [("daily-reminders", local(2026, 11, 10, 8))]


def test_daily_reminders_missed_are_not_sent_on_a_later_day(tick, queued):
    claimed("daily-reminders", local(2026, 11, 9, 8))
    with scheduler.registry(scheduler.get("daily-reminders")):
        # Down from the 9th until 07:00 on the 11th: the 10th's reminders are not sent.
        tick(local(2026, 11, 11, 7))
        state = JobState.get_by_id("daily-reminders")
        assert state.last_due_at == local(2026, 11, 10, 8)
        assert state.last_result.startswith("skipped the run due 2026-11-10 08:00")
        assert queued == []
        for now in minutes(local(2026, 11, 11, 7, 1), local(2026, 11, 11, 9)):
            tick(now)
    assert queued == [("daily-reminders", local(2026, 11, 11, 8))]


def test_a_catch_up_window_limits_how_late_a_run_starts(tick, queued):
    claimed("test-job", local(2026, 11, 9, 8))
    with scheduler.registry(a_job("08:00", catch_up=timedelta(hours=2))):
        assert tick(local(2026, 11, 10, 10, 1)) == []
    claimed("other-job", local(2026, 11, 9, 8))
    with scheduler.registry(a_job("08:00", catch_up=timedelta(hours=2), name="other-job")):
        assert tick(local(2026, 11, 10, 9, 59)) == [("other-job", local(2026, 11, 10, 8))]


def test_first_tick_runs_only_jobs_that_always_catch_up(tick, queued):
    now = local(2026, 11, 15, 12, 0, 20)  # a Sunday
    fired = dict(tick(now))
    assert fired == {
        "advance-reminders": local(2026, 11, 15, 12),
        "outbox-sweep": local(2026, 11, 15, 12),
        "cancellation-sweep": local(2026, 11, 15, 12),
        "retry-failed": local(2026, 11, 15, 12),
        "no-shows": local(2026, 11, 15, 12),
        "waitlist-holds": local(2026, 11, 15, 12),
        "monthly-reports": local(2026, 11, 1, 9),  # October's report must still be made
        "review-requests": local(2026, 11, 15, 10),
        "daily-stats": local(2026, 11, 15, 1),
    }
    # The others are recorded as due, so they wait for their next time instead of firing late.
    assert JobState.get_by_id("daily-reminders").last_due_at == local(2026, 11, 15, 8)
    assert JobState.get_by_id("cleanup").last_due_at == local(2026, 11, 9, 2)
    assert tick(now + timedelta(minutes=1)) == [("outbox-sweep", local(2026, 11, 15, 12, 1)),
                                                ("waitlist-holds", local(2026, 11, 15, 12, 1))]
    assert dict(tick(local(2026, 11, 16, 8)))["daily-reminders"] == local(2026, 11, 16, 8)


def test_first_tick_on_time_runs_the_job(tick, queued):
    with scheduler.registry(a_job("08:00")):
        assert tick(local(2026, 11, 10, 8, 0, 40)) == [("test-job", local(2026, 11, 10, 8))]


# -- running --------------------------------------------------------------------------------------


def test_run_calls_the_function_and_records_what_it_did(app):
    now = utc(2026, 11, 10, 7)
    with scheduler.registry(a_job()):
        assert scheduler.run("test-job", now=now) == {"sent": 3, "skipped": 1}
    assert calls == [now]
    state = JobState.get_by_id("test-job")
    assert state.last_started_at == now
    assert now <= state.last_finished_at < now + timedelta(seconds=5)
    assert state.last_result == "sent 3, skipped 1"
    assert state.last_due_at is None  # a run by hand claims no due time


def test_run_resolves_a_dotted_path_when_it_runs(app):
    with scheduler.registry(a_job(function="tests.test_jobs.count_visits")):
        scheduler.run("test-job", now=utc(2026, 11, 10, 7))
    assert calls == [utc(2026, 11, 10, 7)]


def test_run_records_a_failure_and_raises_it(app):
    with scheduler.registry(a_job(function=explode)), pytest.raises(RuntimeError):
        scheduler.run("test-job", now=utc(2026, 11, 10, 7))
    state = JobState.get_by_id("test-job")
    assert state.last_result == "failed: RuntimeError: the SMTP server is on fire"
    assert state.last_finished_at is not None


def test_run_of_an_unknown_job_names_the_jobs(app):
    with pytest.raises(KeyError) as caught:
        scheduler.run("daily-remindres")
    assert isinstance(caught.value, NotFound)
    assert str(caught.value).startswith("No job is named 'daily-remindres'. Jobs: daily-reminders")


def test_summary_is_one_short_line():
    assert scheduler.summary(None) == "done"
    assert scheduler.summary({"sent": 2}) == "sent 2"
    assert scheduler.summary("a\nb") == "a b"
    assert len(scheduler.summary("x" * 500)) == 200


# -- the Huey tasks -------------------------------------------------------------------------------


@pytest.fixture
def queue(app):
    huey.flush()
    yield huey
    huey.flush()


def test_scheduler_tick_enqueues_run_job_with_the_jobs_priority(queue):
    with scheduler.registry(a_job("every 5m", catch_up=ALWAYS)), \
            time_machine.travel(utc(2026, 11, 10, 7, 5, 10), tick=False):
        scheduler.scheduler_tick.call_local()
        [task] = queue.pending()
        assert task.name == "run_job"
        assert task.args == ("test-job", "2026-11-10T07:05:00+00:00")
        assert task.priority == NORMAL
        queue.execute(task)
    assert calls == [utc(2026, 11, 10, 7, 5, 10)]
    assert JobState.get_by_id("test-job").last_result == "sent 3, skipped 1"


# -- what the admin sees --------------------------------------------------------------------------


def test_listing_shows_each_job_in_words_with_its_next_runs(app):
    now = local(2026, 11, 15, 12)
    scheduler.tick(now, enqueue=lambda job, due: None)
    with scheduler.registry(a_job()):
        scheduler.run("test-job", now=now)
    rows = {row["name"]: row for row in scheduler.listing(now)}
    assert list(rows) == [job.name for job in scheduler.JOBS]
    report = rows["monthly-reports"]
    assert report["schedule"] == "on the 1st of each month at 09:00 Europe/Berlin"
    assert report["setting"] == "CLINIC_MONTHLY_REPORT_AT"
    assert report["last_due_at"] == local(2026, 11, 1, 9)
    assert report["next_runs"] == [local(2026, 12, 1, 9), local(2027, 1, 1, 9),
                                   local(2027, 2, 1, 9), local(2027, 3, 1, 9),
                                   local(2027, 4, 1, 9)]
    assert report["next"] == "2026-12-01 09:00 CET"
    assert rows["daily-reminders"]["last"].startswith("skipped the run due 2026-11-15 08:00")
    assert rows["daily-reminders"]["catch_up"].endswith("the same day, else it waits for its "
                                                        "next time")
    assert rows["advance-reminders"]["next_runs"][:2] == [local(2026, 11, 15, 12, 5),
                                                           local(2026, 11, 15, 12, 10)]


# -- the settings ---------------------------------------------------------------------------------


def test_every_job_has_a_setting_with_a_default_and_help():
    known = {env: (default, help) for env, default, help in settings.describe()}
    assert known["CLINIC_DAILY_REMINDER_AT"][0] == "08:00"
    for job in scheduler.JOBS:
        default, help = known["CLINIC_" + job.setting.upper()]
        assert default == job.default
        assert job.name in help


def test_a_schedule_setting_is_read_from_the_environment(tmp_path):
    loaded = settings.load({"CLINIC_DAILY_REMINDER_AT": "07:30",
                            "CLINIC_CLEANUP_AT": "sun 03:00"}, data_dir=str(tmp_path))
    assert loaded.daily_reminder_at.describe(TZ) == "every day at 07:30 Europe/Berlin"
    assert str(loaded.cleanup_at) == "sun 03:00"


def test_a_bad_schedule_setting_stops_the_start_naming_the_variable(tmp_path):
    with pytest.raises(settings.SettingsError) as caught:
        settings.load({"CLINIC_MONTHLY_REPORT_AT": "32 09:00"}, data_dir=str(tmp_path))
    assert str(caught.value) == ("CLINIC_MONTHLY_REPORT_AT='32 09:00' is invalid: "
                                 "32 is not a day of the month (1 to 31)")


def test_the_job_uses_its_setting(app, clinic_settings, tick, queued):
    settings.use(clinic_settings.replace(daily_reminder_at=schedule.parse("07:30")))
    claimed("daily-reminders", local(2026, 11, 9, 7, 30))
    with scheduler.registry(scheduler.get("daily-reminders")):
        assert tick(local(2026, 11, 10, 7, 30)) == [("daily-reminders", local(2026, 11, 10, 7, 30))]


@pytest.mark.parametrize("first", ["clinic.settings", "clinic.models", "clinic.server"])
def test_the_settings_are_known_whichever_module_is_imported_first(first):
    code = (f"import {first}\nfrom clinic import settings\n"
            "print(sorted(env for env, _, _ in settings.describe()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert "CLINIC_DAILY_REMINDER_AT" in out and "CLINIC_OUTBOX_SWEEP" in out
