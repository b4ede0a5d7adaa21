"""The header's menu and the announcement form at phone width (412 px) in a real headless
Chromium: the menu is one "Menu" line that opens without JavaScript, and each audience radio
button sits beside its words. Screenshots go to tests.browser.SCREENSHOTS."""

import pytest

from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def _sign_in(driver, server, email):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{server}/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(driver, 15).until(lambda d: "/login" not in d.current_url)


def test_the_admin_menu_is_one_line_on_a_phone_and_opens_without_script(browser, server,  # noqa: F811
                                                                         erin):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    _sign_in(browser, server, erin.email)
    header = browser.find_element(By.CSS_SELECTOR, "header.top")
    assert header.size["height"] < 60  # the brand and "Menu", not three lines of links
    assert not browser.find_element(By.CSS_SELECTOR, "nav.wide").is_displayed()
    jobs = browser.find_element(By.CSS_SELECTOR, "details.menu a[href='/admin/jobs']")
    assert not jobs.is_displayed()
    assert screenshot(browser, "phone-menu-closed").exists()

    browser.find_element(By.CSS_SELECTOR, "details.menu > summary").click()
    assert jobs.is_displayed()
    assert header.size["height"] < 60  # the list opens over the page
    assert screenshot(browser, "phone-menu-open").exists()
    jobs.click()
    assert browser.current_url.endswith("/admin/jobs")


def test_the_wide_menu_is_one_row_of_links(browser, server, alice):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.set_window_size(1200, 800)
    _sign_in(browser, server, alice.email)
    assert browser.find_element(By.CSS_SELECTOR, "nav.wide a[href='/patient/doctors']"
                                ).is_displayed()
    assert not browser.find_element(By.CSS_SELECTOR, "details.menu").is_displayed()


@pytest.mark.parametrize("width", [412, 1200])
def test_each_audience_button_sits_beside_its_words(browser, server, erin, width):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.set_window_size(width, 900)
    _sign_in(browser, server, erin.email)
    browser.get(f"{server}/admin/announcements/new")
    labels = browser.find_elements(By.CSS_SELECTOR, "fieldset label.choice")
    assert len(labels) >= 3
    for label in labels:
        button = label.find_element(By.CSS_SELECTOR, "input[type=radio]")
        assert button.size["width"] < 30  # not stretched across the form
        # One line: the button and its first words share a line, left-aligned in the form.
        assert abs(button.location["y"] - label.location["y"]) < label.size["height"]
        assert button.location["x"] - label.location["x"] < 5
        assert label.size["height"] < 60
    fieldset = browser.find_element(By.CSS_SELECTOR, "fieldset")
    assert fieldset.size["width"] <= browser.execute_script(
        "return document.documentElement.clientWidth")
    assert screenshot(browser, f"announcement-audience-{width}").exists()
