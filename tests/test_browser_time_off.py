"""The time-off page in a real headless Chromium with JavaScript off, at phone (412 px) and
tablet (820 px) width: an admin enters a doctor's break by filling in the form, sees the visit
inside with the patient's phone, and the page fits the screen. Screenshots go to
tests.browser.SCREENSHOTS."""

import pytest

from clinic import appointments
from clinic.models import TimeOff
from tests.browser import browser, follow, screenshot  # noqa: F401 (fixture)
from tests.conftest import TZ, slot
from tests.test_browser_phone import _sign_in

pytestmark = pytest.mark.browser


def _fill_date(driver, element, value):
    """Type a YYYY-MM-DD date into an <input type=date> as a person would: Chromium's date
    field takes the digits in the locale's order (en-US: month, day, year)."""
    year, month, day = value.split("-")
    element.click()
    element.send_keys(month + day + year)


@pytest.mark.parametrize("width", [412, 820])
def test_an_admin_enters_a_break_and_sees_the_visit_inside(browser, server, erin, carol,  # noqa: F811
                                                           alice, width):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    visit = appointments.book(alice.id, carol.id, slot(2, "12:00"))
    browser.set_window_size(width, 1000)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    _sign_in(browser, server, erin.email)
    browser.get(f"{server}/admin/time-off")
    assert screenshot(browser, f"time-off-empty-{width}").exists()

    day = slot(2).astimezone(TZ).date().isoformat()
    Select(browser.find_element(By.ID, "f-doctor_id")).select_by_visible_text(carol.name)
    _fill_date(browser, browser.find_element(By.ID, "f-start_date"), day)
    browser.find_element(By.ID, "f-start_time").send_keys("1200PM")
    _fill_date(browser, browser.find_element(By.ID, "f-end_date"), day)
    browser.find_element(By.ID, "f-end_time").send_keys("0100PM")
    browser.find_element(By.ID, "f-reason").send_keys("Lunch break")
    follow(browser, browser.find_element(
        By.CSS_SELECTOR, "form[action='/admin/time-off'] button[type=submit]"))
    entry = TimeOff.get()
    assert entry.doctor_id == carol.id and entry.reason == "Lunch break"
    assert entry.start == slot(2, "12:00") and entry.end == slot(2, "13:00")
    section = browser.find_element(By.CSS_SELECTOR, "section.time-off")
    assert "1 visit still booked inside" in section.text
    assert "Alice Adams" in section.text and "+49 30 1234567" in section.text
    link = section.find_element(By.CSS_SELECTOR, f"a[href='/admin/appointments/{visit.id}']")
    assert link.is_displayed()
    # Nothing is wider than the screen: no sideways scrolling at the counter or on a phone.
    page_width = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["width"]
    assert page_width <= width
    assert screenshot(browser, f"time-off-entered-{width}").exists()
