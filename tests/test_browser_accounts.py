"""The reset and two-factor pages in a real headless Chromium, phone-sized, with no JavaScript
needed: a patient resets a forgotten password from the emailed link; a doctor sets up
two-factor sign-in from the QR code's key and then signs in with a code."""

import re
from datetime import datetime

import pyotp
import pytest
import time_machine

from clinic import settings
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ

MORNING = datetime(2031, 3, 3, 8, 0, tzinfo=TZ)


@pytest.fixture
def clock_travel():
    with time_machine.travel(MORNING, tick=True) as traveller:
        yield traveller


def _fill(driver, values):
    from selenium.webdriver.common.by import By

    for name, value in values.items():
        element = driver.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()


def _wait_for(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(condition)


def test_a_patient_resets_the_password_from_the_emailed_link(
        browser,  # noqa: F811
        clock_travel, server, smtp_settings, smtp, alice, delivered):
    from selenium.webdriver.common.by import By

    settings.use(settings.get().replace(base_url=server))  # the email's links lead here
    browser.get(f"{server}/login")
    browser.find_element(By.LINK_TEXT, "Forgot your password?").click()
    _fill(browser, {"email": alice.email})
    _wait_for(browser, lambda d: d.find_elements(By.ID, "reset-sent"))
    (received,) = delivered()
    text = received.message.get_body(("plain",)).get_content()
    link = re.search(r"http://\S+/reset/\S+", text).group(0)
    assert link.startswith(server)
    browser.get(link)
    _fill(browser, {"password": "short", "password_again": "short"})
    _wait_for(browser, lambda d: "Use at least 8 characters." in d.page_source)
    _fill(browser, {"password": "a brand new password", "password_again": "a brand new password"})
    _wait_for(browser, lambda d: d.current_url.endswith("/login"))
    assert "Your password is changed" in browser.page_source
    screenshot(browser, "password-reset-done")
    browser.get(link)  # used: the page says so and offers a new one
    assert "expired or was used already" in browser.page_source
    browser.get(f"{server}/login")
    _fill(browser, {"email": alice.email, "password": "a brand new password"})
    _wait_for(browser, lambda d: d.current_url.endswith("/patient"))


def test_a_doctor_sets_up_two_factor_sign_in_and_signs_in_with_a_code(
        browser,  # noqa: F811
        clock_travel, server, carol):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/login")
    _fill(browser, {"email": carol.email, "password": PASSWORD})
    _wait_for(browser, lambda d: d.current_url.endswith("/doctor"))
    browser.get(f"{server}/account/2fa")
    assert "Off." in browser.find_element(By.ID, "totp-status").text
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait_for(browser, lambda d: d.find_elements(By.ID, "totp-secret"))
    qr = browser.find_element(By.CSS_SELECTOR, "#totp-qr svg")
    assert qr.is_displayed() and qr.size["width"] > 100
    screenshot(browser, "two-factor-setup")
    totp = pyotp.TOTP(browser.find_element(By.ID, "totp-secret").text)
    _fill(browser, {"code": "000000" if totp.now() != "000000" else "111111"})
    _wait_for(browser, lambda d: "The code is not right" in d.page_source)
    _fill(browser, {"code": totp.now()})
    _wait_for(browser, lambda d: d.find_elements(By.ID, "recovery-codes"))
    codes = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
    assert len(codes) == 10
    browser.find_element(By.CSS_SELECTOR, "details.menu > summary").click()  # a phone's menu
    browser.find_element(By.CSS_SELECTOR, "details.menu form[action='/logout'] button").click()
    _wait_for(browser, lambda d: d.current_url.endswith("/login"))

    clock_travel.shift(30)  # the enrolment's code is spent; the next step's is new
    _fill(browser, {"email": carol.email, "password": PASSWORD})
    _wait_for(browser, lambda d: d.find_elements(By.NAME, "code"))
    assert browser.current_url.endswith("/login")  # the code step, not yet signed in
    screenshot(browser, "two-factor-code")
    _fill(browser, {"code": totp.now()})
    _wait_for(browser, lambda d: d.current_url.endswith("/doctor"))


def test_a_required_role_sets_it_up_before_reaching_any_page(
        browser,  # noqa: F811
        clock_travel, server, carol):
    from selenium.webdriver.common.by import By

    settings.use(settings.get().replace(require_2fa=("doctor",)))
    browser.get(f"{server}/login")
    _fill(browser, {"email": carol.email, "password": PASSWORD})
    _wait_for(browser, lambda d: d.current_url.endswith("/account/2fa"))
    assert "Your account must use it." in browser.page_source
    browser.get(f"{server}/doctor")
    assert "/login" in browser.current_url  # no patient data before the enrolment
    browser.get(f"{server}/account/2fa")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait_for(browser, lambda d: d.find_elements(By.ID, "totp-secret"))
    _fill(browser, {"code": pyotp.TOTP(browser.find_element(By.ID, "totp-secret").text).now()})
    _wait_for(browser, lambda d: d.find_elements(By.ID, "recovery-codes"))
    browser.find_element(By.LINK_TEXT, "Go on").click()
    _wait_for(browser, lambda d: d.current_url.endswith("/doctor"))
