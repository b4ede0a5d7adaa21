"""The admins' summary of a month's reports (reports.summary): each doctor's report sent, made,
failed or missing, when it was sent and its totals; as JSON (GET /api/admin/reports/summary)
and as the admin's page (/admin/reports)."""

from datetime import datetime

import pytest
import time_machine

from clinic import people, reports
from clinic.errors import Invalid
from clinic.mail import delivery
from clinic.models import Message, User
from tests.conftest import TZ, login, make_doctor
from tests.test_reports import OCTOBER, REPORT_DAY, local, visit

NOVEMBER_15 = local(2026, 11, 15, 12)


def report_email(doctor):
    return Message.get(Message.kind == "monthly_report", Message.user == doctor.id)


@pytest.fixture
def october(smtp_settings, smtp, alice, bob, carol, dave):
    """carol's report was sent, dave's bounced, gina's (now inactive) is still on its way,
    frank (active) has none."""
    gina = make_doctor("gina@example.com", "Dr Gina Green", "Neurology")
    visit(alice, carol, local(2026, 10, 5, 9))
    visit(bob, carol, local(2026, 10, 6, 9), "no_show")
    reports.make(OCTOBER, [carol, dave, gina], now=REPORT_DAY)
    frank = make_doctor("frank@example.com", "Dr Frank Fox", "Neurology")
    delivery.deliver([report_email(carol).id])
    smtp.answer("550")
    delivery.deliver([report_email(dave).id])
    people.set_active(gina.id, False)
    return {"carol": carol, "dave": dave, "gina": gina, "frank": frank}


def test_each_doctor_has_a_state_a_sending_time_and_totals(october):
    summary = reports.summary("2026-10", now=NOVEMBER_15)
    rows = {row["doctor_name"]: row for row in summary["doctors"]}
    assert summary["month_year"] == "2026-10"
    assert summary["counts"] == {"sent": 1, "made": 1, "failed": 1, "missing": 1}
    carol = rows["Dr Carol Clark"]
    sent_at = report_email(october["carol"]).sent_at
    assert sent_at is not None
    assert (carol["state"], carol["sent_at"], carol["error"]) == ("sent", sent_at, "")
    assert carol["totals"]["appointments"] == 2
    assert carol["totals"]["by_status"]["no_show"] == 1 and carol["totals"]["patients"] == 2
    dave = rows["Dr Dave Davis"]
    assert (dave["state"], dave["sent_at"]) == ("failed", None)
    assert dave["error"] == "recipient refused: 550 5.1.1 No such user here"
    assert dave["totals"]["appointments"] == 0
    gina = rows["Dr Gina Green"]
    assert (gina["state"], gina["active"], gina["sent_at"]) == ("made", False, None)
    frank = rows["Dr Frank Fox"]
    assert (frank["state"], frank["totals"], frank["made_at"]) == ("missing", None, None)
    assert list(rows) == sorted(rows)  # by name


def test_an_inactive_doctor_without_that_months_report_is_not_listed(october):
    User.update(active=False).where(User.id == october["frank"].id).execute()
    names = [row["doctor_name"] for row in reports.summary("2026-10", now=NOVEMBER_15)["doctors"]]
    assert "Dr Frank Fox" not in names and "Dr Gina Green" in names


@pytest.mark.parametrize("raw", ["2026-13", "", None, "October", "2026-11"])
def test_a_bad_month_says_what_is_expected(app, raw):
    with pytest.raises(Invalid) as caught:
        reports.summary(raw, now=NOVEMBER_15)
    assert "month_year must be" in caught.value.message


def test_the_api_answers_for_admins_only(october, new_client, alice, erin):
    admin = new_client()
    admin.api_login(erin.email)
    with time_machine.travel(NOVEMBER_15, tick=False):
        response = admin.get("/api/admin/reports/summary?month_year=2026-10")
        assert response.status == 200, response
        carol = next(row for row in response.json()["doctors"]
                     if row["doctor_id"] == october["carol"].id)
        sent_at = report_email(october["carol"]).sent_at
        assert datetime.fromisoformat(carol["sent_at"]) == sent_at
        assert datetime.fromisoformat(carol["sent_at"]).utcoffset() == sent_at.astimezone(
            TZ).utcoffset()  # in the clinic's zone
        bad = admin.get("/api/admin/reports/summary?month_year=2026-1")
        assert bad.status == 400
        assert bad.json()["error"] == "month_year must be YYYY-MM, e.g. 2026-10"
        assert admin.get("/api/admin/reports/summary").status == 400
        patient = new_client()
        patient.api_login(alice.email)
        assert patient.get("/api/admin/reports/summary?month_year=2026-10").status == 403


def test_the_admin_page_shows_the_month(october, client, erin):
    login(client, erin)
    with time_machine.travel(NOVEMBER_15, tick=False):
        page = client.get("/admin/reports")  # last month by default
        assert page.status == 200
        assert 'value="2026-10"' in page.text
        assert "1 sent, 1 on their way, 1 failed, 1 missing" in page.text
        assert "550" in page.text and "Dr Frank Fox" in page.text
        assert 'href="/admin/reports"' in page.text  # in the admin's menu
        bad = client.get("/admin/reports?month_year=soon")
        assert bad.status == 400 and "month_year must be YYYY-MM" in bad.text
