"""A patient books a visit in a real headless Chromium, on a phone-sized screen, without any
JavaScript needed."""

from datetime import datetime

import pytest
import time_machine

from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ

# The clinic's clock for the test: 08:00 in Berlin, before the doctors' 09:00-17:00 day begins,
# so every time of the day is still free.
MORNING = datetime(2031, 3, 3, 8, 0, tzinfo=TZ)


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


def test_patient_books_a_visit_in_a_real_browser(browser, server, alice, carol):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _sign_in(browser, server, alice.email)
    assert browser.current_url.endswith("/patient")
    browser.get(f"{server}/patient/doctors")
    browser.find_element(By.CSS_SELECTOR, f"a[href^='/patient/doctors/{carol.id}']").click()
    free = "button[name=start]:not([disabled])"
    first_slot = browser.find_element(By.CSS_SELECTOR, free)
    chosen = first_slot.text
    first_slot.click()
    WebDriverWait(browser, 15).until(lambda d: "/patient/appointments/" in d.current_url)
    assert "Booked" in browser.page_source
    assert chosen.split()[0] == "09:00" and chosen.split()[0] in browser.page_source
    shot = screenshot(browser, "patient-booked")
    assert shot.exists()
