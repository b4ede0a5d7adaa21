"""SMS in a real headless Chromium, phone-sized, with no JavaScript needed: a patient chooses
SMS on their page, the booking's SMS reaches the test gateway, and its short link opens the
visit's page on the phone."""

import pytest

from clinic import appointments, settings
from clinic.mail.gateway import parse_url
from tests import sms_gateway
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, slot
from tests.test_browser_accounts import _fill, _wait_for


@pytest.fixture
def gateway():
    server = sms_gateway.Gateway()
    server.start()
    yield server
    server.stop()


def test_a_patient_chooses_sms_and_opens_the_link_it_brings(
        browser,  # noqa: F811
        server, smtp_settings, gateway, alice, carol, drain):
    from selenium.webdriver.common.by import By

    settings.use(settings.get().replace(base_url=server, sms_url=parse_url(gateway.url)))
    browser.get(f"{server}/login")
    _fill(browser, {"email": alice.email, "password": PASSWORD})
    _wait_for(browser, lambda d: "/login" not in d.current_url)
    browser.get(f"{server}/patient/preferences")
    browser.find_element(By.CSS_SELECTOR, "input[name=channel][value=sms]").click()
    browser.find_element(By.CSS_SELECTOR, "form[action='/patient/preferences/channel'] "
                                          "button[type=submit]").click()
    _wait_for(browser, lambda d: "how we reach you is saved" in d.page_source)
    assert browser.find_element(By.CSS_SELECTOR, "input[name=channel][value=sms]").is_selected()

    appointments.book(alice.id, carol.id, slot(2, "10:00"))
    drain()
    (request,) = gateway.requests
    link = request.form["Body"].rsplit(" ", 1)[1]
    assert link.startswith(f"{server}/s/")
    browser.get(link)
    _wait_for(browser, lambda d: "/visit/" in d.current_url)
    assert "Dr Carol Clark" in browser.page_source
    screenshot(browser, "sms-link-visit")
