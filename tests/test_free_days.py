"""Finding a free time on the booking page: a strip of the next two weeks' days that have free
times, and a "next free time" jump, worked out from one query of the doctor's appointments
(clinic/slots.py free_by_day); through real HTTP, and in a real Chromium at phone width."""

from datetime import date, datetime, timedelta

import pytest
import time_machine

from clinic import appointments, slots
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ, doctor_of, login, make_doctor

MONDAY = datetime(2031, 3, 3, 8, 0, tzinfo=TZ)  # before the day's first slot
# Frank sees patients on Mondays and Thursdays only, two half-hour slots each.
FRANKS_HOURS = {"mon": [["09:00", "10:00"]], "thu": [["09:00", "10:00"]]}


@pytest.fixture
def monday():
    with time_machine.travel(MONDAY, tick=False) as traveller:
        yield traveller


@pytest.fixture
def frank(app):
    return make_doctor("frank@example.com", "Dr Frank Fox", "Orthopaedics", FRANKS_HOURS)


def at(day, hhmm):
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=TZ)


def fill_monday(bob, frank):
    for hhmm in ("09:00", "09:30"):
        appointments.book(bob.id, frank.id, at(date(2031, 3, 3), hhmm))


def test_free_days_come_from_one_query_of_the_doctors_appointments(monday, statements, bob,
                                                                    frank):
    fill_monday(bob, frank)
    doctor = doctor_of(frank)
    statements.clear()

    by_day = slots.free_by_day(doctor, date(2031, 3, 3), date(2031, 5, 31))

    reads = [sql for sql, _ in statements if 'FROM "appointment"' in sql]
    assert len(reads) == 1, reads  # 90 days, one query
    assert by_day[date(2031, 3, 3)] == []  # Monday: both times taken
    assert by_day[date(2031, 3, 4)] == []  # Tuesday: Frank does not work
    assert by_day[date(2031, 3, 6)] == [at(date(2031, 3, 6), "09:00"),
                                        at(date(2031, 3, 6), "09:30")]
    assert slots.next_free(by_day) == at(date(2031, 3, 6), "09:00")
    # The same answer as the one-day rule the booking checks against.
    for day, starts in by_day.items():
        assert starts == slots.free_slots(doctor, day), day


def test_a_visit_that_overlaps_a_slot_makes_it_taken(monday, bob, carol):
    appointments.book(bob.id, carol.id, at(date(2031, 3, 4), "10:00"))
    by_day = slots.free_by_day(doctor_of(carol), date(2031, 3, 4), date(2031, 3, 4))
    assert at(date(2031, 3, 4), "10:00") not in by_day[date(2031, 3, 4)]
    assert at(date(2031, 3, 4), "10:30") in by_day[date(2031, 3, 4)]
    assert len(by_day[date(2031, 3, 4)]) == 15


def test_the_booking_page_shows_two_weeks_of_free_days_and_the_next_free_time(
        monday, client, alice, bob, frank):
    fill_monday(bob, frank)
    login(client, alice)

    page = client.get(f"/patient/doctors/{frank.id}").text

    assert "No free times on this day. The next one is" in page
    assert (f'href="/patient/doctors/{frank.id}?date=2031-03-06">Next free time: '
            "Thu 06 Mar 2031, 09:00</a>") in page
    strip = page[page.index('<ol class="strip">'):page.index("</ol>")]
    assert strip.count("<li>") == 14
    assert '<span class="full" aria-current="date"><b>Mon</b> 03 Mar' in strip  # full today
    assert "<b>Tue</b> 04 Mar <small>none free</small>" in strip
    assert (f'<a href="/patient/doctors/{frank.id}?date=2031-03-06"><b>Thu</b> 06 Mar '
            "<small>2 free</small></a>") in strip
    assert "<b>Sun</b> 16 Mar" in strip and "17 Mar" not in strip
    assert f'href="/patient/doctors/{frank.id}?date=2031-03-17">Later days' in page
    assert "Earlier days" not in page

    later = client.get(f"/patient/doctors/{frank.id}?date=2031-03-20").text
    strip = later[later.index('<ol class="strip">'):later.index("</ol>")]
    assert "<b>Mon</b> 17 Mar" in strip and "aria-current" in strip
    assert f'href="/patient/doctors/{frank.id}?date=2031-03-03">← Earlier days' in later


def test_rescheduling_counts_the_patients_own_time_as_free(monday, client, alice, frank):
    mine = appointments.book(alice.id, frank.id, at(date(2031, 3, 6), "09:00"))
    login(client, alice)
    page = client.get(f"/patient/appointments/{mine.id}/reschedule?date=2031-03-06").text
    assert "<b>Thu</b> 06 Mar <small>2 free</small>" in page  # its own time is offered back


def test_with_no_free_time_in_the_horizon_it_says_to_call(monday, client, alice, bob, frank):
    from clinic import settings

    settings.use(settings.get().replace(booking_horizon=timedelta(days=2)))
    fill_monday(bob, frank)
    login(client, alice)
    page = client.get(f"/patient/doctors/{frank.id}").text
    assert "No free times up to Wed 05 Mar 2031. Please call the clinic." in page
    assert "Next free time" not in page


@pytest.mark.browser
def test_the_strip_of_free_days_at_phone_width_without_script(browser, server, alice, bob,  # noqa: F811
                                                              frank):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with time_machine.travel(MONDAY, tick=True):  # ticking: the browser waits in real time
        fill_monday(bob, frank)
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.get(f"{server}/login")
        browser.find_element(By.NAME, "email").send_keys(alice.email)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
        WebDriverWait(browser, 15).until(lambda d: "/login" not in d.current_url)
        browser.get(f"{server}/patient/doctors/{frank.id}")

        width = browser.execute_script("return document.documentElement.clientWidth")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        days = browser.find_elements(By.CSS_SELECTOR, "ol.strip > li")
        assert len(days) == 14
        rows = sorted({day.location["y"] for day in days})
        assert len(rows) == 2  # seven days a row, even at 412 px
        for day in days:
            assert day.location["x"] + day.size["width"] <= width
        assert screenshot(browser, "booking-free-days-phone").exists()

        browser.find_element(By.CSS_SELECTOR, ".next-free a").click()
        WebDriverWait(browser, 15).until(lambda d: "date=2031-03-06" in d.current_url)
        times = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "ul.slots button")]
        assert times == ["09:00", "09:30"]
        assert screenshot(browser, "booking-next-free-time-phone").exists()


def test_the_emailed_link_offers_the_same_strip_when_moving_a_visit(monday, client, alice, bob,
                                                                    frank):
    from clinic.mail import notices

    fill_monday(bob, frank)
    mine = appointments.book(alice.id, frank.id, at(date(2031, 3, 6), "09:00"))
    path = notices.link_path(mine)

    page = client.get(f"{path}/reschedule?date=2031-03-03").text  # no sign-in

    assert "No free times on this day. The next one is" in page
    thursday = f'href="{path}/reschedule?date=2031-03-06"'
    assert f"{thursday}>Next free time: Thu 06 Mar 2031, 09:00" in page
    assert f"<a {thursday}><b>Thu</b> 06 Mar <small>2 free</small>" in page
