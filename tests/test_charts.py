"""The dashboard's charts: SVG drawn on the server by clinic/charts.py from the data
clinic/stats.py reads (the daily statistics and one GROUP BY of no-shows), and the dashboard page
that shows them with their tables, cached like its figures."""

import re
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta

import pytest
import time_machine

from clinic import stats
from clinic.models import Appointment, DailyStat
from clinic.web import charts
from tests.conftest import TZ, login

SVG = "{http://www.w3.org/2000/svg}"
# The charts of this morning cover the 30 days up to yesterday: 11 Feb to 12 Mar 2031.
MORNING = datetime(2031, 3, 13, 8, 0, tzinfo=TZ)
FIRST, LAST = date(2031, 2, 11), date(2031, 3, 12)
SERIES = [("a", "first", "#111111"), ("b", "second", "#222222")]


def parse(svg):
    """The chart as an XML tree: fails unless it is well-formed."""
    return ET.fromstring(str(svg))  # noqa: S314 (the app's own output, not a stranger's)


def bars(tree, series=None):
    return [rect for rect in tree.iter(SVG + "rect") if "data-value" in rect.attrib
            and (series is None or rect.get("data-series") == series)]


def texts(tree):
    return [el.text for el in tree.iter(SVG + "text")]


# -- drawing ------------------------------------------------------------------------------------


def test_a_stacked_bar_chart_is_svg_with_a_title_a_description_a_legend_and_axis_labels():
    svg = charts.stacked_bars("c1", "Visits", [("1 Mar", {"a": 2, "b": 1}), ("2 Mar", {"a": 4})],
                              SERIES, "Day", "Visits per day")
    tree = parse(svg)
    assert tree.tag == SVG + "svg" and tree.get("role") == "img"
    assert tree.get("aria-labelledby") == "c1-title c1-desc"
    assert tree.find(SVG + "title").text == "Visits"
    desc = tree.find(SVG + "desc").text
    assert "first 6" in desc and "second 1" in desc and "1 Mar" in desc and "2 Mar" in desc
    assert {"first", "second", "Day", "Visits per day", "1 Mar", "2 Mar"} <= set(texts(tree))
    assert "style" not in str(svg) and "<script" not in str(svg)  # the CSP allows neither


def test_bar_heights_are_proportional_to_the_values_and_stack_without_gaps():
    tree = parse(charts.stacked_bars(
        "c", "T", [("x", {"a": 2, "b": 6}), ("y", {"a": 4}), ("z", {"a": 8, "b": 0})],
        SERIES, "X", "Y"))
    heights = {(r.get("data-series"), r.get("data-value")): float(r.get("height"))
               for r in bars(tree)}
    unit = heights[("a", "2")] / 2
    assert unit > 0
    for (_, value), height in heights.items():
        assert height == pytest.approx(int(value) * unit, abs=0.02)
    assert ("b", "0") not in heights  # nothing is drawn for a zero
    # In the first column "b" sits on "a": its bottom is a's top.
    a, b = bars(tree, "a")[0], bars(tree, "b")[0]
    assert float(b.get("y")) + float(b.get("height")) == pytest.approx(float(a.get("y")),
                                                                       abs=0.02)


def test_horizontal_bar_lengths_are_proportional_to_the_shares():
    tree = parse(charts.horizontal_bars(
        "h", "Rates", [("Dr A", 0.5, "1 of 2"), ("Dr B", 0.25, "2 of 8"), ("Dr C", 0.0, "")],
        "share", "#D55E00", "Share"))
    widths = [float(r.get("width")) for r in bars(tree)]
    assert widths[0] > 0 and widths[1] == pytest.approx(widths[0] / 2, abs=0.02)
    assert widths[2] == 0
    assert {"Dr A", "50% (1 of 2)", "25% (2 of 8)", "0%"} <= set(texts(tree))


def test_labels_are_escaped():
    name = '<script>alert("x")</script> & Söhne'
    svg = str(charts.horizontal_bars("h", "Rates & <more>", [(name, 0.5, "1 of 2")], "share",
                                     "#000", "Share"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    tree = parse(svg)
    assert name in texts(tree)  # shown as the text it is
    assert tree.find(SVG + "title").text == "Rates & <more>"
    assert not list(tree.iter(SVG + "script")) and not list(tree.iter("script"))
    column = str(charts.stacked_bars("c", "T", [('"><x', {"a": 1})], SERIES, "X", "Y"))
    assert '"><x' in texts(parse(column))


def test_no_data_gives_a_clear_message_not_a_broken_chart():
    for svg in (charts.stacked_bars("c", "Visits", [("1 Mar", None), ("2 Mar", None)], SERIES,
                                    "Day", "Visits", empty="Recorded every night."),
                charts.stacked_bars("c", "Visits", [], SERIES, "Day", "Visits"),
                charts.horizontal_bars("h", "Rates", [], "share", "#000", "Share")):
        tree = parse(svg)
        assert "No data yet." in texts(tree)
        assert tree.find(SVG + "desc").text.startswith("No data yet.")
        assert not bars(tree)
    assert "Recorded every night." in str(charts.stacked_bars(
        "c", "T", [("1 Mar", None)], SERIES, "Day", "Visits", empty="Recorded every night."))


def test_days_with_zeros_draw_an_axis_and_days_without_figures_are_said_to_be_missing():
    tree = parse(charts.stacked_bars("c", "T", [("1 Mar", {"a": 0}), ("2 Mar", None)],
                                     SERIES, "Day", "Visits"))
    assert not bars(tree) and {"0", "1"} <= set(texts(tree))  # an axis from 0, no bars
    assert "1 of 2 have no figures" in tree.find(SVG + "desc").text


@pytest.mark.parametrize(("largest", "scale"), [
    (0, (1, 1)), (1, (1, 1)), (3, (3, 1)), (7, (8, 2)), (10, (10, 5)), (23, (30, 10)),
    (100, (100, 50)), (1234, (1500, 500)),
])
def test_the_axis_has_round_steps(largest, scale):
    assert charts.nice_scale(largest) == scale


# -- the data -----------------------------------------------------------------------------------


def visit(patient, doctor, start, status):
    return Appointment.create(patient=patient, doctor=doctor, start=start,
                              end=start + timedelta(minutes=30), status=status)


def at(day, hour=10):
    return datetime.combine(day, datetime.min.time().replace(hour=hour), tzinfo=TZ)


def test_no_show_rates_count_the_visits_due_in_the_window_per_doctor(alice, bob, carol, dave):
    for days_back, status in enumerate(("completed", "completed", "completed", "no_show")):
        visit(alice, carol, at(LAST - timedelta(days=days_back)), status)
    visit(bob, carol, at(LAST, 9), "cancelled")  # never due
    visit(bob, carol, at(LAST, 11), "booked")  # not settled
    visit(bob, carol, at(FIRST - timedelta(days=1)), "no_show")  # before the window
    visit(bob, carol, at(LAST + timedelta(days=1)), "no_show")  # today: after it
    visit(bob, dave, at(FIRST, 0), "no_show")  # the window's first minute

    data = stats.compute_charts(now=MORNING)

    assert (data["first"], data["last"]) == (FIRST, LAST)
    assert data["no_shows"] == [
        {"doctor_id": carol.id, "name": "Dr Carol Clark", "no_shows": 1, "due": 4, "rate": 0.25},
        {"doctor_id": dave.id, "name": "Dr Dave Davis", "no_shows": 1, "due": 1, "rate": 1.0},
    ]


def test_the_days_come_from_the_daily_statistics_with_unrecorded_days_empty(app):
    DailyStat.create(day=LAST, booked=1, completed=3, no_show=2, emails_sent=5, emails_failed=1)
    DailyStat.create(day=FIRST - timedelta(days=1), booked=9)  # too old
    data = stats.compute_charts(now=MORNING)
    days = dict(data["days"])
    assert list(days) == [FIRST + timedelta(days=n) for n in range(30)]
    assert days[LAST] == {"booked": 1, "confirmed": 0, "completed": 3, "cancelled": 0,
                          "no_show": 2, "emails_sent": 5, "emails_failed": 1, "sms_sent": 0,
                          "sms_failed": 0}
    assert [day for day, figures in days.items() if figures is None] == list(days)[:-1]


def test_the_chart_data_takes_the_same_few_queries_however_many_doctors_and_days(
        alice, carol, dave, statements):
    def queries():
        statements.clear()
        stats.compute_charts(now=MORNING)
        return len(statements)

    visit(alice, carol, at(LAST), "completed")
    few = queries()
    for n in range(30):
        DailyStat.create(day=FIRST + timedelta(days=n), booked=n)
        visit(alice, dave if n % 2 else carol, at(FIRST + timedelta(days=n), 12), "no_show")
    assert queries() == few == 2


# -- the dashboard ------------------------------------------------------------------------------


@pytest.fixture
def morning():
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin(morning, new_client, erin):
    browser = new_client()
    login(browser, erin)
    return browser


def chart(page, chart_id):
    match = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', page, re.S)
    assert match, f"no chart {chart_id} on the page"
    return parse(match.group(0))


def table(page, table_id):
    match = re.search(rf'<table [^>]*id="{table_id}".*?</table>', page, re.S)
    assert match, f"no table {table_id} on the page"
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)
            for row in re.findall(r"<tr>(.*?)</tr>", match.group(0), re.S)]


def test_the_dashboard_shows_the_three_charts_with_their_numbers(admin, alice, bob, carol, dave):
    DailyStat.create(day=LAST, booked=2, completed=5, no_show=1, emails_sent=7, emails_failed=2,
                     sms_sent=6, sms_failed=1)
    DailyStat.create(day=LAST - timedelta(days=1), cancelled=3, emails_sent=4)
    visit(alice, carol, at(LAST), "completed")
    visit(bob, carol, at(LAST, 11), "no_show")
    visit(alice, dave, at(LAST - timedelta(days=2)), "completed")

    response = admin.get("/admin")
    assert response.status == 200
    page = response.text
    assert "style=" not in page and "<script>" not in page  # the CSP allows neither

    appointments = chart(page, "chart-appointments")
    assert appointments.find(SVG + "title").text == "Appointments per day, by status"
    drawn = {(r.get("data-series"), r.get("data-value")) for r in bars(appointments)}
    assert drawn == {("booked", "2"), ("completed", "5"), ("no_show", "1"), ("cancelled", "3")}
    assert {"booked", "no show", "Appointments"} <= set(texts(appointments))

    emails = chart(page, "chart-emails")
    assert {(r.get("data-series"), r.get("data-value")) for r in bars(emails)} == {
        ("emails_sent", "7"), ("emails_failed", "2"), ("emails_sent", "4"), ("sms_sent", "6"),
        ("sms_failed", "1")}
    assert {"sent", "failed", "SMS sent", "SMS failed", "Emails and SMS"} <= set(texts(emails))

    no_shows = chart(page, "chart-no-shows")
    assert {"Dr Carol Clark", "50% (1 of 2)", "Dr Dave Davis", "0% (0 of 1)"} <= set(
        texts(no_shows))

    rows = table(page, "table-appointments")
    assert rows[0] == ["Day", "booked", "confirmed", "completed", "cancelled", "no show"]
    assert rows[-1] == ["Wed 12 Mar 2031", "2", "0", "5", "0", "1"]
    assert rows[1] == ["Tue 11 Feb 2031", "not recorded"]
    assert table(page, "table-emails")[-1] == ["Wed 12 Mar 2031", "7", "2", "6", "1"]
    assert table(page, "table-no-shows")[1:] == [["Dr Carol Clark", "1", "2", "50%"],
                                                 ["Dr Dave Davis", "0", "1", "0%"]]
    assert "<details>" in page and "From Tue 11 Feb 2031 to Wed 12 Mar 2031" in page


def test_a_new_clinic_sees_no_data_yet_instead_of_charts(admin):
    page = admin.get("/admin").text
    for chart_id in ("chart-appointments", "chart-no-shows", "chart-emails"):
        assert "No data yet." in texts(chart(page, chart_id))
        assert not bars(chart(page, chart_id))


def test_the_charts_are_cached_with_the_figures_and_refresh_recomputes_them(admin, morning):
    assert "No data yet." in texts(chart(admin.get("/admin").text, "chart-emails"))
    DailyStat.create(day=LAST, emails_sent=3)
    morning.shift(timedelta(minutes=1))
    page = admin.get("/admin").text
    assert "No data yet." in texts(chart(page, "chart-emails"))  # the kept data
    assert "From the cache:" in page and "computed at 08:00:00" in page

    assert admin.post("/admin/refresh-stats").status == 303
    page = admin.get("/admin").text
    assert [r.get("data-value") for r in bars(chart(page, "chart-emails"))] == ["3"]
    assert "<strong>Fresh:</strong>" in page and "computed just now, at 08:01:00" in page


def test_the_page_says_the_figures_are_cached_when_only_the_charts_are_fresh(admin, morning):
    stats.dashboard()  # the figures kept (as the API does), not the charts
    morning.shift(timedelta(minutes=2))
    page = admin.get("/admin").text
    assert "From the cache:" in page and "computed at 08:00:00" in page
