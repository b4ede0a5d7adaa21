"""The Clinic page and the doctor's weekly hours in a real headless Chromium at phone width,
with JavaScript off: a new clinic's admin lands on the Clinic page, is told what is wrong beside
each field, and saves. Screenshots go to tests.browser.SCREENSHOTS."""

import pytest

from clinic import details, settings
from clinic.models import ClinicSettings
from tests.browser import browser, follow, screenshot  # noqa: F401 (fixture)
from tests.test_browser_phone import _sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def clinic_settings(tmp_path, backend_urls):
    """A new clinic: no name, phone or time zone in the environment."""
    return settings.load(environ={}, **backend_urls, data_dir=str(tmp_path / "data"),
                         secret_key="test-secret-key-0123456789abcdef", host="127.0.0.1",
                         port=0)


def _page_width(driver):
    """The page's width, read without scripts (they are off): the root element's."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "html").size["width"]


def _fill(driver, name, value):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.NAME, name)
    box.clear()
    box.send_keys(value)


def test_a_new_clinics_admin_sets_it_up_on_the_clinic_page(browser, server, erin):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    _sign_in(browser, server, erin.email)
    assert browser.current_url.endswith("/admin/clinic")  # the time zone is not confirmed
    assert browser.find_element(By.ID, "confirm-timezone").is_displayed()
    assert screenshot(browser, "clinic-first-sign-in").exists()

    _fill(browser, "name", "Praxis am Park")
    _fill(browser, "phone", "call me maybe")
    _fill(browser, "timezone", "Europe/Berlinn")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#clinic-form button[type=submit]"))
    phone_error = browser.find_element(By.ID, "e-phone")
    zone_error = browser.find_element(By.ID, "e-timezone")
    assert "not a phone number" in phone_error.text and "Not a time zone" in zone_error.text
    # Each message right under its own field, within the screen's width.
    for name, error in (("phone", phone_error), ("timezone", zone_error)):
        box = browser.find_element(By.NAME, name)
        assert 0 < error.location["y"] - box.location["y"] < 120
        assert error.location["x"] + error.size["width"] <= _page_width(browser)
    assert not ClinicSettings.select().exists()
    assert screenshot(browser, "clinic-errors").exists()

    _fill(browser, "phone", "+49 30 1234567")
    _fill(browser, "timezone", "Europe/Berlin")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#clinic-form button[type=submit]"))
    assert "saved and in force" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert not browser.find_elements(By.ID, "confirm-timezone")
    assert browser.find_element(By.CSS_SELECTOR, "a.brand").text == "Praxis am Park"
    assert str(details.current().timezone) == "Europe/Berlin"
    assert screenshot(browser, "clinic-saved").exists()


def test_the_weekly_hours_fit_a_phone(browser, server, erin):  # noqa: F811
    from selenium.webdriver.common.by import By

    details.update({"timezone": "Europe/Berlin"}, erin)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    _sign_in(browser, server, erin.email)
    browser.get(f"{server}/admin/doctors/new")
    days = browser.find_elements(By.CSS_SELECTOR, "fieldset.week .day")
    assert len(days) == 7
    width = _page_width(browser)
    for day in days:
        inputs = day.find_elements(By.CSS_SELECTOR, "input[type=time]")
        assert len(inputs) == 4
        for box in inputs:
            assert box.location["x"] + box.size["width"] <= width
    monday = browser.find_element(By.NAME, "hours-mon-1-from")
    assert monday.get_attribute("value") == "09:00"
    browser.find_element(By.ID, "working-hours").location_once_scrolled_into_view  # noqa: B018
    assert screenshot(browser, "doctor-weekly-hours").exists()
