"""The admin's messages pages, driven as the admin would: a failed send shows with its error and
Resend delivers it once; the list filters and pages; a message is shown as it was sent, with
nothing in it able to run; the outbox-folder mode says so; and only admins get in."""

import re
from datetime import datetime, timedelta

import pytest
import time_machine

from clinic import accounts, appointments, db
from clinic.mail import compose, lookup, outbox, sweeper
from clinic.models import Message
from clinic.web.inputs import PAGE_SIZE
from clinic.web.pages.messages import BODY_POLICY
from huey_config import huey
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ, login, make_patient

MORNING = datetime(2031, 3, 12, 8, 0, tzinfo=TZ)
VISIT = datetime(2031, 3, 14, 10, 0, tzinfo=TZ)


@pytest.fixture
def morning():
    """Frozen at MORNING. Ask for it before ``admin``: a sign-in made in real time has long
    expired by 2031."""
    with time_machine.travel(MORNING, tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin(new_client, erin):
    signed_in = new_client()
    login(signed_in, erin)
    return signed_in


def book(patient, doctor, start=VISIT):
    return appointments.book(patient.id, doctor.id, start, "Private reason")


def listed(page):
    """The ids of the messages a list page shows, in order."""
    return [int(i) for i in re.findall(r'<tr id="message-(\d+)"', page)]


# -- a failed send and Resend ---------------------------------------------------------------------


def test_a_failed_send_shows_with_its_error_and_resend_delivers_it_once(
        morning, smtp_settings, smtp, admin, alice, carol, drain):
    smtp.answer("550")
    appt = book(alice, carol)
    drain()
    confirmation = Message.get(Message.kind == "confirmation")
    assert confirmation.status == "failed"

    page = admin.get("/admin/messages").text
    assert listed(page) == [confirmation.id]
    row = page[page.index(f'id="message-{confirmation.id}"'):]
    assert "status-failed" in row[:2000]
    assert "recipient refused: 550 5.1.1 No such user here" in row[:2000]
    assert "alice@example.com" in row[:2000]

    detail = admin.get(f"/admin/messages/{confirmation.id}")
    assert detail.status == 200
    assert "recipient refused: 550 5.1.1 No such user here" in detail.text
    assert f'action="/admin/messages/{confirmation.id}/resend"' in detail.text
    assert f'href="/admin/appointments/{appt.id}"' in detail.text

    smtp.answer("accept")
    response = admin.post(f"/admin/messages/{confirmation.id}/resend")
    assert response.status == 303
    assert response.location.endswith(f"/admin/messages/{confirmation.id}")
    after = admin.get(f"/admin/messages/{confirmation.id}").text
    assert "is queued again" in after
    drain()
    sweeper.sweep()
    sweeper.retry_failed()
    drain()
    assert smtp.message_ids() == [confirmation.message_id]  # exactly once
    assert smtp.messages[0].rcpt_tos == ["alice@example.com"]
    page = admin.get(f"/admin/messages/{confirmation.id}").text
    assert "status-sent" in page
    assert f'action="/admin/messages/{confirmation.id}/resend"' not in page


def test_only_a_failed_message_can_be_resent(morning, smtp_settings, smtp, admin, alice, carol,
                                             drain):
    book(alice, carol)
    drain()
    sent = Message.get(Message.kind == "confirmation")
    assert sent.status == "sent"
    admin.get(f"/admin/messages/{sent.id}")
    response = admin.post(f"/admin/messages/{sent.id}/resend")
    assert response.status == 409
    assert "Only a failed message can be sent again; this one is sent." in response.text
    assert huey.pending() == []
    assert len(smtp.messages) == 1


def test_resend_needs_the_csrf_token(morning, smtp_settings, smtp, admin, alice, carol, drain):
    smtp.answer("550")
    book(alice, carol)
    drain()
    failed = Message.get(Message.kind == "confirmation")
    assert admin.post(f"/admin/messages/{failed.id}/resend", csrf=False).status == 403
    assert Message.get_by_id(failed.id).status == "failed"


def test_an_unknown_message_is_not_found(admin):
    assert admin.get("/admin/messages/999").status == 404
    assert admin.get("/admin/messages/999/html").status == 404


# -- the list -------------------------------------------------------------------------------------


@pytest.fixture
def outbox_rows(alice, bob, carol):
    """Over three days: three test emails to Bob; Alice's confirmation and one to a bad address;
    then PAGE_SIZE more test emails to a list."""
    rows = {}
    with time_machine.travel(datetime(2031, 3, 10, 9, 0, tzinfo=TZ), tick=False):
        rows["bob"] = [outbox.enqueue("test", f"bob:{i}", bob.email, user=bob).id
                       for i in range(3)]
    with time_machine.travel(datetime(2031, 3, 11, 9, 0, tzinfo=TZ), tick=False):
        book(alice, carol)
        rows["confirmation"] = Message.get(Message.kind == "confirmation").id
        rows["bad"] = outbox.enqueue("test", "bad", "not an address").id
    with time_machine.travel(datetime(2031, 3, 12, 7, 0, tzinfo=TZ), tick=False):
        rows["list"] = [outbox.enqueue("test", f"list:{i}", "list@example.com").id
                        for i in range(PAGE_SIZE)]
    return rows


def test_the_list_pages_newest_first(morning, admin, outbox_rows):
    everything = sorted(outbox_rows["bob"] + outbox_rows["list"]
                        + [outbox_rows["confirmation"], outbox_rows["bad"]], reverse=True)
    first = admin.get("/admin/messages").text
    assert listed(first) == everything[:PAGE_SIZE]
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = admin.get("/admin/messages?page=2").text
    assert listed(second) == everything[PAGE_SIZE:]
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_the_list_filters(morning, admin, outbox_rows):
    def ids(query):
        response = admin.get("/admin/messages?" + query)
        assert response.status == 200, response
        return listed(response.text)

    assert ids("status=failed") == [outbox_rows["bad"]]
    assert ids("kind=confirmation") == [outbox_rows["confirmation"]]
    assert ids("q=BOB@example") == sorted(outbox_rows["bob"], reverse=True)
    assert ids("q=alice+adams") == [outbox_rows["confirmation"]]  # by the patient's name
    assert ids("from=2031-03-11&to=2031-03-11") == [outbox_rows["bad"],
                                                    outbox_rows["confirmation"]]
    assert ids("to=2031-03-10") == sorted(outbox_rows["bob"], reverse=True)
    newest_tests = sorted(outbox_rows["list"], reverse=True) + [outbox_rows["bad"]]
    assert ids("kind=test&from=2031-03-11") == newest_tests[:PAGE_SIZE]
    assert ids("kind=test&from=2031-03-11&page=2") == newest_tests[PAGE_SIZE:]
    assert ids("status=pending&q=bob") == sorted(outbox_rows["bob"], reverse=True)
    assert ids("status=sent") == []
    page = admin.get("/admin/messages?status=failed").text
    assert '<option value="failed" selected>' in page
    assert "invalid address" in page


@pytest.mark.parametrize("query, field, message", [
    ("status=lost", "status", "Choose a status from the list."),
    ("from=yesterday", "from", "Enter a date as YYYY-MM-DD."),
    ("from=2031-03-12&to=2031-03-11", "to", "The last day comes before the first."),
])
def test_bad_filters_are_explained(admin, query, field, message):
    response = admin.get("/admin/messages?" + query)
    assert response.status == 400
    assert f'<p class="error" id="e-{field}">{message}</p>' in response.text


# -- one message ----------------------------------------------------------------------------------


def test_a_message_shows_its_headers_bodies_attachments_and_appointment(
        morning, smtp_settings, smtp, admin, alice, carol, drain):
    appt = book(alice, carol)
    drain()
    confirmation = Message.get(Message.kind == "confirmation")
    page = admin.get(f"/admin/messages/{confirmation.id}").text
    assert f"<h1>{confirmation.subject} " in page
    for name, value in (("From", "Test Clinic &lt;noreply@localhost&gt;"),
                        ("To", "Alice Adams &lt;alice@example.com&gt;"),
                        ("Subject", confirmation.subject),
                        ("Message-ID", confirmation.message_id.replace("<", "&lt;")
                         .replace(">", "&gt;"))):
        assert f'<th scope="row">{name}</th><td>{value}' in page, name
    assert "Your appointment is booked." in page  # the text body
    assert "appointment.ics" in page and "text/calendar" in page
    assert f'<a href="/admin/appointments/{appt.id}">appointment {appt.id}</a>' in page
    assert (f'<iframe class="email-html" sandbox src="/admin/messages/{confirmation.id}/html"'
            in page)
    html = admin.get(f"/admin/messages/{confirmation.id}/html")
    assert html.status == 200
    assert html.text == confirmation.html_body
    assert html.headers["content-security-policy"] == BODY_POLICY
    assert html.headers["x-frame-options"] == "SAMEORIGIN"


def test_the_html_body_is_framed_without_scripts_and_shown_as_escaped_source():
    """The policy of the frame's own response: sandboxed (no script, no same-origin access even
    when opened on its own), nothing fetched, framed only by the clinic."""
    directives = dict(part.strip().partition(" ")[::2] for part in BODY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert "script-src" not in directives
    assert "sandbox" in directives and directives["sandbox"] == ""
    assert directives["frame-ancestors"] == "'self'"


def test_everything_a_user_typed_is_escaped(morning, smtp_settings, smtp, admin, carol, drain):
    mallory = make_patient("mallory@example.com", "<script>alert(1)</script>")
    book(mallory, carol)
    drain()
    confirmation = Message.get(Message.kind == "confirmation")
    assert "<script>alert(1)</script>" in confirmation.text_body
    for path in ("/admin/messages", "/admin/messages?q=%3Cscript%3E",
                 f"/admin/messages/{confirmation.id}"):
        page = admin.get(path).text
        assert "<script>alert(1)" not in page, path
    page = admin.get(f"/admin/messages/{confirmation.id}").text
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;," in page  # the text body
    assert "Hello &amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;," in page  # the source
    html = admin.get(f"/admin/messages/{confirmation.id}/html")
    assert "<script>" not in html.text  # the email's own escaping, in a sandbox besides


@pytest.mark.parametrize("ask, link", [
    (lambda alice: accounts.request_reset(alice.email, "127.0.0.1"), "/reset/"),
    (lambda alice: accounts.update_profile(alice, {"email": "alice.new@example.com"}),
     "/account/email/")])
def test_a_message_holding_a_sign_in_link_is_not_shown_to_admins(smtp_settings, smtp, admin,
                                                                 alice, ask, link, drain):
    ask(alice)
    message = Message.get(Message.kind.in_(compose.SECRET_LINK_KINDS))
    token = re.search(re.escape(link) + r"(\S+)", message.text_body).group(1)
    for when in ("waiting", "sent"):
        page = admin.get(f"/admin/messages/{message.id}").text
        assert "Not shown: holds a sign-in link." in page, when
        assert message.subject in page and message.recipient in page, when
        assert token not in page and link not in page, when
        assert f"/admin/messages/{message.id}/html" not in page, when  # no frame for the body
        html = admin.get(f"/admin/messages/{message.id}/html").text
        assert token not in html and "Not shown: holds a sign-in link." in html, when
        drain()
    assert Message.get_by_id(message.id).status == "sent"


def test_a_message_whose_attachment_is_gone_still_shows(app, admin, alice):
    message = outbox.enqueue("test", "test:1", alice.email, attachments=[
        {"filename": "history.csv", "content_type": "text/csv", "path": "exports/gone.csv"}])
    response = admin.get(f"/admin/messages/{message.id}")
    assert response.status == 200
    assert "history.csv" in response.text
    assert '<th scope="row">To</th><td>alice@example.com</td>' in response.text


def test_a_skipped_message_says_why(morning, admin, alice):
    skipped = outbox.skip("reminder_24h:1:x", "reminder_advance", alice.email,
                          "booked less than 24 h ahead")
    page = admin.get(f"/admin/messages/{skipped.id}").text
    assert "<strong>Not sent:</strong> booked less than 24 h ahead" in page
    assert "/resend" not in page


# -- outbox-folder mode ---------------------------------------------------------------------------


def test_without_smtp_the_page_says_it_is_where_emails_are_read(admin, clinic_settings):
    page = admin.get("/admin/messages").text
    assert "No email is being sent" in page
    assert "This page is how the clinic reads what would have been sent." in page
    assert str(clinic_settings.data_path / "outbox") in page


def test_with_smtp_the_page_does_not_say_so(smtp_settings, admin):
    page = admin.get("/admin/messages").text
    assert "No email is being sent" not in page


# -- who may see the pages ------------------------------------------------------------------------


def test_messages_and_settings_pages_are_for_admins_only(new_client, everyone):
    message = outbox.enqueue("test", "test:1", "alice@example.com")
    Message.update(status="failed").where(Message.id == message.id).execute()
    pages = ["/admin/messages", f"/admin/messages/{message.id}",
             f"/admin/messages/{message.id}/html", "/admin/settings"]
    actions = [f"/admin/messages/{message.id}/resend", "/admin/settings/test-email"]
    huey.flush()
    for name in ("alice", "carol"):
        visitor = new_client()
        login(visitor, everyone[name])
        visitor.get("/")
        for path in pages:
            assert visitor.get(path).status == 403, (name, path)
        for path in actions:
            assert visitor.post(path).status == 403, (name, path)
    anonymous = new_client()
    for path in pages:
        response = anonymous.get(path)
        assert response.status == 303 and "/login?next=" in response.location, path
    assert Message.get_by_id(message.id).status == "failed"
    assert Message.select().count() == 1 and huey.pending() == []
    admin = new_client()
    login(admin, everyone["erin"])
    for path in pages:
        assert admin.get(path).status == 200, path


def test_the_admin_nav_links_the_messages_and_settings_pages(admin):
    page = admin.get("/admin").text
    assert '<a href="/admin/messages">Messages</a>' in page
    assert '<a href="/admin/settings">Settings</a>' in page


def test_a_retry_is_shown_with_its_next_attempt(morning, smtp_settings, smtp, admin, alice,
                                                carol, drain):
    smtp.answer("451")
    book(alice, carol)
    drain()
    waiting = Message.get(Message.kind == "confirmation")
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    page = admin.get(f"/admin/messages/{waiting.id}").text
    assert "<strong>Attempt 1 failed:</strong> recipient refused: 451" in page
    retry_at = (MORNING + timedelta(minutes=10)).strftime("%H:%M")
    assert retry_at in page


@pytest.mark.parametrize("filters", [{}, {"status": "failed"}, {"kind": "test"},
                                     {"kind": "test", "day_from": "2031-03-01"},
                                     {"status": "sent", "day_from": "2031-03-01"}])
def test_a_page_of_the_list_never_sorts_the_table(app, filters):
    if db.is_postgres():
        pytest.skip("reads SQLite's query plan")
    sql, params = lookup.search(**filters).sql()
    plan = [row[-1] for row in db.database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]
    assert not any("TEMP B-TREE" in step for step in plan), plan
    if filters.get("kind") or filters.get("status"):
        assert any("USING INDEX" in step for step in plan), plan


# -- in a real browser ----------------------------------------------------------------------------


@pytest.mark.browser
def test_the_html_body_renders_with_its_styles_and_without_its_scripts(
        browser, server, admin, erin, alice):  # noqa: F811
    """The email's own inline styles apply inside the frame (a srcdoc frame, inheriting the
    page's policy, would drop them), and a script in a body never runs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    message = outbox.enqueue("test", "test:1", alice.email, context={"name": "Alice"})
    Message.update(html_body=message.html_body.replace(
        "</body>", "<script>document.body.setAttribute('data-ran', 'yes')</script></body>"),
    ).where(Message.id == message.id).execute()
    browser.get(f"{server}/login")
    browser.find_element(By.NAME, "email").send_keys(erin.email)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/admin"))
    browser.get(f"{server}/admin/messages/{message.id}")
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.email-html")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    body = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "body"))
    assert "This is a test email from Test Clinic" in body.text
    assert body.value_of_css_property("background-color") == "rgba(244, 245, 247, 1)"
    assert body.get_attribute("data-ran") is None
    browser.switch_to.default_content()
    screenshot(browser, "admin-message")


# -- kinds in words -------------------------------------------------------------------------------


def test_the_pages_say_each_kind_in_words(morning, admin, alice, carol):
    from clinic import reminders

    book(alice, carol)
    with time_machine.travel(datetime(2031, 3, 13, 10, 0, tzinfo=TZ), tick=False):
        assert reminders.send_advance()["sent"] == 1
    reminder = Message.get(Message.kind == "reminder_advance")

    page = admin.get("/admin/messages").text
    assert "Reminder before the visit" in page and "Booking confirmation" in page
    assert "reminder advance" not in page and "reminder_advance</option>" not in page
    assert '<option value="reminder_advance"' in page  # the filter still sends the kind
    detail = admin.get(f"/admin/messages/{reminder.id}").text
    assert "<dt>Kind</dt><dd>Reminder before the visit</dd>" in detail
    assert lookup.kind_words("something_new") == "Something new"
    # Every kind of email the clinic writes has its words.
    from pathlib import Path
    templates = Path(__file__).resolve().parent.parent / "templates" / "emails"
    kinds = {path.name.split(".")[0] for path in templates.iterdir()} - {"base"}
    assert kinds <= set(lookup.KIND_WORDS)
