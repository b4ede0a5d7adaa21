"""The waitlist in a real headless Chromium at phone width, with JavaScript off: a patient finds
a day full, joins its waitlist from the booking page, and books the time held for her through
the emailed link's page, without signing in there. Screenshots go to tests.browser.SCREENSHOTS."""

from datetime import datetime

import pytest
import time_machine

from clinic import appointments, waitlist
from clinic.models import Appointment, WaitlistOffer
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ, make_doctor

pytestmark = pytest.mark.browser

MORNING = datetime(2031, 3, 3, 8, 0, tzinfo=TZ)  # a Monday, 08:00 in the clinic
ONE_SLOT = {day: [["09:00", "09:30"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                   "sun")}


@pytest.fixture(autouse=True)
def clinic_morning():
    with time_machine.travel(MORNING, tick=True):
        yield


def _sign_in(driver, server, email):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{server}/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(driver, 15).until(lambda d: "/login" not in d.current_url)


@pytest.mark.parametrize("width", [412, 820])
def test_a_patient_joins_from_a_full_day_and_books_through_the_link(
        browser, server, alice, bob, width):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, 900)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    frank = make_doctor("frank@example.com", "Dr Frank Fox", "Neurology", ONE_SLOT)
    start = datetime(2031, 3, 5, 9, 0, tzinfo=TZ)
    visit = appointments.book(alice.id, frank.id, start)

    _sign_in(browser, server, bob.email)
    browser.get(f"{server}/patient/doctors/{frank.id}?date=2031-03-05")
    join = browser.find_element(By.XPATH, "//button[text()='Join the waitlist for this day']")
    assert join.is_displayed()
    assert join.size["width"] <= width
    screenshot(browser, f"waitlist-full-day-{width}")
    join.click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/patient/waitlist"))
    assert "Dr Frank Fox" in browser.page_source
    screenshot(browser, f"waitlist-mine-{width}")

    appointments.cancel(visit, alice)
    offer = WaitlistOffer.get()
    browser.delete_all_cookies()  # the emailed link needs no sign-in
    browser.get(server + waitlist.link_path(offer, bob.id))
    assert "We hold this time for you" in browser.page_source
    screenshot(browser, f"waitlist-offer-{width}")
    browser.find_element(By.XPATH, "//button[text()='Book this time']").click()
    WebDriverWait(browser, 15).until(lambda d: "/visit/" in d.current_url)
    booked = Appointment.get(Appointment.status == "booked")
    assert (booked.patient_id, booked.start) == (bob.id, start)
    assert WaitlistOffer.get().status == "claimed"
