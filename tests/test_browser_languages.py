"""A German patient books a visit in a real headless Chromium: every page is German, says
<html lang="de">, and writes the day as German does."""

from datetime import datetime

import pytest
import time_machine

from clinic import settings
from clinic.models import User
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ

MORNING = datetime(2031, 3, 3, 8, 0, tzinfo=TZ)  # a Monday, before the doctors' day begins


@pytest.fixture(autouse=True)
def clinic_morning():
    with time_machine.travel(MORNING, tick=True):
        yield


@pytest.fixture
def german_alice(app, alice):
    settings.use(settings.get().replace(languages=("en", "de", "fr")))
    User.update(language="de").where(User.id == alice.id).execute()
    return alice


def test_a_german_patient_books_in_german(browser, server, german_alice, carol):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/login")
    browser.find_element(By.NAME, "email").send_keys(german_alice.email)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda d: "/login" not in d.current_url)
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("lang") == "de"
    assert "Meine Termine" in browser.page_source

    browser.get(f"{server}/patient/doctors")
    assert "Einen Arzt finden" in browser.page_source
    browser.find_element(By.CSS_SELECTOR, f"a[href^='/patient/doctors/{carol.id}']").click()
    assert "Freie Zeiten am Mo., 3. März 2031." in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "button[name=start]:not([disabled])").click()
    WebDriverWait(browser, 15).until(lambda d: "/patient/appointments/" in d.current_url)
    page = browser.page_source
    assert "Gebucht: Mo., 3. März 2031, 09:00. Bis dann!" in page
    assert "<dt>Arzt</dt>" in page and ">gebucht</span>" in page
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "de"
    assert "Booked" not in page and "Reschedule" not in page
    assert screenshot(browser, "patient-booked-de").exists()
