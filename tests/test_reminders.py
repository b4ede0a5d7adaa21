"""Daily and advance reminders (clinic/reminders.py): once per visit and offset, only for visits
still booked or confirmed, following moved visits, correct on the days the clocks change, and a
reminder missed while the clinic was down sent late or skipped with the reason."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from clinic import appointments, clock, db, reminders, settings, timeline
from clinic.jobs import scheduler
from clinic.mail import sweeper
from clinic.models import Appointment, Message
from clinic.settings import SettingsError
from tests.conftest import TZ
from tests.test_outbox import in_threads

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MISSED = "the clinic was not running when this reminder was due"


def local(*args):
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


def visit(patient, doctor, start, booked_at=None, status="booked", reason="Private reason",
          minutes=30):
    """An appointment made directly (any time of day), booked a week ahead unless told."""
    booked_at = booked_at or start - 7 * DAY
    return Appointment.create(patient=patient, doctor=doctor, start=start,
                              end=start + timedelta(minutes=minutes), status=status,
                              reason=reason, created_at=booked_at, updated_at=booked_at)


def reminders_of(appointment=None):
    """{key prefix (reminder_24h, reminder_daily ...): (status, reason)} of the reminders."""
    query = Message.select().where(Message.kind.in_(("reminder_daily", "reminder_advance")))
    if appointment is not None:
        query = query.where(Message.appointment == appointment.id)
    return {m.key.split(":")[0]: (m.status, m.last_error) for m in query.order_by(Message.id)}


def reminded_ids(kind):
    return {m.appointment_id for m in Message.select().where(Message.kind == kind)}


NOTHING = {"sent": 0, "skipped": 0}


# -- daily ----------------------------------------------------------------------------------------


def test_daily_reminds_each_visit_of_the_day_once(smtp_settings, smtp, alice, bob, carol, dave):
    morning = local(2026, 12, 1, 8, 0)
    first = visit(alice, carol, local(2026, 12, 1, 10, 0))
    second = visit(bob, dave, local(2026, 12, 1, 11, 30), status="confirmed")
    visit(alice, dave, local(2026, 12, 1, 15, 0), status="cancelled")
    visit(bob, carol, local(2026, 12, 2, 9, 0))  # tomorrow
    visit(bob, carol, local(2026, 11, 30, 16, 0))  # yesterday

    assert reminders.send_daily(now=morning) == {"sent": 2, "skipped": 0}
    assert reminders.send_daily(now=morning) == NOTHING
    assert reminders.send_daily(now=morning + 3 * HOUR) == NOTHING
    assert reminded_ids("reminder_daily") == {first.id, second.id}

    sweeper.sweep()
    assert reminders.send_daily(now=morning) == NOTHING
    sweeper.sweep()
    assert sorted(r.rcpt_tos[0] for r in smtp.messages) == ["alice@example.com",
                                                            "bob@example.com"]
    message = next(r for r in smtp.messages if r.rcpt_tos == ["alice@example.com"])
    assert message.message["Subject"] == "Reminder: your appointment today at 10:00"
    text = message.message.get_body(("plain",)).get_content()
    assert "Tue 01 Dec 2026, 10:00 (Berlin time)" in text
    assert "Dr Carol Clark" in text and "1 Test Street, Berlin" in text
    assert "/visit/" in text
    raw = message.raw.decode("utf-8", "replace")
    assert "Private reason" not in raw and "Cardiology" not in raw


def test_daily_skips_a_visit_that_started_before_the_run(app, alice, bob, carol):
    early = visit(alice, carol, local(2026, 12, 1, 7, 30))
    later = visit(bob, carol, local(2026, 12, 1, 9, 0))
    assert reminders.send_daily(now=local(2026, 12, 1, 8, 0)) == {"sent": 1, "skipped": 1}
    assert reminders_of(early) == {"reminder_daily": (
        "skipped", "the visit had started before the daily reminders went out")}
    assert reminders_of(later) == {"reminder_daily": ("pending", "")}


@pytest.mark.parametrize("day, hours", [((2026, 3, 29), 23), ((2026, 10, 25), 25)])
def test_daily_reminders_on_dst_days_cover_exactly_that_day(app, alice, carol, day, hours):
    y, m, d = day
    before = visit(alice, carol, local(y, m, d - 1, 23, 45))
    first = visit(alice, carol, local(y, m, d, 0, 15))
    last = visit(alice, carol, local(y, m, d, 23, 45))
    after = visit(alice, carol, local(y, m, d + 1, 0, 15))
    assert last.start - first.start == timedelta(hours=hours - 1, minutes=30)
    reminders.send_daily(now=local(y, m, d, 8, 0))
    assert reminded_ids("reminder_daily") == {first.id, last.id}
    assert reminders_of(last) == {"reminder_daily": ("pending", "")}
    assert reminders_of(before) == reminders_of(after) == {}


# -- advance --------------------------------------------------------------------------------------


def test_24h_and_2h_reminders_are_sent_once_each(smtp_settings, smtp, alice, carol):
    start = local(2026, 12, 2, 10, 0)
    appointment = visit(alice, carol, start)
    assert reminders.send_advance(now=start - DAY - timedelta(minutes=1)) == NOTHING
    assert reminders.send_advance(now=start - DAY) == {"sent": 1, "skipped": 0}
    assert reminders.send_advance(now=start - DAY + timedelta(minutes=5)) == NOTHING
    assert reminders.send_advance(now=start - 2 * HOUR - timedelta(minutes=1)) == NOTHING
    assert reminders.send_advance(now=start - 2 * HOUR) == {"sent": 1, "skipped": 0}
    assert reminders.send_advance(now=start - HOUR) == NOTHING
    assert reminders.send_advance(now=start + HOUR) == NOTHING
    assert reminders_of(appointment) == {"reminder_24h": ("pending", ""),
                                         "reminder_2h": ("pending", "")}
    sweeper.sweep()
    sweeper.sweep()
    assert [r.message["Subject"] for r in smtp.messages] == [
        "Reminder: your appointment on Wed 02 Dec 2026 at 10:00"] * 2


@pytest.mark.parametrize("start, real_hours", [
    (local(2026, 3, 29, 9, 0), 23),  # clocks go forward in the night before
    (local(2026, 10, 25, 9, 0), 25),  # clocks go back
    (local(2026, 3, 30, 9, 0), 24),  # the change is the day before the reminder
])
def test_the_24h_reminder_keeps_the_clinic_time_across_dst(app, alice, carol, start,
                                                           real_hours):
    """24 h before a 09:00 visit means 09:00 the day before, however many hours that is."""
    appointment = visit(alice, carol, start)
    day_before = clock.local(start).date() - DAY
    nine = datetime(day_before.year, day_before.month, day_before.day, 9, 0, tzinfo=TZ)
    assert reminders.due_at(start, DAY) == nine
    assert start - nine == timedelta(hours=real_hours)

    assert reminders.send_advance(now=nine - timedelta(minutes=1)) == NOTHING
    assert reminders.send_advance(now=nine) == {"sent": 1, "skipped": 0}
    assert set(reminders_of(appointment)) == {"reminder_24h"}
    # The 2 h reminder is two real hours before: 07:00 clinic time.
    assert clock.local(reminders.due_at(start, 2 * HOUR)).strftime("%H:%M") == "07:00"
    assert reminders.send_advance(now=start - 2 * HOUR - timedelta(seconds=1)) == NOTHING
    assert reminders.send_advance(now=start - 2 * HOUR) == {"sent": 1, "skipped": 0}


@pytest.mark.parametrize("offset", [DAY, 2 * DAY, 2 * HOUR, timedelta(minutes=90)])
@pytest.mark.parametrize("around", [local(2026, 3, 29, 2, 0), local(2026, 10, 25, 2, 0)])
def test_no_due_reminder_starts_after_latest_due_start(offset, around):
    """The run's window ends at latest_due_start: every quarter hour of the days around each
    clock change, a visit whose reminder is due starts no later, and the bound is tight (a
    visit just after it is not due), with the clocks' changes at the visit's end, the
    reminder's end, or both."""
    starts = [around - 3 * DAY + k * timedelta(minutes=15) for k in range(4 * 24 * 7)]
    for now in [start for start in starts if start + offset + 2 * HOUR < starts[-1]][::3]:
        latest = reminders.latest_due_start(now, offset, TZ)
        due = [start for start in starts if reminders.due_at(start, offset, TZ) <= now]
        assert all(start <= latest for start in due), now
        assert latest - max(due) <= HOUR, now


def test_reminders_skip_cancelled_visits(app, alice, carol):
    start = local(2026, 12, 2, 10, 0)
    appointment = appointments.book(alice.id, carol.id, start, now=start - 3 * DAY)
    appointments.cancel(appointment, alice, now=start - 2 * DAY)
    for now in (start - DAY, start - 2 * HOUR, start - HOUR):
        assert reminders.send_advance(now=now) == NOTHING
    assert reminders.send_daily(now=local(2026, 12, 2, 8, 0)) == NOTHING
    assert reminders_of() == {}


def test_reminders_follow_a_rescheduled_visit(smtp_settings, smtp, alice, carol):
    old, new = local(2026, 12, 10, 10, 0), local(2026, 12, 11, 15, 0)
    with time_machine.travel(old - 3 * DAY, tick=False) as traveller:
        appointment = appointments.book(alice.id, carol.id, old)
        traveller.move_to(old - DAY)
        assert reminders.send_advance() == {"sent": 1, "skipped": 0}  # not yet delivered
        traveller.move_to(old - 23 * HOUR)
        appointments.reschedule(appointment, new, alice)
        assert reminders_of(appointment) == {
            "reminder_24h": ("skipped", "appointment moved to another time")}

        for now in (old - 2 * HOUR, old, new - DAY - timedelta(minutes=1)):
            traveller.move_to(now)
            assert reminders.send_advance() == NOTHING
        traveller.move_to(new - DAY)
        assert reminders.send_advance() == {"sent": 1, "skipped": 0}
        assert reminders.send_advance() == NOTHING
        traveller.move_to(new - 2 * HOUR)
        assert reminders.send_advance() == {"sent": 1, "skipped": 0}
        assert reminders.send_daily(now=local(2026, 12, 10, 8, 0)) == NOTHING  # the old day
        sweeper.sweep()

    keys = sorted(m.key for m in Message.select().where(Message.kind == "reminder_advance",
                                                        Message.status == "sent"))
    assert keys == [f"reminder_24h:{appointment.id}:2026-12-11T14:00Z",
                    f"reminder_2h:{appointment.id}:2026-12-11T14:00Z"]
    reminders_sent = [r.message["Subject"] for r in smtp.messages
                      if r.message["Subject"].startswith("Reminder")]
    assert reminders_sent == ["Reminder: your appointment on Fri 11 Dec 2026 at 15:00"] * 2


@pytest.mark.parametrize("ahead, expected", [
    (5 * HOUR, {"reminder_24h": ("skipped", "booked less than 24 h ahead")}),
    (HOUR, {"reminder_24h": ("skipped", "booked less than 24 h ahead"),
            "reminder_2h": ("skipped", "booked less than 2 h ahead")}),
])
def test_a_visit_booked_closer_than_an_offset_gets_no_reminder_for_it(app, alice, carol, ahead,
                                                                      expected):
    start = local(2026, 12, 10, 15, 0)
    with time_machine.travel(start - ahead, tick=False) as traveller:
        appointment = appointments.book(alice.id, carol.id, start)
        traveller.shift(timedelta(minutes=5))
        result = reminders.send_advance()
        assert result == {"sent": 0, "skipped": len(expected)}
        assert reminders_of(appointment) == expected
        traveller.move_to(start - 2 * HOUR)
        reminders.send_advance()
    if ahead > 2 * HOUR:  # the 2 h reminder still comes
        assert reminders_of(appointment)["reminder_2h"] == ("pending", "")
    else:
        assert reminders_of(appointment) == expected


@pytest.mark.parametrize("back, expected", [
    (-3 * HOUR, {"reminder_24h": ("pending", "")}),  # late, but the visit is hours away
    (-HOUR, {"reminder_24h": ("skipped", f"{MISSED}; the 2 h reminder, due as well, replaces it"),
             "reminder_2h": ("pending", "")}),
    (-timedelta(minutes=10), {
        "reminder_24h": ("skipped", f"{MISSED}; the visit was less than 15 minutes away"),
        "reminder_2h": ("skipped", f"{MISSED}; the visit was less than 15 minutes away")}),
    (timedelta(minutes=10), {
        "reminder_24h": ("skipped", f"{MISSED}; the visit had already started"),
        "reminder_2h": ("skipped", f"{MISSED}; the visit had already started")}),
])
def test_a_reminder_missed_while_the_clinic_was_down(app, alice, carol, back, expected):
    start = local(2026, 12, 10, 10, 0)
    appointment = visit(alice, carol, start)
    assert reminders.send_advance(now=start - 2 * DAY) == NOTHING  # then the clinic went down
    sent = sum(1 for status, _ in expected.values() if status == "pending")
    assert reminders.send_advance(now=start + back) == {"sent": sent,
                                                        "skipped": len(expected) - sent}
    assert reminders_of(appointment) == expected
    assert reminders.send_advance(now=start + back + timedelta(minutes=5)) == NOTHING


def test_an_offset_that_is_not_whole_days_is_real_time(app, alice, carol):
    settings.use(settings.get().replace(reminder_offsets=(timedelta(minutes=90),)))
    start = local(2026, 3, 29, 3, 30)  # the first hour after the clocks went forward
    appointment = visit(alice, carol, start)
    assert reminders.send_advance(now=start - timedelta(minutes=91)) == NOTHING
    assert reminders.send_advance(now=start - timedelta(minutes=90)) == {"sent": 1, "skipped": 0}
    assert reminders_of(appointment) == {"reminder_90m": ("pending", "")}


# -- one reminder per visit in any CLINIC_REMINDER_GAP ---------------------------------------------


GAP = "a reminder went out at 08:00, less than 6 h before"


def test_a_10_oclock_visit_gets_one_reminder_at_8(smtp_settings, smtp, alice, carol):
    start = local(2026, 12, 2, 10, 0)
    appointment = visit(alice, carol, start)
    with time_machine.travel(start - DAY, tick=False):
        assert reminders.send_advance() == {"sent": 1, "skipped": 0}  # 24 h: yesterday 10:00
    with time_machine.travel(local(2026, 12, 2, 8, 0), tick=False):
        assert reminders.send_daily() == {"sent": 1, "skipped": 0}
        assert reminders.send_advance() == {"sent": 0, "skipped": 1}  # 2 h, the same minute
    assert reminders_of(appointment) == {"reminder_24h": ("pending", ""),
                                         "reminder_daily": ("pending", ""),
                                         "reminder_2h": ("skipped", GAP)}
    sweeper.sweep()
    assert len(smtp.messages) == 2
    appt = Appointment.with_people().where(Appointment.id == appointment.id).get()
    events = timeline.for_appointment(appt, now=local(2026, 12, 2, 8, 1))
    assert ("2 h reminder not sent", GAP, "skipped") in [
        (event.what, event.detail, event.status) for event in events]


def test_the_gap_counts_from_the_last_reminder_sent(app, alice, carol, dave):
    # Two doctors: one doctor's visits may not overlap (PostgreSQL refuses it).
    reminded = visit(alice, carol, local(2026, 12, 2, 16, 0))  # 2 h reminder at 14:00: 6 h on
    skipped = visit(alice, dave, local(2026, 12, 2, 15, 55))  # at 13:55: 5 h 55 min on
    reminders.send_daily(now=local(2026, 12, 2, 8, 0))
    reminders.send_advance(now=local(2026, 12, 2, 13, 55))
    reminders.send_advance(now=local(2026, 12, 2, 14, 0))
    assert reminders_of(skipped)["reminder_2h"] == ("skipped", GAP)
    assert reminders_of(reminded)["reminder_2h"] == ("pending", "")


def test_a_reminder_skipped_for_the_patient_does_not_count(app, alice, carol):
    start = local(2026, 12, 2, 10, 0)
    appointment = visit(alice, carol, start)
    reminders.send_daily(now=local(2026, 12, 2, 7, 30))
    Message.update(status="skipped").where(Message.appointment == appointment.id).execute()
    reminders.send_advance(now=start - 2 * HOUR)
    assert reminders_of(appointment)["reminder_2h"] == ("pending", "")


def test_the_daily_and_2h_jobs_at_once_write_one_reminder(smtp_settings, smtp, alice, bob,
                                                         carol, dave):
    start = local(2026, 12, 10, 10, 0)
    # A minute apart and a minute long: one doctor's visits may not overlap.
    visits = [visit((alice, bob)[i % 2], (carol, dave)[i % 2],
                    start + i // 2 * timedelta(minutes=1), minutes=1) for i in range(6)]
    now = start - 2 * HOUR + timedelta(minutes=5)
    jobs = [reminders.send_daily, reminders.send_advance] * 2
    results = in_threads(4, lambda: jobs.pop()(now=now))
    assert sum(r["sent"] for r in results) == 6
    for appointment in visits:
        statuses = [status for status, _ in reminders_of(appointment).values()]
        assert statuses.count("pending") == 1  # the daily or the 2 h one, the other skipped


def test_the_gap_setting(tmp_path):
    def load(raw):
        return settings.load(environ={"CLINIC_REMINDER_GAP": raw},
                             data_dir=str(tmp_path)).reminder_gap

    assert settings.load(environ={}, data_dir=str(tmp_path)).reminder_gap == 6 * HOUR
    assert load("90m") == timedelta(minutes=90)
    with pytest.raises(SettingsError, match="CLINIC_REMINDER_GAP"):
        load("soon")


# -- never twice, at a cost that does not grow with the table -----------------------------------


def test_overlapping_runs_send_each_reminder_once(smtp_settings, smtp, alice, bob, carol, dave):
    start = local(2026, 12, 10, 9, 0)
    visits = [visit((alice, bob)[i % 2], (carol, dave)[i % 2], start + i * timedelta(minutes=30))
              for i in range(12)]
    now = visits[-1].start - DAY
    advance = in_threads(3, lambda: reminders.send_advance(now=now))
    assert sum(r["sent"] for r in advance) == 12
    daily = in_threads(3, lambda: reminders.send_daily(now=local(2026, 12, 10, 8, 0)))
    assert sum(r["sent"] for r in daily) == 12
    with time_machine.travel(local(2026, 12, 10, 8, 0), tick=False):  # when they were written
        in_threads(2, sweeper.sweep)
    assert len(smtp.messages) == 24
    assert len(set(smtp.message_ids())) == 24
    assert Message.select().where(Message.kind == "reminder_advance").count() == 12


def test_a_run_costs_what_is_due_not_the_table(app, backend, alice, bob, carol, dave,
                                               statements):
    start = local(2026, 12, 10, 9, 0)
    for week in range(1, 30):  # far from the window: must not be read
        visit(alice, carol, start + week * 7 * DAY)
        visit(bob, dave, start - week * 7 * DAY, status="completed")
    for i in range(3):
        visit(alice, carol, start + i * HOUR)
    now = start - 16 * HOUR  # the 24 h reminders of the first 8 hours are due
    assert reminders.send_advance(now=now)["sent"] == 3
    statements.clear()
    assert reminders.send_advance(now=now) == NOTHING
    few = len(statements)
    for i in range(3, 8):
        visit(bob, dave, start + i * HOUR)
    assert reminders.send_advance(now=now)["sent"] == 5
    statements.clear()
    assert reminders.send_advance(now=now) == NOTHING
    # One query, which finds every due reminder written: no visit and no message is read.
    assert len(statements) == few == 1

    if backend != "sqlite":
        return  # the plans below are SQLite's; PostgreSQL's planner scans tables this small
    for sql, params in list(statements):
        plan = " / ".join(row[-1] for row in db.database.execute_sql(
            "EXPLAIN QUERY PLAN " + sql, params))
        assert "SCAN " not in plan, plan
        assert "appointment_status_start (status=? AND start>? AND start<?)" in plan, plan
        # Each visit's reminder looked up by its key, not every message of a kind.
        assert plan.count("INDEX message_key (key=?)") == 2, plan


# -- settings and jobs ----------------------------------------------------------------------------


def test_the_offsets_setting(tmp_path):
    def load(raw):
        return settings.load(environ={"CLINIC_REMINDER_OFFSETS": raw},
                             data_dir=str(tmp_path)).reminder_offsets

    assert load("24h,2h") == (DAY, 2 * HOUR)
    assert load("90m, 2d") == (2 * DAY, timedelta(minutes=90))
    assert [reminders.label(o) for o in load("1d,90m")] == ["24h", "90m"]
    assert settings.load(environ={}, data_dir=str(tmp_path)).reminder_offsets == (DAY, 2 * HOUR)
    for bad in ("10m", "soon", "24h,x"):
        with pytest.raises(SettingsError, match="CLINIC_REMINDER_OFFSETS"):
            load(bad)


def test_the_jobs_run_these_functions(app, alice, carol):
    assert scheduler.get("daily-reminders").resolve() is reminders.send_daily
    assert scheduler.get("advance-reminders").resolve() is reminders.send_advance
    start = local(2026, 12, 10, 10, 0)
    visit(alice, carol, start)
    assert scheduler.run("advance-reminders", now=start - DAY) == {"sent": 1, "skipped": 0}
    assert scheduler.run("daily-reminders", now=local(2026, 12, 10, 8, 0)) == {"sent": 1,
                                                                          "skipped": 0}
