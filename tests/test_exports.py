"""The patient's history export (clinic/exports.py): started from the history page or the API,
built by its Huey task into a CSV a spreadsheet cannot turn against its reader, shown with
progress, downloadable and emailed only to that patient, gone after its expiry. Real SQLite, a
real SMTP server, time moved with time-machine."""

import csv
import io
import os
import re
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from clinic import appointments, clock, db, exports, settings
from clinic.errors import Forbidden, NotFound
from clinic.jobs import progress
from clinic.jobs.queue import NORMAL
from clinic.mail import outbox, sweeper
from clinic.models import Appointment, Export, Message, TaskRecord, Treatment
from huey_config import huey
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ, login, make_patient, slot

RECORD = {"visit_type": "Consultation", "symptoms": "Racing heart at night",
          "diagnosis": "Benign ectopic beats", "treatment": "Reassurance",
          "prescription": "Magnesium 400 mg daily", "notes": "Come back in 6 months"}


def visit(patient, doctor, days_ahead=1, at="10:00", **record):
    """A completed visit: booked, then completed by its doctor during it."""
    appointment = appointments.book(patient.id, doctor.id, slot(days_ahead, at))
    with time_machine.travel(appointment.start + timedelta(minutes=20), tick=False):
        appointments.complete(appointment, doctor, {**RECORD, **record})
    return appointment


def raw_visit(patient, doctor, start, **record):
    """A completed visit written straight to the tables, keeping values exactly as given
    (complete() strips them), as older or imported records may hold them."""
    appointment = Appointment.create(patient=patient.id, doctor=doctor.id, start=start,
                                     end=start + timedelta(minutes=30), status="completed")
    Treatment.create(appointment=appointment.id, **{**RECORD, **record})
    return appointment


def queued_exports():
    return [task.args[0] for task in huey.pending() if task.name.endswith("export_history")]


def export_of(task_id):
    return Export.get(Export.task_id == task_id)


def record_of(task_id):
    return TaskRecord.get(TaskRecord.task_id == task_id)


def file_of(task_id):
    return exports.folder() / export_of(task_id).filename


def read_csv(data):
    """Rows of a CSV file's bytes, checking the encoding and line ends on the way."""
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 byte order mark first, for Excel"
    text = data.decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


def built(patient):
    """Start and build ``patient``'s export; returns its task id."""
    record, started = exports.start(patient)
    assert started
    exports.build(record.task_id)
    return record.task_id


def signed_in(visitor, user):
    login(visitor, user)
    visitor.get("/patient/history" if user.role == "patient" else "/")  # the new CSRF token
    return visitor


@pytest.fixture
def as_alice(client, alice):
    return signed_in(client, alice)


# -- starting ---------------------------------------------------------------------------------


def test_the_api_answers_202_with_the_pending_task_and_queues_it(new_client, alice):
    visitor = new_client()
    visitor.api_login(alice.email)
    response = visitor.post_json("/api/patient/export-history")
    assert response.status == 202, response
    body = response.json()
    assert body == {"task_id": body["task_id"], "status": "PENDING"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["task_id"])
    export = export_of(body["task_id"])
    assert export.patient_id == alice.id and export.filename == "" and not export.deleted
    record = record_of(body["task_id"])
    assert (record.state, record.user_id) == ("PENDING", alice.id)
    assert queued_exports() == [body["task_id"]]
    assert [t.priority for t in huey.pending()] == [NORMAL]


def test_the_history_page_has_the_button_and_it_starts_an_export(as_alice, alice, carol):
    page = as_alice.get("/patient/history").text
    assert 'action="/patient/history/export"' in page and "Export full history" in page

    response = as_alice.post("/patient/history/export")
    assert response.status == 303, response
    task_id = export_of(queued_exports()[0]).task_id
    assert response.location.endswith(f"/patient/exports/{task_id}")

    page = as_alice.get(f"/patient/exports/{task_id}")
    assert page.status == 200
    assert "We are preparing your export." in page.text
    response = as_alice.post("/patient/history/export")  # a second click: the same export
    assert response.location.endswith(f"/patient/exports/{task_id}")
    assert "You asked for an export a moment ago" in as_alice.get(response.location).text
    assert re.search(r"<progress id=\"export-bar\" max=\"1\">", page.text)  # nothing counted
    assert f'<a href="/patient/exports/{task_id}">Refresh</a>' in page.text  # works without JS
    assert re.search(r'<script src="/static/progress\.js\?v=\d+"></script>', page.text)
    assert "<script>" not in page.text and "style=" not in page.text  # CSP: no inline code
    assert as_alice.get("/static/progress.js").status == 200


def test_the_page_button_needs_the_csrf_token(as_alice, alice):
    response = as_alice.post("/patient/history/export", csrf=False)
    assert response.status == 403
    assert Export.select().count() == 0 and queued_exports() == []


def test_only_patients_may_export(new_client, carol, erin):
    for user in (carol, erin):
        visitor = new_client()
        visitor.api_login(user.email)
        assert visitor.post_json("/api/patient/export-history").status == 403
        visitor = signed_in(new_client(), user)
        assert visitor.post("/patient/history/export").status == 403
    with pytest.raises(Forbidden):
        exports.start(carol)
    assert Export.select().count() == 0 and queued_exports() == []


def test_while_an_export_runs_starting_again_gives_the_same_one(alice, bob):
    first, started = exports.start(alice)
    again, started_again = exports.start(alice)
    assert started and not started_again
    assert again.task_id == first.task_id
    assert exports.start(bob)[1]  # someone else's export is no obstacle
    assert Export.select().where(Export.patient == alice.id).count() == 1
    assert len(queued_exports()) == 2

    exports.build(first.task_id)
    after, started = exports.start(alice)  # the first is done: a new one may start
    assert started and after.task_id != first.task_id


def test_an_export_whose_task_was_lost_does_not_block_a_new_one(alice):
    lost, _ = exports.start(alice)
    later = clock.now() + exports.STALE_AFTER + timedelta(minutes=1)
    fresh, started = exports.start(alice, now=later)
    assert started and fresh.task_id != lost.task_id
    assert record_of(lost.task_id).state == "FAILURE"
    assert exports.build(lost.task_id) == {"skipped": "not pending"}  # if it turns up after all


def test_a_rolled_back_start_queues_nothing(alice):
    with db.database.atomic() as transaction:
        exports.start(alice)
        assert queued_exports() == []  # not before the commit
        transaction.rollback()
    assert queued_exports() == []
    assert Export.select().count() == 0 and TaskRecord.select().count() == 0


# -- the file ---------------------------------------------------------------------------------


def test_the_queued_task_writes_every_completed_visit_as_a_row(alice, bob, carol, dave, drain):
    later = visit(alice, dave, 3, "14:00", visit_type="Skin check", diagnosis="Mole, benign")
    first = visit(alice, carol, 1, "10:00")
    visit(bob, carol, 1, "11:00", notes="Bob's visit")
    appointments.book(alice.id, carol.id, slot(5, "09:00"))  # not completed: not exported
    record, _ = exports.start(alice)

    assert "export_history" in drain()

    data = file_of(record.task_id).read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF, RFC 4180
    header, *rows = read_csv(data)
    assert tuple(header) == exports.COLUMNS == (
        "Patient ID", "Patient name", "Doctor", "Date", "Visit type", "Symptoms", "Diagnosis",
        "Treatment", "Prescription", "Notes", "Amended")
    assert rows == [  # oldest first; the date in the clinic's zone
        [str(alice.id), "Alice Adams", "Dr Carol Clark",
         first.start.astimezone(TZ).strftime("%Y-%m-%d %H:%M"), "Consultation",
         "Racing heart at night", "Benign ectopic beats", "Reassurance",
         "Magnesium 400 mg daily", "Come back in 6 months", ""],
        [str(alice.id), "Alice Adams", "Dr Dave Davis",
         later.start.astimezone(TZ).strftime("%Y-%m-%d %H:%M"), "Skin check",
         "Racing heart at night", "Mole, benign", "Reassurance", "Magnesium 400 mg daily",
         "Come back in 6 months", ""],
    ]
    assert rows[0][3].endswith(" 10:00")  # 10:00 Berlin time, whatever UTC says
    assert data.count(b'"') == 2 * 11 * 3  # every cell quoted
    export = export_of(record.task_id)
    assert export.rows == 2
    assert (os.stat(file_of(record.task_id)).st_mode & 0o777) == 0o600


def test_the_file_name_is_unguessable_and_nothing_else_is_left(alice, carol):
    visit(alice, carol)
    names = {export_of(built(alice)).filename, export_of(built(alice)).filename}
    assert len(names) == 2
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}\.csv", name)
    assert sorted(p.name for p in exports.folder().iterdir()) == sorted(names)  # no temp files


@pytest.mark.parametrize("value", ["=1+1", "+x", "-x", "@x", "\tx", "\rx",
                                   "=HYPERLINK(\"http://evil.example\",\"click\")",
                                   "-5 mg", "+49 30 1234567"])
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_apostrophe(value):
    assert exports.safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Aspirin 5 mg", "5 - 3", "a=b", "x@example.com", " =1",
                                   "'quoted already", "", "Zoë"])
def test_other_text_is_left_as_it_is(value):
    assert exports.safe_cell(value) == value


def test_formula_cells_come_out_harmless_and_the_rest_unchanged(carol):
    mallory = make_patient("mallory@example.com", "=cmd|'/C calc'!A0")
    raw_visit(mallory, carol, slot(-3, "10:00"), visit_type="\rx", symptoms="+x",
              diagnosis="-x", treatment="@x", prescription="\tx", notes="=1+1")
    raw_visit(mallory, carol, slot(-2, "10:00"), notes="-5 mg", symptoms="5 - 3 = 2")
    header, first, second = read_csv(file_of(built(mallory)).read_bytes())
    assert first[1] == "'=cmd|'/C calc'!A0"
    assert first[4:-1] == ["'\rx", "'+x", "'-x", "'@x", "'\tx", "'=1+1"]
    assert second[9] == "'-5 mg"  # OWASP: a leading minus too, also before a number
    assert second[5] == "5 - 3 = 2"
    for row in (first, second):
        assert not any(cell.startswith(exports.FORMULA_STARTS) for cell in row)


def test_quotes_commas_newlines_and_unicode_round_trip(carol):
    zoe = make_patient("zoe@example.com", "Zoë O'Brien, \"Zo\"")
    tricky = {"visit_type": "Röntgen 🦴", "symptoms": 'said "it hurts", twice',
              "diagnosis": "line one\r\nline two\nline three", "treatment": "a;b;c",
              "prescription": "日本語のテキスト", "notes": "tab\tinside, comma"}
    raw_visit(zoe, carol, slot(-1, "10:00"), **tricky)
    header, row = read_csv(file_of(built(zoe)).read_bytes())
    assert row[1] == "Zoë O'Brien, \"Zo\""
    assert row[4:-1] == [tricky[name] for name in appointments.TREATMENT_FIELDS]


def test_a_patient_without_visits_gets_the_header_only(alice):
    task_id = built(alice)
    assert read_csv(file_of(task_id).read_bytes()) == [list(exports.COLUMNS)]
    assert record_of(task_id).result["rows"] == 0


# -- progress ---------------------------------------------------------------------------------


def test_progress_goes_from_pending_through_progress_to_success(alice, carol, monkeypatch):
    for day in range(1, 6):
        raw_visit(alice, carol, slot(-day, "10:00"))
    monkeypatch.setattr(exports, "BATCH", 2)
    seen = []
    step = progress.step

    def watched(task_id, current, total=None, status=None):
        step(task_id, current, total, status)
        record = record_of(task_id)
        seen.append((record.state, record.current, record.total))

    monkeypatch.setattr(progress, "step", watched)
    record, _ = exports.start(alice)
    assert record_of(record.task_id).state == "PENDING"

    with time_machine.travel(datetime(2030, 1, 2, 9, 0, tzinfo=UTC), tick=False):
        exports.build(record.task_id)

    assert seen == [("PROGRESS", 2, 5), ("PROGRESS", 4, 5)]
    done = record_of(record.task_id)
    assert (done.state, done.current, done.total) == ("SUCCESS", 5, 5)
    expires = datetime(2030, 1, 5, 9, 0, tzinfo=UTC)  # 72 hours after it was made
    assert done.result == {"download_url": f"/patient/exports/{record.task_id}/download",
                           "rows": 5, "expires_at": expires.astimezone(TZ).isoformat()}
    assert export_of(record.task_id).expires_at == expires


def test_the_page_shows_progress_then_the_download_link(as_alice, alice, carol):
    raw_visit(alice, carol, slot(-1, "10:00"))
    record, _ = exports.start(alice)
    progress.step(record.task_id, 3, 8, "Collecting your visits")
    page = as_alice.get(f"/patient/exports/{record.task_id}").text
    assert '<progress id="export-bar" max="8" value="3">' in page
    assert "Collecting your visits: 3 of 8 visits" in page

    TaskRecord.update(state="PENDING").where(TaskRecord.task_id == record.task_id).execute()
    exports.build(record.task_id)
    page = as_alice.get(f"/patient/exports/{record.task_id}").text
    assert f'href="/patient/exports/{record.task_id}/download"' in page
    assert "Ready: 1 visit" in page and "progress.js" not in page
    assert "preparing" not in page  # the page says it is ready, and only that


def test_a_failed_build_says_so_and_leaves_no_file(alice, carol, monkeypatch, as_alice):
    raw_visit(alice, carol, slot(-1, "10:00"))

    def broken(patient, batch=None):
        yield ("half", "a", "row", "", "", "", "", "", "", "")
        raise OSError("disk full")

    monkeypatch.setattr(exports, "rows", broken)
    record, _ = exports.start(alice)
    assert exports.build(record.task_id) == {"failed": "OSError: disk full"}
    failed = record_of(record.task_id)
    assert failed.state == "FAILURE" and "disk full" not in failed.status
    assert list(exports.folder().iterdir()) == []
    assert Message.select().count() == 0
    page = as_alice.get(f"/patient/exports/{record.task_id}")
    assert "The export could not be made" in page.text and "Start a new export" in page.text
    assert exports.start(alice)[1]  # and a new one may start


def test_a_task_run_twice_builds_and_sends_once(alice, carol):
    raw_visit(alice, carol, slot(-1, "10:00"))
    task_id = built(alice)
    assert exports.build(task_id) == {"skipped": "not pending"}
    assert len(list(exports.folder().iterdir())) == 1
    assert Message.select().count() == 1


# -- who may see it ---------------------------------------------------------------------------


def test_the_task_status_is_read_with_the_session_cookie_by_its_patient_only(new_client, alice,
                                                                           bob, carol):
    raw_visit(alice, carol, slot(-1, "10:00"))
    task_id = built(alice)
    owner = signed_in(new_client(), alice)  # the visitor's cookie, as progress.js sends it
    status = owner.get(f"/api/tasks/{task_id}")
    assert status.status == 200
    assert status.json()["state"] == "SUCCESS"
    assert status.json()["result"]["download_url"] == f"/patient/exports/{task_id}/download"
    for user in (bob, carol):
        assert signed_in(new_client(), user).get(f"/api/tasks/{task_id}").status == 404


def test_only_the_patient_can_see_and_download_the_export(new_client, alice, bob, carol, erin):
    raw_visit(alice, carol, slot(-1, "10:00"))
    task_id = built(alice)
    page, download = f"/patient/exports/{task_id}", f"/patient/exports/{task_id}/download"

    owner = signed_in(new_client(), alice)
    assert owner.get(page).status == 200
    assert owner.get(download).status == 200

    for user in (bob, carol, erin):  # another patient, her doctor, the admin
        visitor = signed_in(new_client(), user)
        assert visitor.get(page).status == 404, user.email
        assert visitor.get(download).status == 404, user.email
        with pytest.raises(NotFound):
            exports.export_for(user, task_id)

    anonymous = new_client()
    response = anonymous.get(download)
    assert response.status == 303 and "/login?next=" in response.location
    assert signed_in(new_client(), alice).get("/patient/exports/not-a-task").status == 404


def test_the_download_is_an_attachment_that_is_not_cached(as_alice, alice, carol):
    raw_visit(alice, carol, slot(-1, "10:00"))
    with time_machine.travel(datetime(2030, 3, 4, 22, 30, tzinfo=UTC), tick=False):
        task_id = built(alice)  # 23:30 in Berlin: still 4 March there
    response = as_alice.get(f"/patient/exports/{task_id}/download")
    assert response.status == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert (response.headers["content-disposition"]
            == 'attachment; filename="medical-history-2030-03-04.csv"')
    assert "no-store" in response.headers["cache-control"]
    assert response.body == file_of(task_id).read_bytes()


def test_before_it_is_ready_there_is_nothing_to_download(as_alice, alice):
    record, _ = exports.start(alice)
    response = as_alice.get(f"/patient/exports/{record.task_id}/download")
    assert response.status == 404 and "not ready yet" in response.text


# -- expiry -----------------------------------------------------------------------------------


def test_after_expiry_the_download_is_refused_and_the_file_purged(as_alice, alice, carol):
    raw_visit(alice, carol, slot(-1, "10:00"))
    task_id = built(alice)
    path = file_of(task_id)
    expires_at = export_of(task_id).expires_at
    assert expires_at - clock.now() == pytest.approx(timedelta(hours=72), abs=timedelta(
        minutes=1))

    assert exports.purge_expired(now=expires_at - timedelta(minutes=1)) == 0
    assert path.exists()

    with time_machine.travel(expires_at + timedelta(seconds=1), tick=False):
        response = as_alice.get(f"/patient/exports/{task_id}/download")
        assert response.status == 410
        assert "no longer available: downloads work for 3 days" in response.text
        page = as_alice.get(f"/patient/exports/{task_id}").text
        assert "This export has expired" in page and "Start a new export" in page
        assert f'href="/patient/exports/{task_id}/download"' not in page

    assert exports.purge_expired(now=expires_at) == 1
    assert not path.exists() and export_of(task_id).deleted
    assert exports.purge_expired(now=expires_at + timedelta(days=1)) == 0
    assert as_alice.get(f"/patient/exports/{task_id}/download").status == 410


def test_purging_removes_leftovers_of_a_killed_build(alice):
    exports.folder().mkdir(parents=True)
    leftover = exports.folder() / ".0123456789abcdef.tmp"
    leftover.write_text("half a file")
    now = clock.now()
    exports.purge_expired(now=now)
    assert leftover.exists()  # it may be a build still running
    exports.purge_expired(now=now + timedelta(hours=73))
    assert not leftover.exists()


def test_the_ttl_is_a_setting(app):
    assert settings.load(environ={"CLINIC_EXPORT_TTL": "2d"}).export_ttl == timedelta(days=2)
    assert settings.load(environ={}).export_ttl == timedelta(hours=72)
    assert "CLINIC_EXPORT_TTL" in [env for env, _, _ in settings.describe()]


# -- the email --------------------------------------------------------------------------------


def test_the_csv_is_emailed_to_the_patient_as_an_attachment(smtp_settings, smtp, alice, carol,
                                                             drain):
    raw_visit(alice, carol, slot(-1, "10:00"), diagnosis="Secret diagnosis")
    record, _ = exports.start(alice)
    assert drain() == ["export_history", "send_messages"]  # the email goes out at once

    export = export_of(record.task_id)
    message = Message.get(Message.key == f"history_export:{export.id}")
    assert message.status == "sent" and message.kind == "history_export"
    [received] = smtp.messages
    assert received.rcpt_tos == ["alice@example.com"]
    email = received.message
    assert email["Subject"] == "Your medical history export from Test Clinic"
    [attachment] = list(email.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename() == exports.download_name(export)
    assert attachment.get_payload(decode=True) == file_of(record.task_id).read_bytes()

    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    link = f"http://127.0.0.1:0/patient/exports/{record.task_id}/download"
    for body in (text, html):
        assert "a spreadsheet file (CSV) with 1 visit" in body
        assert "for 3 days, until" in body and link in body
        assert "Secret diagnosis" not in body and "Magnesium" not in body


def test_the_email_is_sent_once_per_export(smtp_settings, smtp, alice, carol):
    raw_visit(alice, carol, slot(-1, "10:00"))
    task_id = built(alice)
    export = export_of(task_id)
    assert outbox.enqueue("history_export", f"history_export:{export.id}", alice.email,
                          context={"name": "x", "rows": 0, "expires_at": clock.now(),
                                   "download_url": "", "lifetime": ""}) is None
    sweeper.sweep()
    assert len(smtp.messages) == 1


# -- scale ------------------------------------------------------------------------------------


def test_5000_visits_are_streamed_in_flat_memory(alice, carol):
    """The rows are never all in memory at once: 5,000 visits with 1 kB of notes each are 5 MB
    of text; the export's peak allocation stays near one batch's worth."""
    start = datetime(2020, 1, 1, 9, 0, tzinfo=UTC)
    now = clock.now()
    appointment_rows = [{"patient": alice.id, "doctor": carol.id,
                         "start": start + timedelta(hours=n),
                         "end": start + timedelta(hours=n, minutes=30),
                         "status": "completed", "created_at": now, "updated_at": now}
                        for n in range(5000)]
    with db.database.atomic():
        for chunk in range(0, 5000, 500):
            Appointment.insert_many(appointment_rows[chunk:chunk + 500]).execute()
        ids = [a.id for a in Appointment.select(Appointment.id).order_by(Appointment.id)]
        for chunk in range(0, 5000, 500):
            Treatment.insert_many([{**RECORD, "appointment": i, "notes": f"{i:05d}" + "n" * 995,
                                    "created_at": now} for i in ids[chunk:chunk + 500]]).execute()
    rows = exports.rows(alice)
    assert next(rows)[3] == "2020-01-01 10:00" and iter(rows) is rows  # a generator
    rows.close()

    record, _ = exports.start(alice)
    tracemalloc.start()
    try:
        result = exports.build(record.task_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == {"rows": 5000}
    assert peak < 2_000_000, f"peak {peak} bytes: the rows were held in memory"
    data = file_of(record.task_id).read_bytes()
    assert len(data) > 5_000_000
    header, *rows = read_csv(data)
    assert len(rows) == 5000
    assert [row[9][:5] for row in rows] == [f"{i:05d}" for i in ids]  # each once, in order


# -- in a real browser ------------------------------------------------------------------------


def test_progress_js_follows_the_export_in_a_real_browser(browser, server, alice,  # noqa: F811
                                                          carol):
    """static/progress.js polls the task with the session cookie, moves the bar, and shows the
    download link when the export is ready, all without reloading the page (CSP-clean: the
    script is a file, not inline)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    raw_visit(alice, carol, slot(-1, "10:00"))
    browser.get(f"{server}/login")
    browser.find_element(By.NAME, "email").send_keys(alice.email)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/patient"))
    browser.get(f"{server}/patient/history")
    browser.find_element(By.XPATH, "//button[text()='Export full history']").click()
    WebDriverWait(browser, 15).until(lambda d: "/patient/exports/" in d.current_url)
    [task_id] = queued_exports()
    assert browser.current_url.endswith(f"/patient/exports/{task_id}")
    browser.execute_script("window.samePage = true;")
    wait = WebDriverWait(browser, 30)

    progress.step(task_id, 3, 8, "Collecting your visits")
    wait.until(lambda b: b.find_element(By.ID, "export-bar").get_attribute("value") == "3")
    assert "3 of 8 visits" in browser.find_element(By.ID, "export-status").text

    TaskRecord.update(state="PENDING").where(TaskRecord.task_id == task_id).execute()
    exports.build(task_id)
    link = wait.until(lambda b: b.find_elements(By.LINK_TEXT, "Download (CSV)"))[0]
    assert link.get_attribute("href") == f"{server}/patient/exports/{task_id}/download"
    assert browser.execute_script("return window.samePage === true;")  # not reloaded
    assert "Ready: 1 visit" in browser.find_element(By.ID, "export-status").text
    assert "preparing" not in browser.find_element(By.TAG_NAME, "main").text
    assert screenshot(browser, "patient-export-ready").exists()
