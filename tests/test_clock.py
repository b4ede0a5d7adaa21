"""clinic.clock: instants shown in the clinic's time zone, and a filter form's days."""

from datetime import UTC, date, datetime

import pytest

from clinic import clock


def test_a_filter_form_days_are_clinic_local_days_both_included(app):
    # Europe/Berlin: the clocks went forward on 2026-03-29, a day of 23 hours.
    errors = {}
    since, before = clock.days_between("2026-03-29", " 2026-03-29 ", errors)
    assert errors == {}
    assert since == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert before == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert clock.days_between("", "2026-10-25", errors) == (
        None, datetime(2026, 10, 25, 23, 0, tzinfo=UTC))  # 25 hours: the clocks went back
    assert clock.days_between("  ", None, errors) == (None, None)
    assert errors == {}


@pytest.mark.parametrize("day_from, day_to, said", [
    ("yesterday", "", {"from": "Enter a date as YYYY-MM-DD."}),
    ("", "2026-02-30", {"to": "Enter a date as YYYY-MM-DD."}),
    ("2026-03-12", "2026-03-11", {"to": "The last day comes before the first."}),
])
def test_a_filter_form_day_that_is_no_day_is_said_under_its_field(app, day_from,
                                                                  day_to, said):
    errors = {}
    clock.days_between(day_from, day_to, errors)
    assert errors == said


def test_instants_dates_and_the_rest_are_formatted_for_people(app):
    winter = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    summer = datetime(2026, 7, 5, 8, 30, tzinfo=UTC)
    assert clock.formatted(winter, "%H:%M") == "09:30"
    assert clock.formatted(summer, "%H:%M") == "10:30"
    assert clock.formatted(date(2026, 7, 5), "%d.%m.%Y") == "05.07.2026"
    assert clock.formatted(None, "%H:%M") == ""
    assert clock.formatted(42, "%H:%M") == "42"


@pytest.mark.parametrize("name, words", [("Europe/Berlin", "Berlin"),
                                         ("America/New_York", "New York"),
                                         ("Etc/UTC", "UTC"), ("UTC", "UTC")])
def test_the_time_zone_in_words_is_the_city(name, words):
    from zoneinfo import ZoneInfo

    assert clock.zone_words(ZoneInfo(name)) == words
