"""Schedules: parsing a setting, describing it, and the due times it gives in the clinic's zone,
above all on the days the clocks change (2026: Europe/Berlin on 29 March and 25 October,
America/New_York on 8 March and 1 November)."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.jobs import schedule
from clinic.jobs.schedule import Daily, Interval, Monthly, Weekly

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def due_on(plan, day, tz):
    """Every due time of ``plan`` that falls on the clinic-local ``day``."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return [due for due in plan.next(start - timedelta(seconds=1), tz, 50) if due < end]


def due_when_checked_every_minute(plan, day, tz):
    """The distinct answers of previous() when asked every minute of ``day`` (and the hour
    either side), that fall on ``day``: what a ticking scheduler would see."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC) - timedelta(hours=1)
    seen = []
    for minute in range(26 * 60):
        due = plan.previous(start + timedelta(minutes=minute), tz)
        if due.astimezone(tz).date() == day and due not in seen:
            seen.append(due)
    return seen


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected, canonical", [
    ("every 5m", Interval(5), "every 5m"),
    ("every 1h", Interval(60), "every 1h"),
    ("every 90 minutes", Interval(90), "every 90m"),
    ("08:00", Daily(time(8, 0)), "08:00"),
    ("8:05", Daily(time(8, 5)), "08:05"),
    ("mon 02:00", Weekly(time(2, 0), (0,)), "mon 02:00"),
    ("Mon, Thu 02:00", Weekly(time(2, 0), (0, 3)), "mon,thu 02:00"),
    ("friday,monday 07:15", Weekly(time(7, 15), (0, 4)), "mon,fri 07:15"),
    ("1 09:00", Monthly(time(9, 0), 1), "1 09:00"),
    ("day 15 09:00", Monthly(time(9, 0), 15), "15 09:00"),
    ("  DAY 1   09:00 ", Monthly(time(9, 0), 1), "1 09:00"),
])
def test_parse_reads_every_form(text, expected, canonical):
    plan = schedule.parse(text)
    assert plan == expected
    assert str(plan) == canonical
    assert schedule.parse(canonical) == expected


@pytest.mark.parametrize("text, message", [
    ("", "expected a schedule such as"),
    ("daily", "expected a schedule such as"),
    ("25:00", '"25:00" is not a time of day'),
    ("08:60", '"08:60" is not a time of day'),
    ("8", "expected a schedule such as"),
    ("every 5s", 'expected an interval such as "every 5m"'),
    ("every 0m", "from 1 minute to 24 hours"),
    ("every 25h", "from 1 minute to 24 hours"),
    ("mo 02:00", '"mo" is not a weekday'),
    ("mon,xyz 02:00", '"xyz" is not a weekday'),
    ("32 09:00", "32 is not a day of the month"),
    ("day 0 09:00", "0 is not a day of the month"),
    ("mon thu 02:00", "expected a schedule such as"),
])
def test_parse_refuses_with_a_one_line_reason(text, message):
    with pytest.raises(ValueError) as caught:
        schedule.parse(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text, words", [
    ("08:00", "every day at 08:00 Europe/Berlin"),
    ("1 09:00", "on the 1st of each month at 09:00 Europe/Berlin"),
    ("22 09:00", "on the 22nd of each month at 09:00 Europe/Berlin"),
    ("31 09:00", "on the 31st of each month (the last day in shorter months) at 09:00 "
                 "Europe/Berlin"),
    ("mon 02:00", "every Monday at 02:00 Europe/Berlin"),
    ("mon,wed,fri 02:00", "every Monday, Wednesday and Friday at 02:00 Europe/Berlin"),
    ("every 5m", "every 5 minutes"),
    ("every 1m", "every minute"),
    ("every 1h", "every hour"),
    ("every 2h", "every 2 hours"),
])
def test_describe_says_it_in_plain_words(text, words):
    assert schedule.parse(text).describe(BERLIN) == words


# -- due times ------------------------------------------------------------------------------------


def test_interval_is_aligned_to_the_clock():
    plan = schedule.parse("every 5m")
    assert plan.previous(utc(2026, 3, 29, 1, 7, 30)) == utc(2026, 3, 29, 1, 5)
    assert plan.previous(utc(2026, 3, 29, 1, 5)) == utc(2026, 3, 29, 1, 5)
    assert plan.next(utc(2026, 3, 29, 1, 5), n=2) == [utc(2026, 3, 29, 1, 10),
                                                       utc(2026, 3, 29, 1, 15)]


def test_daily_time_follows_the_clinic_zone_through_the_year():
    plan = schedule.parse("08:00")
    assert due_on(plan, date(2026, 1, 15), BERLIN) == [utc(2026, 1, 15, 7)]
    assert due_on(plan, date(2026, 7, 15), BERLIN) == [utc(2026, 7, 15, 6)]


@pytest.mark.parametrize("tz, day, expected", [
    (BERLIN, date(2026, 3, 28), utc(2026, 3, 28, 7)),  # the day before: winter time
    (BERLIN, date(2026, 3, 29), utc(2026, 3, 29, 6)),  # spring forward
    (BERLIN, date(2026, 10, 25), utc(2026, 10, 25, 7)),  # fall back
    (NEW_YORK, date(2026, 3, 8), utc(2026, 3, 8, 12)),
    (NEW_YORK, date(2026, 11, 1), utc(2026, 11, 1, 13)),
])
def test_0800_falls_due_once_at_0800_local_on_change_days(tz, day, expected):
    plan = schedule.parse("08:00")
    assert due_on(plan, day, tz) == [expected]
    assert due_when_checked_every_minute(plan, day, tz) == [expected]
    assert expected.astimezone(tz).time() == time(8, 0)


@pytest.mark.parametrize("tz, at, day, expected, local", [
    # The clocks jump from 02:00 to 03:00: 02:30 does not exist and runs at 03:00.
    (BERLIN, "02:30", date(2026, 3, 29), utc(2026, 3, 29, 1), "03:00"),
    (NEW_YORK, "02:30", date(2026, 3, 8), utc(2026, 3, 8, 7), "03:00"),
    (BERLIN, "02:00", date(2026, 3, 29), utc(2026, 3, 29, 1), "03:00"),
    # The clocks go back from 03:00 to 02:00: 02:30 happens twice and runs at the first (CEST).
    (BERLIN, "02:30", date(2026, 10, 25), utc(2026, 10, 25, 0, 30), "02:30+02:00"),
    # New York goes back from 02:00 to 01:00: 01:30 happens twice, 02:30 once.
    (NEW_YORK, "01:30", date(2026, 11, 1), utc(2026, 11, 1, 5, 30), "01:30-04:00"),
    (NEW_YORK, "02:30", date(2026, 11, 1), utc(2026, 11, 1, 7, 30), "02:30-05:00"),
])
def test_times_the_change_skips_or_repeats_fall_due_exactly_once(tz, at, day, expected, local):
    plan = schedule.parse(at)
    assert due_on(plan, day, tz) == [expected]
    assert due_when_checked_every_minute(plan, day, tz) == [expected]
    assert expected.astimezone(tz).isoformat(timespec="minutes")[11:].startswith(local)


def test_a_skipped_time_on_a_weekly_schedule_runs_after_the_jump():
    # 29 March 2026 is a Sunday.
    plan = schedule.parse("sun 02:15")
    assert plan.next(utc(2026, 3, 28), BERLIN, 2) == [utc(2026, 3, 29, 1), utc(2026, 4, 5, 0, 15)]


def test_a_day_the_zone_skipped_entirely_runs_at_the_start_of_the_next():
    # Samoa moved across the date line: 30 December 2011 never happened in Pacific/Apia.
    apia = ZoneInfo("Pacific/Apia")
    plan = schedule.parse("08:00")
    assert plan.next(utc(2011, 12, 29, 20), apia, 2) == [  # 10:00 local on the 29th
        datetime(2011, 12, 31, 0, 0, tzinfo=apia).astimezone(UTC),
        datetime(2011, 12, 31, 8, 0, tzinfo=apia).astimezone(UTC),
    ]


def test_monthly_uses_the_last_day_of_shorter_months():
    plan = schedule.parse("31 09:00")
    assert plan.next(utc(2026, 1, 1), BERLIN, 3) == [
        utc(2026, 1, 31, 8), utc(2026, 2, 28, 8), utc(2026, 3, 31, 7),
    ]


def test_monthly_previous_is_the_first_of_this_month_after_it_passed():
    plan = schedule.parse("1 09:00")
    assert plan.previous(utc(2026, 11, 15, 12), BERLIN) == utc(2026, 11, 1, 8)
    assert plan.previous(utc(2026, 11, 1, 7, 59), BERLIN) == utc(2026, 10, 1, 7)
    assert plan.previous(utc(2026, 11, 1, 8), BERLIN) == utc(2026, 11, 1, 8)


def test_weekly_lists_run_on_each_day_named():
    plan = schedule.parse("mon,thu 02:00")
    # 2 March 2026 is a Monday.
    assert plan.next(utc(2026, 3, 1), BERLIN, 4) == [
        utc(2026, 3, 2, 1), utc(2026, 3, 5, 1), utc(2026, 3, 9, 1), utc(2026, 3, 12, 1),
    ]


@pytest.mark.parametrize("text", ["every 5m", "every 7m", "08:00", "02:30", "01:30",
                                  "sun 02:30", "mon,thu 02:00", "1 09:00", "31 02:30"])
@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK, ZoneInfo("UTC")])
def test_previous_and_next_agree(text, tz):
    """For instants around all four change days: previous(now) <= now < next(now), and nothing
    falls due in between."""
    plan = schedule.parse(text)
    for start in (utc(2026, 3, 7, 23), utc(2026, 3, 28, 23), utc(2026, 10, 24, 22),
                  utc(2026, 10, 31, 23)):
        for step in range(0, 3 * 24 * 60, 37):
            now = start + timedelta(minutes=step)
            before = plan.previous(now, tz)
            after = plan.next(now, tz)[0]
            assert before <= now < after
            assert plan.next(before, tz)[0] == after
            assert before.second == before.microsecond == 0
