"""The front desk in a real headless Chromium with JavaScript off, at phone (412 px) and tablet
(820 px) width: the day sheet, booking a walk-in patient registered in the same step, finding a
patient to book for, checking in, and the printed sheet. Screenshots go to
tests.browser.SCREENSHOTS."""


import pytest
import time_machine

from clinic import appointments
from clinic.models import Appointment, User
from tests.browser import browser, follow, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD
from tests.test_desk_api import MORNING

pytestmark = pytest.mark.browser

WIDTHS = {"phone": 412, "tablet": 820}


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
    # The address changes before the day sheet has loaded: open it again, which waits for it.
    driver.get(f"{server}/desk")


def _flash(driver):
    """The flash line of the page a click led to, once that page has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".flash"))[0].text


def _column(driver, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"section.sheet-column[aria-label='{name}']")


@pytest.mark.parametrize("device", WIDTHS)
def test_the_desk_books_a_walk_in_and_checks_in_a_patient(browser, server, dana, alice,  # noqa: F811
                                                         carol, dave, device):
    from selenium.webdriver.common.by import By

    browser.set_window_size(WIDTHS[device], 1000)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    visit = appointments.book(alice.id, carol.id, MORNING.replace(hour=9, minute=30))
    _sign_in(browser, server, dana.email)
    assert browser.current_url.endswith("/desk")
    columns = browser.find_elements(By.CSS_SELECTOR, "section.sheet-column")
    assert [c.get_attribute("aria-label") for c in columns] == ["Dr Carol Clark", "Dr Dave Davis"]
    if device == "tablet":  # side by side at the counter
        assert columns[0].location["y"] == columns[1].location["y"]
    else:  # stacked on a phone, each the width of the screen
        assert columns[1].location["y"] > columns[0].location["y"]
    free = _column(browser, "Dr Carol Clark").find_elements(By.CSS_SELECTOR, "button.free")
    assert free[0].size["height"] >= 40  # a finger's worth
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTHS[device]
    screenshot(browser, f"desk-sheet-{device}")

    # Check Alice in.
    follow(browser, _column(browser, "Dr Carol Clark").find_element(
        By.XPATH, ".//button[normalize-space()='Check in']"))
    assert "Alice Adams is checked in" in _flash(browser)
    assert Appointment.get_by_id(visit.id).status == "arrived"

    # Book Dr Dave's 10:00 for a walk-in with no email, registered in the same form.
    follow(browser, _column(browser, "Dr Dave Davis").find_element(
        By.XPATH, ".//button[normalize-space()='10:00']"))
    assert "Book 10:00 with Dr Dave Davis" in browser.find_element(By.TAG_NAME, "h1").text
    form = browser.find_element(By.CSS_SELECTOR, "form.new-patient")
    assert "gets no email" in form.text
    form.find_element(By.NAME, "name").send_keys("Walter Walk-in")
    form.find_element(By.NAME, "phone").send_keys("+49 170 1234567")
    screenshot(browser, f"desk-new-patient-{device}")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "no email address" in _flash(browser)
    assert "Walter Walk-in" in _column(browser, "Dr Dave Davis").text
    walter = User.get(User.name == "Walter Walk-in")
    assert Appointment.get(Appointment.patient == walter.id).doctor_id == dave.id
    screenshot(browser, f"desk-sheet-booked-{device}")


@pytest.mark.parametrize("device", WIDTHS)
def test_the_desk_finds_a_patient_and_books_for_them(browser, server, dana, alice, carol,  # noqa: F811
                                                    device):
    from selenium.webdriver.common.by import By

    browser.set_window_size(WIDTHS[device], 1000)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    _sign_in(browser, server, dana.email)
    follow(browser, _column(browser, "Dr Carol Clark").find_element(
        By.XPATH, ".//button[normalize-space()='11:00']"))
    browser.find_element(By.NAME, "q").send_keys("1980-05-17")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.search button[type=submit]"))
    choice = browser.find_element(By.XPATH, "//button[normalize-space()='Book for Alice Adams']")
    screenshot(browser, f"desk-find-patient-{device}")
    follow(browser, choice)
    assert "Booked Alice Adams at 11:00" in _flash(browser)
    column = _column(browser, "Dr Carol Clark")
    assert "Alice Adams" in column.text
    assert "11:00" not in [a.text for a in column.find_elements(By.CSS_SELECTOR, "button.free")]


def test_the_printed_sheet_is_each_doctors_list(browser, server, dana, alice, carol):  # noqa: F811
    from selenium.webdriver.common.by import By

    appointments.book(alice.id, carol.id, MORNING.replace(hour=9, minute=30))
    _sign_in(browser, server, dana.email)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert not browser.find_element(By.CSS_SELECTOR, "header.top").is_displayed()
    column = _column(browser, "Dr Carol Clark")
    assert "Alice Adams" in column.text
    assert not column.find_element(By.CSS_SELECTOR, "button.free").is_displayed()
    assert not column.find_element(By.XPATH, ".//button[normalize-space()='Cancel']"
                                   ).is_displayed()
    screenshot(browser, "desk-sheet-print")


def test_the_desk_switches_a_patient_to_sms_from_the_sheet(browser, server, dana, alice,  # noqa: F811
                                                           carol):
    from selenium.webdriver.common.by import By

    from clinic import people

    appointments.book(alice.id, carol.id, MORNING.replace(hour=10))
    browser.set_window_size(WIDTHS["phone"], 1000)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    _sign_in(browser, server, dana.email)
    follow(browser, _column(browser, "Dr Carol Clark").find_element(By.LINK_TEXT, "Alice Adams"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Alice Adams"
    form = browser.find_element(By.CSS_SELECTOR, "form.patient-details")
    form.find_element(By.CSS_SELECTOR, "input[name=channel][value=sms]").click()
    screenshot(browser, "desk-patient-details-phone")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "The details of Alice Adams are saved." in _flash(browser)
    assert browser.find_element(
        By.CSS_SELECTOR, "input[name=channel][value=sms]").get_attribute("checked")
    assert people.patient_contact(alice.id).channel == "sms"
