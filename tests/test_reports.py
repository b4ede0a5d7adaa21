"""Monthly activity reports (clinic/reports.py) on a real database: the figures of a month with
every status, the month's edges in the clinic's zone across a daylight-saving change (October
2026 in Europe/Berlin), once per doctor and month however often or concurrently it runs, the
catch-up after downtime through the scheduler's tick, and what each doctor's email shows."""

import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from clinic import db, people, reports
from clinic.errors import Invalid
from clinic.jobs import scheduler
from clinic.mail import outbox, sweeper
from clinic.models import (
    Appointment,
    JobState,
    Message,
    MonthlyReport,
    Treatment,
)
from tests.conftest import TZ, make_patient

OCTOBER = date(2026, 10, 1)
REPORT_DAY = datetime(2026, 11, 1, 9, tzinfo=TZ).astimezone(UTC)  # the job's due time


def local(*args):
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def visit(patient, doctor, start, status="completed", diagnosis="Angina", treatment="Rest"):
    """An appointment written as it would be after the fact (any time, any status), with its
    treatment record when completed."""
    appointment = Appointment.create(patient=patient.id, doctor=doctor.id, start=start,
                                     end=start + timedelta(minutes=30), status=status,
                                     created_at=start - timedelta(days=7))
    if status == "completed":
        Treatment.create(appointment=appointment.id, visit_type="Check-up",
                         diagnosis=diagnosis, treatment=treatment)
    return appointment


def report_email(doctor):
    return Message.get(Message.kind == "monthly_report", Message.user == doctor.id)


def reports_of(doctor):
    return list(MonthlyReport.select().where(MonthlyReport.doctor == doctor.id))


# -- months ---------------------------------------------------------------------------------------


def test_the_previous_month_is_the_clinic_local_one(app):
    # 23:30 UTC on 31 October is already 1 November in Berlin: October is the previous month.
    assert reports.previous_month(utc(2026, 10, 31, 23, 30)) == OCTOBER
    assert reports.previous_month(utc(2026, 10, 31, 22, 30)) == date(2026, 9, 1)
    assert reports.previous_month(local(2027, 1, 1, 0, 0)) == date(2026, 12, 1)


def test_october_runs_from_local_midnight_to_local_midnight_and_is_an_hour_longer(app):
    start, end = reports.bounds(OCTOBER)
    assert start == utc(2026, 9, 30, 22)  # 00:00 CEST
    assert end == utc(2026, 10, 31, 23)  # 00:00 CET: the clocks went back on the 25th
    assert end - start == timedelta(days=31, hours=1)


@pytest.mark.parametrize("raw", ["2026-13", "2026-00", "2026-1", "26-10", "Oct 2026",
                                 "2026-10-01", "", None, 202610, "0999-10", "２０２６-10"])
def test_a_month_that_is_not_yyyy_mm_says_what_is_expected(app, raw):
    with pytest.raises(Invalid) as caught:
        reports.parse_month(raw, now=utc(2026, 11, 15))
    assert caught.value.message == "month_year must be YYYY-MM, e.g. 2026-10"
    assert caught.value.fields == {"month_year": caught.value.message}


@pytest.mark.parametrize("raw", ["2026-11", "2026-12", "2031-01"])
def test_a_month_that_has_not_ended_is_refused(app, raw):
    with pytest.raises(Invalid) as caught:
        reports.parse_month(raw, now=utc(2026, 11, 15))
    assert caught.value.message == "month_year must be a month that has ended, e.g. 2026-10"


def test_a_month_that_has_ended_is_its_first_day(app):
    assert reports.parse_month(" 2026-10 ", now=utc(2026, 11, 1, 8)) == OCTOBER
    assert reports.parse_month("1999-02", now=utc(2026, 11, 1, 8)) == date(1999, 2, 1)


# -- the figures ----------------------------------------------------------------------------------


def test_the_figures_count_every_status_treatments_patients_and_the_no_show_rate(
        alice, bob, carol, dave):
    zoe = make_patient("zoe@example.com", "Zoë Zimmer")
    visit(alice, carol, local(2026, 10, 5, 9))
    visit(alice, carol, local(2026, 10, 6, 9))
    visit(bob, carol, local(2026, 10, 7, 9))
    visit(bob, carol, local(2026, 10, 8, 9), "no_show")
    visit(zoe, carol, local(2026, 10, 9, 9), "cancelled")  # zoe only cancelled: not a patient
    visit(alice, carol, local(2026, 10, 12, 9), "booked")
    visit(bob, carol, local(2026, 10, 13, 9), "confirmed")
    visit(alice, carol, local(2026, 11, 2, 9))  # November: not in October's report
    visit(alice, dave, local(2026, 10, 5, 9), "no_show")

    assert reports.send_monthly(now=REPORT_DAY) == {
        "month": "2026-10", "doctors": 2, "sent": 2, "already_sent": 0, "failed": 0}

    [report] = reports_of(carol)
    assert report.month == "2026-10"
    assert report.totals == {
        "appointments": 7,
        "by_status": {"booked": 1, "confirmed": 1, "arrived": 0, "completed": 3,
                      "cancelled": 1, "no_show": 1},
        "treatments": 3,
        "patients": 2,
        "no_show_rate": 0.25,  # 1 / (3 + 1)
    }
    assert report.message_id == report_email(carol).id
    assert reports_of(dave)[0].totals["no_show_rate"] == 1.0
    text = report_email(carol).text_body
    assert "Appointments: 7\n  Completed: 3\n  No-show: 1\n  Cancelled: 1\n" in text
    assert "Treatments recorded: 3\n" in text
    assert "Patients: 2 (different patients, cancelled appointments not counted)" in text
    assert "No-show rate: 25.0%\n  (no-shows / (completed + no-shows))" in text


def test_a_month_without_completed_or_missed_visits_has_no_no_show_rate(alice, carol):
    visit(alice, carol, local(2026, 10, 5, 9), "cancelled")
    reports.send_monthly(now=REPORT_DAY)
    assert reports_of(carol)[0].totals["no_show_rate"] is None
    assert "No-show rate: none, no visit was due" in report_email(carol).text_body


def test_the_months_edges_are_clinic_local_midnights_across_the_dst_change(alice, carol):
    inside = [
        visit(alice, carol, utc(2026, 9, 30, 22, 0), diagnosis="first"),  # 1 Oct 00:00 CEST
        visit(alice, carol, utc(2026, 10, 25, 0, 30), diagnosis="CEST"),  # 02:30 CEST
        visit(alice, carol, utc(2026, 10, 25, 1, 30), diagnosis="CET"),  # 02:30 CET, again
        visit(alice, carol, utc(2026, 10, 31, 22, 30), diagnosis="last"),  # 31 Oct 23:30 CET
    ]
    visit(alice, carol, utc(2026, 9, 30, 21, 30), diagnosis="September")  # 30 Sep 23:30 CEST
    visit(alice, carol, utc(2026, 10, 31, 23, 0), diagnosis="November")  # 1 Nov 00:00 CET

    reports.send_monthly(now=REPORT_DAY)

    assert reports_of(carol)[0].totals["by_status"]["completed"] == len(inside)
    text = report_email(carol).text_body
    assert "September" not in text and "November" not in text
    lines = [line.strip() for line in text.splitlines()]
    assert lines.index("Thu 01 Oct 2026") + 1 == lines.index("00:00  Alice Adams")
    day = lines.index("Sun 25 Oct 2026")
    assert lines[day + 1:day + 7] == ["02:30  Alice Adams", "Diagnosis: CEST", "Treatment: Rest",
                                      "02:30  Alice Adams", "Diagnosis: CET", "Treatment: Rest"]
    assert lines[lines.index("Sat 31 Oct 2026") + 1] == "23:30  Alice Adams"


# -- the email ------------------------------------------------------------------------------------


def test_the_email_has_a_table_of_each_visit_in_text_and_html(alice, bob, carol):
    visit(bob, carol, local(2026, 10, 20, 14, 30), diagnosis="Arrhythmia", treatment="Beta "
                                                                                     "blockers")
    visit(alice, carol, local(2026, 10, 6, 9), diagnosis="<b>Angina</b>", treatment="")
    reports.send_monthly(now=REPORT_DAY)
    message = report_email(carol)
    assert message.subject == "Your activity in October 2026 at Test Clinic"
    assert message.recipient == "carol@example.com"
    assert message.key == f"monthly_report:{carol.id}:2026-10"
    assert "Tue 06 Oct 2026\n  09:00  Alice Adams\n         Diagnosis: <b>Angina</b>\n" \
           "         Treatment: -\n" in message.text_body
    assert message.text_body.index("Tue 06 Oct") < message.text_body.index("Tue 20 Oct")
    html = message.html_body
    assert "<th scope=\"col\" width=\"15%\">Time</th><th scope=\"col\">Patient</th>" \
           "<th scope=\"col\">Diagnosis</th><th scope=\"col\">Treatment</th>" in html
    assert "<td>09:00</td><td>Alice Adams</td><td>&lt;b&gt;Angina&lt;/b&gt;</td><td>–</td>" in html
    assert "<td>14:30</td><td>Bob Brown</td><td>Arrhythmia</td><td>Beta blockers</td>" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "Angina" not in message.subject  # nothing medical in a header


def test_each_doctor_reads_only_their_own_patients(alice, bob, carol, dave):
    visit(alice, carol, local(2026, 10, 6, 9), diagnosis="Angina", treatment="Nitrates")
    visit(bob, dave, local(2026, 10, 6, 9), diagnosis="Eczema", treatment="Emollient")
    reports.send_monthly(now=REPORT_DAY)
    for doctor, own, others in ((carol, ("Alice Adams", "Angina", "Nitrates"),
                                 ("Bob Brown", "Eczema", "Emollient")),
                                (dave, ("Bob Brown", "Eczema", "Emollient"),
                                 ("Alice Adams", "Angina", "Nitrates"))):
        message = report_email(doctor)
        for body in (message.text_body, message.html_body):
            assert all(word in body for word in own)
            assert not any(word in body for word in others)


def test_a_doctor_without_appointments_gets_a_short_report(alice, carol, dave):
    visit(alice, carol, local(2026, 10, 6, 9))
    reports.send_monthly(now=REPORT_DAY)
    message = report_email(dave)
    assert "You had no appointments at Test Clinic in October 2026" in message.text_body
    assert "You had no appointments at Test Clinic in October 2026" in message.html_body
    assert "Alice" not in message.text_body + message.html_body
    assert reports_of(dave)[0].totals["appointments"] == 0


def test_inactive_doctors_get_no_report(alice, carol, dave):
    visit(alice, dave, local(2026, 10, 6, 9))
    people.set_active(dave.id, False)
    assert reports.send_monthly(now=REPORT_DAY)["doctors"] == 1
    assert reports_of(dave) == []
    assert Message.select().where(Message.user == dave.id).count() == 0
    assert len(reports_of(carol)) == 1


def test_the_report_reaches_the_smtp_server_as_text_and_html(smtp_settings, smtp, alice, carol):
    visit(alice, carol, local(2026, 10, 6, 9))
    reports.send_monthly(now=REPORT_DAY)
    assert sweeper.sweep() == 1
    [received] = smtp.messages
    assert received.rcpt_tos == ["carol@example.com"]
    email = received.message
    assert email["Subject"] == "Your activity in October 2026 at Test Clinic"
    assert "Alice Adams" in email.get_body(("plain",)).get_content()
    assert "<td>Alice Adams</td>" in email.get_body(("html",)).get_content()


# -- once per doctor and month --------------------------------------------------------------------


def test_running_twice_sends_each_doctor_one_report(alice, carol, dave):
    visit(alice, carol, local(2026, 10, 6, 9))
    first = reports.send_monthly(now=REPORT_DAY)
    second = reports.send_monthly(now=REPORT_DAY + timedelta(hours=3))
    assert (first["sent"], first["already_sent"]) == (2, 0)
    assert (second["sent"], second["already_sent"]) == (0, 2)
    assert MonthlyReport.select().count() == 2
    assert Message.select().where(Message.kind == "monthly_report").count() == 2


def test_a_report_whose_row_was_lost_is_not_emailed_again(alice, carol):
    visit(alice, carol, local(2026, 10, 6, 9))
    reports.send_monthly(now=REPORT_DAY)
    message = report_email(carol)
    MonthlyReport.delete().execute()
    assert reports.send_monthly(now=REPORT_DAY)["sent"] == 1
    assert Message.select().where(Message.kind == "monthly_report").count() == 1
    assert reports_of(carol)[0].message_id == message.id


def test_runs_in_two_threads_at_once_send_each_doctor_one_report(app, alice, carol, dave):
    for day in range(1, 29):
        visit(alice, carol, local(2026, 10, day, 9))
        visit(alice, dave, local(2026, 10, day, 10))
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(reports.send_monthly(now=REPORT_DAY))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            db.database.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(r["sent"] for r in results) == 2
    assert sum(r["sent"] + r["already_sent"] for r in results) == 4
    assert sorted(r.doctor_id for r in MonthlyReport.select()) == sorted([carol.id, dave.id])
    assert Message.select().where(Message.kind == "monthly_report").count() == 2


def test_a_failure_for_one_doctor_leaves_the_others_and_a_rerun_makes_it(
        app, alice, carol, dave, monkeypatch):
    visit(alice, carol, local(2026, 10, 6, 9))
    enqueue = outbox.enqueue

    def refuse_dave(kind, key, recipient, **kwargs):
        if recipient == dave.email:
            raise OSError("disk full")
        return enqueue(kind, key, recipient, **kwargs)

    monkeypatch.setattr(outbox, "enqueue", refuse_dave)
    assert reports.send_monthly(now=REPORT_DAY)["failed"] == 1
    assert reports_of(dave) == []  # rolled back with its email: nothing half-made
    monkeypatch.setattr(outbox, "enqueue", enqueue)
    assert reports.send_monthly(now=REPORT_DAY) == {
        "month": "2026-10", "doctors": 2, "sent": 1, "already_sent": 1, "failed": 0}
    assert len(reports_of(dave)) == 1


# -- the scheduled job ----------------------------------------------------------------------------


def test_the_job_runs_send_monthly():
    assert scheduler.get("monthly-reports").resolve() is reports.send_monthly


def test_missed_while_down_at_0900_the_next_ticks_send_the_reports_once(alice, carol, dave):
    visit(alice, carol, local(2026, 10, 6, 9))
    ran = []

    def run_now(job, due):  # what the queued run_job task does, at once
        ran.append(due)
        scheduler.run(job.name, now=now)

    JobState.insert(name="monthly-reports", last_due_at=local(2026, 10, 1, 9)).execute()
    with scheduler.registry(scheduler.get("monthly-reports")):
        # The clinic was down from 08:00 to 12:00 on 1 November; it ticks every minute after.
        for minute in range(0, 180):
            now = local(2026, 11, 1, 12) + timedelta(minutes=minute)
            scheduler.tick(now, enqueue=run_now)
    assert ran == [REPORT_DAY]
    assert MonthlyReport.select().count() == 2
    assert Message.select().where(Message.kind == "monthly_report").count() == 2
    assert {r.month for r in MonthlyReport.select()} == {"2026-10"}


# -- scale ----------------------------------------------------------------------------------------


def test_the_queries_do_not_grow_with_the_visits(alice, bob, carol, dave, statements):
    def month(year, month, visits):
        for n in range(visits):
            visit(alice if n % 2 else bob, carol, local(year, month, 1 + n % 28, 9 + n // 28))
            visit(bob, dave, local(year, month, 1 + n % 28, 9 + n // 28), "no_show")
        statements.clear()
        reports.send_monthly(now=local(year, month + 1, 1, 9))
        return len(statements)

    assert month(2026, 9, 3) == month(2026, 10, 60)
