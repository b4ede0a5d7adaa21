"""The admin's settings check page: whether email works (against a real SMTP server, up and
down), a test email that arrives, the clinic's zone and time, each schedule in plain words with
its next run, and the settings an admin may want to see, never a secret."""

import re
from datetime import datetime

import pytest
import time_machine

from clinic import settings
from clinic.models import Message
from tests.conftest import TZ, login
from tests.test_mail import free_port

NOW = datetime(2031, 3, 12, 9, 30, tzinfo=TZ)  # a Wednesday


@pytest.fixture
def frozen():
    """Frozen at NOW. Ask for it before ``admin``: a sign-in made in real time has long expired
    by 2031."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin(new_client, erin):
    browser = new_client()
    login(browser, erin)
    return browser


def smtp_section(page):
    return re.search(r'<section class="card smtp-check.*?</section>', page, re.S).group(0)


def test_a_reachable_smtp_server_is_reported_working(smtp_settings, smtp, admin):
    section = smtp_section(admin.get("/admin/settings").text)
    assert "is-ok" in section
    assert f"<strong>Email works:</strong> {smtp.host}:{smtp.port} reachable (none)" in section
    assert "outbox-mode" not in section


def test_an_unreachable_smtp_server_is_reported_down(app, admin):
    port = free_port()  # nothing listens there
    settings.use(settings.get().replace(smtp_host="127.0.0.1", smtp_port=port,
                                        smtp_security="none"))
    section = smtp_section(admin.get("/admin/settings").text)
    assert "is-down" in section
    assert "<strong>Email is not working:</strong> cannot use the SMTP server " \
           f"127.0.0.1:{port}" in section


def test_an_smtp_server_that_refuses_the_sign_in_is_reported_down(smtp_settings, smtp, admin):
    # The test server offers no AUTH: a sign-in cannot succeed.
    settings.use(settings.get().replace(smtp_user="clinic", smtp_password="pw"))
    section = smtp_section(admin.get("/admin/settings").text)
    assert "is-down" in section
    assert "Email is not working" in section


def test_without_smtp_the_page_says_emails_go_to_the_folder(app, admin, clinic_settings):
    section = smtp_section(admin.get("/admin/settings").text)
    assert "is-ok" in section and "outbox-mode" in section
    assert f"each email is written to {clinic_settings.data_path / 'outbox'}" in section


def test_the_test_email_arrives_at_the_smtp_server(smtp_settings, smtp, admin, erin, drain):
    page = admin.get("/admin/settings").text
    assert 'action="/admin/settings/test-email"' in page
    response = admin.post("/admin/settings/test-email")
    assert response.status == 303 and response.location.endswith("/admin/settings")
    assert "A test email is on its way to erin@example.com" in admin.get("/admin/settings").text
    message = Message.get(Message.kind == "test")
    assert (message.recipient, message.user_id) == ("erin@example.com", erin.id)
    drain()
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received.rcpt_tos == ["erin@example.com"]
    assert received.message["Subject"] == "Test email from Test Clinic"
    assert "Hello Erin Admin," in received.message.get_body(("plain",)).get_content()
    assert Message.get_by_id(message.id).status == "sent"


def test_each_test_email_is_a_new_message(frozen, smtp_settings, smtp, admin):
    admin.get("/admin/settings")
    admin.post("/admin/settings/test-email")
    frozen.shift(1)
    admin.post("/admin/settings/test-email")
    assert Message.select().where(Message.kind == "test").count() == 2


def test_the_test_email_needs_the_csrf_token(app, admin):
    assert admin.post("/admin/settings/test-email", csrf=False).status == 403
    assert Message.select().count() == 0


def test_the_page_shows_the_zone_the_time_and_each_schedule(frozen, admin):
    page = admin.get("/admin/settings").text
    assert "<dt>Time zone</dt><dd>Europe/Berlin</dd>" in page
    assert "<dt>Now in the clinic</dt><dd>Wed 12 Mar 2031, 09:30 CET</dd>" in page
    row = re.search(r'<tr id="schedule-daily-reminders">.*?</tr>', page, re.S).group(0)
    assert "every day at 08:00 Europe/Berlin" in row
    assert "CLINIC_DAILY_REMINDER_AT" in row
    assert "Thu 13 Mar, 08:00" in row  # its next run
    row = re.search(r'<tr id="schedule-advance-reminders">.*?</tr>', page, re.S).group(0)
    assert "every 5 minutes" in row and "Wed 12 Mar, 09:35" in row
    row = re.search(r'<tr id="schedule-cleanup">.*?</tr>', page, re.S).group(0)
    assert "every Monday at 02:00 Europe/Berlin" in row and "Mon 17 Mar, 02:00" in row


def test_the_page_shows_the_clinic_settings_in_words(app, admin):
    page = admin.get("/admin/settings").text

    def value(env):
        row = re.search(rf'<tr id="setting-{env}">.*?</tr>', page, re.S).group(0)
        return re.search(r"<td>([^<]*)</td>\s*</tr>", row).group(1)

    assert value("CLINIC_NAME") == "Test Clinic"
    assert value("CLINIC_ADDRESS") == "1 Test Street, Berlin"
    assert value("CLINIC_BASE_URL") == "http://127.0.0.1:0"
    assert value("CLINIC_TIMEZONE") == "Europe/Berlin"
    assert value("CLINIC_CANCEL_CUTOFF") == "2 hours"
    assert value("CLINIC_REMINDER_OFFSETS") == "1 day, 2 hours"
    assert value("CLINIC_SMTP_HOST") == "(not set)"
    assert value("CLINIC_MAIL_FROM") == "Test Clinic &lt;noreply@localhost&gt;"


def test_the_page_never_shows_a_secret(smtp_settings, admin):
    s = settings.use(settings.get().replace(
        smtp_user="clinic", smtp_password="hunter2-password",
        database_url="postgresql://clinic:db-password@localhost/clinic",
        queue_url="redis://:queue-password@localhost:6379/0"))
    page = admin.get("/admin/settings").text
    for secret in (s.secret_key, "hunter2-password", "db-password", "queue-password"):
        assert secret not in page
    assert "CLINIC_SMTP_PASSWORD" not in page and "CLINIC_SECRET_KEY" not in page
    assert "CLINIC_SMTP_USER" in page
