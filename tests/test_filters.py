"""The filter forms' one helper (clinic/filters.py): choices and days checked before anything is
read, each given filter applied, clinic-local days both included, newest first, a page at a
time. On a real database, with audit entries as the rows."""

from datetime import datetime

import pytest

from clinic import audit, filters
from clinic.errors import Invalid
from clinic.models import AuditEntry
from tests.conftest import TZ

OUTCOMES = ("allowed", "refused")


def entry(action, at, outcome="allowed"):
    return audit.record(None, action, outcome=outcome, now=at)


def page(**form):
    query = filters.page(
        AuditEntry.select(), AuditEntry.at, form.pop("day_from", ""), form.pop("day_to", ""),
        choices={"outcome": (form.get("outcome", ""), OUTCOMES, "Choose allowed or refused.")},
        where=[AuditEntry.action == form["action"] if form.get("action") else None,
               AuditEntry.outcome == form["outcome"] if form.get("outcome") else None],
        order=(AuditEntry.at.desc(), AuditEntry.id.desc()),
        limit=form.pop("limit", 25), offset=form.pop("offset", 0))
    return [row.action for row in query]


def test_a_choice_not_in_the_list_is_an_error_under_its_field(app):
    with pytest.raises(Invalid) as raised:
        page(outcome="maybe")
    assert raised.value.fields == {"outcome": "Choose allowed or refused."}
    assert str(raised.value) == "Choose allowed or refused."


def test_bad_days_are_errors_and_several_errors_say_so_together(app):
    with pytest.raises(Invalid) as raised:
        page(day_from="yesterday")
    assert raised.value.fields == {"from": "Enter a date as YYYY-MM-DD."}
    with pytest.raises(Invalid) as raised:
        page(day_from="2026-03-05", day_to="2026-03-04")
    assert raised.value.fields == {"to": "The last day comes before the first."}
    with pytest.raises(Invalid) as raised:
        page(outcome="maybe", day_to="soon")
    assert raised.value.fields == {"outcome": "Choose allowed or refused.",
                                   "to": "Enter a date as YYYY-MM-DD."}
    assert str(raised.value) == "Please correct the highlighted fields."


def test_the_errors_are_raised_before_anything_is_read(app):
    class Unreadable:
        def where(self, *conditions):
            raise AssertionError("read despite the errors")

        order_by = where

    with pytest.raises(Invalid):
        filters.page(Unreadable(), AuditEntry.at, "not a day", "",
                     where=[AuditEntry.action == "open page"])


def test_filters_left_empty_keep_every_row_and_given_ones_all_apply(app):
    entry("view history", datetime(2026, 3, 2, 9, tzinfo=TZ))
    entry("open page", datetime(2026, 3, 2, 10, tzinfo=TZ), outcome="refused")
    entry("view history", datetime(2026, 3, 2, 11, tzinfo=TZ), outcome="refused")
    assert page() == ["view history", "open page", "view history"]
    assert page(outcome="refused") == ["view history", "open page"]
    assert page(outcome="refused", action="open page") == ["open page"]
    assert page(action="call API") == []


def test_the_days_are_the_clinics_and_both_are_included(app):
    entry("before", datetime(2026, 3, 1, 23, 59, tzinfo=TZ))
    entry("first", datetime(2026, 3, 2, 0, 0, tzinfo=TZ))  # 23:00 UTC the day before
    entry("last", datetime(2026, 3, 3, 23, 59, tzinfo=TZ))
    entry("after", datetime(2026, 3, 4, 0, 0, tzinfo=TZ))
    assert page(day_from="2026-03-02", day_to="2026-03-03") == ["last", "first"]
    assert page(day_from="2026-03-03") == ["after", "last"]
    assert page(day_to="2026-03-01") == ["before"]


def test_newest_first_a_page_at_a_time(app):
    for hour in range(8, 13):
        entry(f"at {hour}", datetime(2026, 3, 2, hour, tzinfo=TZ))
    assert page(limit=2) == ["at 12", "at 11"]
    assert page(limit=2, offset=2) == ["at 10", "at 9"]
    assert page(limit=2, offset=4) == ["at 8"]
