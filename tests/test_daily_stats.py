"""The daily-stats job (stats.record_day): one row of figures per clinic-local day, replaced when
recomputed, with the days a stopped clinic missed filled in."""

from datetime import date, datetime, timedelta

from clinic import stats
from clinic.jobs import scheduler
from clinic.models import Appointment, DailyStat, JobState, Message, Review, User
from tests.conftest import TZ


def local(*args):
    return datetime(*args, tzinfo=TZ)


def visit(patient, doctor, start, status="completed"):
    return Appointment.create(patient=patient, doctor=doctor, start=start,
                              end=start + timedelta(minutes=30), status=status)


def email(key, status, at):
    return Message.create(key=key, kind="test", recipient="alice@example.com", subject="Hi",
                          message_id=f"<{key}@localhost>", status=status, created_at=at,
                          updated_at=at, sent_at=at if status == "sent" else None)


def row(day):
    return DailyStat.get(DailyStat.day == day)


# 01:00 on the day after the autumn change: 25 Oct 2026 was 25 hours long in Berlin.
AFTER_CHANGE_DAY = local(2026, 10, 26, 1, 0)
CHANGE_DAY = date(2026, 10, 25)


def test_yesterdays_appointments_are_counted_by_status_in_the_clinics_day(app, alice, bob,
                                                                         carol):
    visit(alice, carol, local(2026, 10, 25, 0, 0))  # the day's first minute (22:00Z the day before)
    visit(bob, carol, local(2026, 10, 25, 2, 30), "no_show")  # the hour that happened twice
    visit(alice, carol, local(2026, 10, 25, 23, 30), "cancelled")  # its last half hour
    visit(bob, carol, local(2026, 10, 25, 10, 0), "booked")
    visit(alice, carol, local(2026, 10, 24, 23, 30))  # the day before
    visit(bob, carol, local(2026, 10, 26, 0, 0))  # the day after
    stats.record_day(now=AFTER_CHANGE_DAY, backfill=1)
    day = row(CHANGE_DAY)
    assert (day.booked, day.confirmed, day.completed, day.cancelled, day.no_show) == (
        1, 0, 1, 1, 1)
    assert day.computed_at == AFTER_CHANGE_DAY


def test_new_patients_reviews_and_emails_are_counted_on_the_day_they_happened(app, alice, bob,
                                                                              carol):
    User.update(created_at=local(2026, 10, 25, 9)).where(User.id == alice.id).execute()
    User.update(created_at=local(2026, 10, 24, 9)).where(User.id == bob.id).execute()
    User.update(created_at=local(2026, 10, 25, 9)).where(User.id == carol.id).execute()  # a doctor
    seen = visit(alice, carol, local(2026, 10, 20, 10))
    Review.create(appointment=seen, patient=alice, doctor=carol, rating=5,
                  created_at=local(2026, 10, 25, 18))
    email("sent:1", "sent", local(2026, 10, 25, 8))
    email("sent:2", "sent", local(2026, 10, 25, 23, 59))
    email("sent:3", "sent", local(2026, 10, 26, 0, 1))
    email("failed:1", "failed", local(2026, 10, 25, 12))
    email("pending:1", "pending", local(2026, 10, 25, 12))
    stats.record_day(now=AFTER_CHANGE_DAY, backfill=1)
    day = row(CHANGE_DAY)
    assert (day.new_patients, day.reviews, day.emails_sent, day.emails_failed) == (1, 1, 2, 1)


def test_a_rerun_replaces_the_days_figures(app, alice, bob, carol):
    visit(alice, carol, local(2026, 10, 25, 10), "booked")
    stats.record_day(now=AFTER_CHANGE_DAY, backfill=1)
    assert (row(CHANGE_DAY).booked, row(CHANGE_DAY).no_show) == (1, 0)
    Appointment.update(status="no_show").execute()
    visit(bob, carol, local(2026, 10, 25, 11))
    later = AFTER_CHANGE_DAY + timedelta(hours=5)
    assert stats.record_day(now=later, backfill=1) == {
        "recorded": 1, "from": "2026-10-25", "to": "2026-10-25"}
    day = row(CHANGE_DAY)
    assert (day.booked, day.no_show, day.completed, day.computed_at) == (0, 1, 1, later)
    assert DailyStat.select().count() == 1


def test_missing_days_are_filled_in_back_to_30_days(app, alice, carol):
    now = local(2026, 3, 15, 1, 0)
    visit(alice, carol, local(2026, 2, 20, 10))  # a day with no row yet, within 30 days
    assert stats.record_day(now=now) == {"recorded": 30, "from": "2026-02-13",
                                         "to": "2026-03-14"}
    assert row(date(2026, 2, 20)).completed == 1
    assert not DailyStat.select().where(DailyStat.day < date(2026, 2, 13)).exists()
    assert not DailyStat.select().where(DailyStat.day > date(2026, 3, 14)).exists()


def test_days_already_recorded_are_kept_and_only_gaps_and_yesterday_are_written(app, alice,
                                                                                 carol):
    first = local(2026, 3, 15, 1, 0)
    stats.record_day(now=first)
    visit(alice, carol, local(2026, 3, 10, 10))  # after its day was recorded: not recomputed
    visit(alice, carol, local(2026, 3, 16, 10))
    # The clinic was down on the 16th and the 17th at 01:00; the 18th's run fills the gap.
    result = stats.record_day(now=first + timedelta(days=3))
    assert result == {"recorded": 3, "from": "2026-03-15", "to": "2026-03-17"}
    assert row(date(2026, 3, 10)).completed == 0
    assert row(date(2026, 3, 16)).completed == 1
    assert stats.record_day(now=first + timedelta(days=3, hours=2))["recorded"] == 1
    assert DailyStat.select().count() == 33


def test_the_daily_stats_job_records_yesterday(app):
    result = scheduler.run("daily-stats", now=local(2026, 3, 15, 1, 0))
    assert result["to"] == "2026-03-14"
    assert JobState.get_by_id("daily-stats").last_result.startswith("recorded 30")
