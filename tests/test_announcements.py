"""Announcements (clinic/announcements.py): the audiences, the preview, the admin's pages and the
API, and the sending: each patient once, through the outbox, also when a run stops half-way and
is run again. Real database, real Huey tasks run as the consumer runs them, a real SMTP server."""

import collections
import re
from datetime import timedelta

import pytest

from clinic import announcements, appointments, clock, db
from clinic.errors import Invalid
from clinic.jobs import progress
from clinic.jobs.queue import BULK
from clinic.mail import outbox, preferences, sweeper
from clinic.models import Announcement, Message, Patient, TaskRecord, User
from huey_config import huey
from tests.conftest import login, make_patient, slot


def many_patients(count):
    """``count`` active patients written straight to the tables, as fast as the database
    takes them; returns their ids."""
    now = clock.now()
    rows = [{"email": f"patient{n:05d}@example.com", "name": f"Patient {n}", "role": "patient",
             "password_hash": "-", "active": True, "created_at": now} for n in range(count)]
    with db.database.atomic():
        for start in range(0, count, 500):
            User.insert_many(rows[start:start + 500]).execute()
        ids = [user_id for (user_id,) in User.select(User.id)
               .where(User.email.startswith("patient")).tuples()]
        Patient.insert_many([{"user": user_id} for user_id in ids]).execute()
    return ids


def start(user, audience=None, subject="Closed on Friday", text="We are closed on Friday."):
    return announcements.start(user, subject, text, audience or {"type": "all"})


def rows_of(announcement):
    return list(Message.select().where(Message.key.startswith(
        f"announcement:{announcement.id}:")).order_by(Message.id))


# -- 2,000 patients, once each ------------------------------------------------------------------


def recipients_of(received):
    return collections.Counter(r.rcpt_tos[0] for r in received)


def test_an_announcement_to_2000_patients_is_delivered_once_each_also_when_a_run_stops_half_way(
        smtp_settings, smtp, erin, monkeypatch, drain):
    """The database fails while the third batch of 500 is being written (that transaction rolls
    back): the first thousand are delivered, the run is FAILURE, and running it again delivers
    the other thousand and nobody twice; a third run changes nothing."""
    ids = many_patients(2000)
    announcement, record = start(erin)
    assert announcement.recipients == 2000 and record.total == 2000
    batches = []
    database = db.database.obj
    execute_sql = database.execute_sql

    def failing_on_the_third(sql, params=None, *args, **kwargs):
        if sql.startswith("INSERT") and 'INTO "message"' in sql:  # one INSERT a batch
            batches.append(sql)
            if len(batches) == 3:
                raise OSError("disk I/O error")
        return execute_sql(sql, params, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", failing_on_the_third)
    # The consumer's own path: the task writes, each batch's delivery is its own task.
    assert drain() == ["send_announcement", "send_messages", "send_messages"]
    assert len(smtp.wait_for(1000)) == 1000
    assert smtp.connections == 2  # one SMTP connection per batch of 500
    assert len(rows_of(announcement)) == 1000  # the third batch rolled back whole
    failed = Announcement.get_by_id(announcement.id)
    assert failed.state == "failed" and "disk I/O error" in failed.error
    state = TaskRecord.get(TaskRecord.task_id == record.task_id)
    assert (state.state, state.current) == ("FAILURE", 1000)
    assert "nobody gets it twice" in state.status

    monkeypatch.undo()
    again = announcements.resume(erin, announcement.id)
    assert drain() == ["send_announcement", "send_messages", "send_messages"]
    received = smtp.wait_for(2000)
    assert len(received) == 2000
    assert recipients_of(received) == {f"patient{n:05d}@example.com": 1 for n in range(2000)}
    rows = rows_of(announcement)
    assert sorted(m.user_id for m in rows) == sorted(ids)
    assert {m.status for m in rows} == {"sent"}
    assert len({m.message_id for m in rows}) == 2000
    finished = TaskRecord.get(TaskRecord.task_id == again.task_id)
    assert (finished.state, finished.current, finished.total) == ("SUCCESS", 2000, 2000)
    assert finished.result == {"recipients": 2000, "queued": 1000, "skipped": 0, "failed": 0,
                               "existing": 1000}
    announcement = Announcement.get_by_id(announcement.id)
    assert (announcement.state, announcement.queued, announcement.skipped) == ("written", 2000, 0)

    assert announcements.send(announcement.id)["existing"] == 2000  # and once more: nothing
    assert drain() == []
    sweeper.sweep()
    assert len(smtp.messages) == 2000


def test_an_announcement_goes_out_through_the_queue_a_batch_a_connection(smtp_settings, smtp,
                                                                       erin, monkeypatch, drain):
    monkeypatch.setattr(announcements, "BATCH", 100)
    many_patients(250)
    announcement, record = start(erin)
    assert drain() == ["send_announcement"] + ["send_messages"] * 3
    assert recipients_of(smtp.wait_for(250)) == {
        f"patient{n:05d}@example.com": 1 for n in range(250)}
    assert smtp.connections == 3
    state = progress.as_dict(TaskRecord.get(TaskRecord.task_id == record.task_id))
    assert (state["state"], state["current"], state["total"]) == ("SUCCESS", 250, 250)


def test_rows_are_written_in_batches_one_transaction_and_one_task_each(app, erin):
    many_patients(1201)
    announcement, _ = start(erin)
    counts = announcements.send(announcement.id)
    queued = [(len(task.args[0]), task.priority) for task in huey.pending()
              if task.name.endswith("send_messages")]
    assert counts == {"recipients": 1201, "queued": 1201, "skipped": 0, "failed": 0,
                      "existing": 0}
    assert queued == [(500, BULK), (500, BULK), (201, BULK)]
    assert {m.priority for m in rows_of(announcement)} == {announcements.PRIORITY}


# -- opting out -----------------------------------------------------------------------------------


def test_patients_who_opted_out_get_nothing_and_their_rows_say_why(smtp_settings, smtp, alice,
                                                                   bob, erin, drain):
    preferences.save(bob, {"announcements": False})
    preferences.save(alice, {"reminders": False})  # another kind: alice still gets this one
    announcement, _ = start(erin)
    drain()
    (received,) = smtp.wait_for(1)
    assert received.rcpt_tos == [alice.email]
    rows = {m.user_id: m for m in rows_of(announcement)}
    assert rows[bob.id].status == "skipped"
    assert rows[bob.id].last_error == "the patient opted out of announcements"
    assert rows[bob.id].subject == "" and rows[bob.id].text_body == ""
    assert Announcement.get_by_id(announcement.id).skipped == 1


# -- the audiences --------------------------------------------------------------------------------


@pytest.fixture
def clinic_people(alice, bob, carol, dave, erin):
    """alice sees carol tomorrow, bob sees dave in 3 days, cara's visit was cancelled, and
    inactive ivan would be in every audience."""
    appointments.book(alice.id, carol.id, slot(1, "10:00"))
    appointments.book(bob.id, dave.id, slot(3, "10:00"))
    cara = make_patient("cara@example.com", "Cara Cancel")
    cancelled = appointments.book(cara.id, carol.id, slot(1, "11:00"))
    appointments.cancel(cancelled, cara)
    ivan = make_patient("ivan@example.com", "Ivan Inactive")
    appointments.book(ivan.id, carol.id, slot(1, "12:00"))
    User.update(active=False).where(User.id == ivan.id).execute()
    return {"alice": alice, "bob": bob, "cara": cara, "carol": carol, "dave": dave}


def names(audience):
    _, _, audience = announcements.parse("s", "t", audience)
    return [u.name for u in announcements.recipients(audience)]


def test_each_audience_holds_the_active_patients_it_says(clinic_people):
    carol, dave = clinic_people["carol"], clinic_people["dave"]
    assert names({"type": "all"}) == ["Alice Adams", "Bob Brown", "Cara Cancel"]
    assert names({"type": "doctor", "doctor_id": carol.id}) == ["Alice Adams"]
    assert names({"type": "doctor", "doctor_id": str(dave.id)}) == ["Bob Brown"]
    tomorrow = slot(1).astimezone(clock.zone()).date()
    in_3_days = tomorrow + timedelta(days=2)
    assert names({"type": "appointments", "from": tomorrow.isoformat(),
                  "to": tomorrow.isoformat()}) == ["Alice Adams"]
    assert names({"type": "appointments", "from": tomorrow.isoformat(),
                  "to": in_3_days.isoformat()}) == ["Alice Adams", "Bob Brown"]
    assert names({"type": "appointments", "from": (tomorrow + timedelta(days=1)).isoformat(),
                  "to": (tomorrow + timedelta(days=1)).isoformat()}) == []


@pytest.mark.parametrize("subject, text, audience, field", [
    ("", "text", {"type": "all"}, "subject"),
    ("x" * 151, "text", {"type": "all"}, "subject"),
    ("Subject", "  ", {"type": "all"}, "text"),
    ("Subject", "text", {"type": "everyone"}, "audience"),
    ("Subject", "text", None, "audience"),
    ("Subject", "text", {"type": "doctor"}, "doctor_id"),
    ("Subject", "text", {"type": "doctor", "doctor_id": 999999}, "doctor_id"),
    ("Subject", "text", {"type": "appointments", "from": "tomorrow", "to": "2030-01-01"}, "from"),
    ("Subject", "text", {"type": "appointments", "from": "2030-01-02", "to": "2030-01-01"}, "to"),
])
def test_what_cannot_be_sent_is_refused_naming_the_field(app, carol, subject, text, audience,
                                                         field):
    with pytest.raises(Invalid) as caught:
        announcements.parse(subject, text, audience)
    assert field in caught.value.fields


def test_a_patient_is_not_an_audience_of_one_doctor(app, alice):
    with pytest.raises(Invalid) as caught:
        announcements.parse("s", "t", {"type": "doctor", "doctor_id": alice.id})
    assert "doctor_id" in caught.value.fields


def test_the_preview_shows_the_email_and_counts_the_recipients(clinic_people):
    preferences.save(clinic_people["bob"], {"announcements": False})
    seen = announcements.preview("  Closed   on Friday ", "Dear all,\r\n\r\nWe are closed.",
                                 {"type": "all"})
    assert seen["subject"] == "Closed on Friday"
    assert seen["text"].startswith("Dear all,\n\nWe are closed.")  # the admin greets, once
    assert "/unsubscribe/" in seen["text"]
    assert (seen["recipients"], seen["opted_out"]) == (3, 1)
    empty = announcements.preview("s", "t", {"type": "appointments", "from": "2001-01-01",
                                             "to": "2001-01-01"})
    assert empty["recipients"] == 0 and empty["patient_name"] == "Alex Example"
    assert "Hello" not in empty["text"]


def test_the_html_version_keeps_paragraphs_and_escapes_what_was_typed(smtp_settings, smtp,
                                                                      alice, erin, drain):
    start(erin, text="First <b>line</b>\nsecond line\n\nNew paragraph & more")
    drain()
    (received,) = smtp.wait_for(1)
    html = received.message.get_body(("html",)).get_content()
    assert "First &lt;b&gt;line&lt;/b&gt;<br>second line</p>" in html
    assert "New paragraph &amp; more" in html
    text = received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "First <b>line</b>\nsecond line\n\nNew paragraph & more" in text
    assert text.startswith("First <b>line</b>")  # no greeting above the admin's own
    assert "Hello" not in html


# -- the admin's pages ----------------------------------------------------------------------------


def form(**values):
    return {"subject": "Closed on Friday", "text": "We are closed on Friday.",
            "audience": "all", "doctor_id": "", "from": "", "to": "", **values}


def test_the_admin_previews_then_sends_and_follows_the_progress(client, alice, bob, erin, drain):
    login(client, erin)
    page = client.get("/admin/announcements/new")
    assert page.status == 200 and 'value="all" checked' in page.text
    assert ('<label class="choice"><input type="radio" name="audience" value="all" checked>'
            in page.text)
    preview = client.post("/admin/announcements/new", form(action="preview"))
    assert preview.status == 200
    assert "2 patients" in preview.text and "As Alice Adams will get it" in preview.text
    assert "Hello Alice Adams" not in preview.text
    assert "Send to 2 patients" in preview.text
    assert Announcement.select().count() == 0  # a preview sends nothing
    checked = re.search(r'name="checked" value="([0-9a-f]+)"', preview.text).group(1)

    sent = client.post("/admin/announcements/new", form(action="send", checked=checked))
    assert sent.status == 303
    announcement = Announcement.get()
    assert sent.location.endswith(f"/admin/announcements/{announcement.id}")
    detail = client.get(sent.location)
    assert detail.status == 200
    assert f'data-task-url="/api/tasks/{announcement.task_id}"' in detail.text
    assert 'data-state="PENDING"' in detail.text and "progress.js" in detail.text

    drain()
    state = client.get(f"/api/tasks/{announcement.task_id}").json()
    assert (state["state"], state["current"], state["total"]) == ("SUCCESS", 2, 2)
    assert state["status"] == "Done: 2 emails ready to send"
    detail = client.get(sent.location)
    assert "<dt>Sent</dt><dd>2</dd>" in detail.text and "progress.js" not in detail.text
    # The task's line says what it did, never a count of sent ones that goes stale.
    assert "Emails written" in detail.text and "0 sent" not in detail.text
    assert "<dt>Waiting to be sent</dt><dd>0</dd>" in detail.text
    listing = client.get("/admin/announcements")
    assert "Closed on Friday" in listing.text and "All patients" in listing.text


def test_a_message_changed_after_its_preview_is_previewed_again_not_sent(client, alice, erin):
    login(client, erin)
    client.get("/admin/announcements/new")
    preview = client.post("/admin/announcements/new", form(action="preview"))
    checked = re.search(r'name="checked" value="([0-9a-f]+)"', preview.text).group(1)
    changed = client.post("/admin/announcements/new",
                          form(action="send", checked=checked, text="Closed on Saturday."))
    assert changed.status == 409 and "check it again" in changed.text
    assert "Closed on Saturday." in changed.text
    unchecked = client.post("/admin/announcements/new", form(action="send"))
    assert unchecked.status == 409
    assert Announcement.select().count() == 0


def test_a_bad_form_says_what_is_wrong_and_keeps_what_was_typed(client, carol, erin):
    login(client, erin)
    client.get("/admin/announcements/new")
    page = client.post("/admin/announcements/new",
                       form(action="preview", audience="doctor", subject="Keep this"))
    assert page.status == 400
    assert "Choose a doctor." in page.text and 'value="Keep this"' in page.text


def test_only_admins_reach_the_announcement_pages(client, alice, erin):
    login(client, alice)
    assert client.get("/admin/announcements").status == 403
    refused = client.post("/admin/announcements/new", form(action="preview"))
    assert refused.status == 403 and "does not have access" in refused.text
    assert client.get("/admin/announcements/new").status == 403


def test_a_failed_announcement_can_be_sent_again_from_its_page(client, alice, bob, erin,
                                                               monkeypatch, drain):
    login(client, erin)
    announcement, _ = start(erin)
    def locked(*args, **kwargs):
        raise OSError("database is locked")

    monkeypatch.setattr(outbox, "enqueue_many", locked)
    drain()
    page = client.get(f"/admin/announcements/{announcement.id}")
    assert "Sending stopped" in page.text and "database is locked" in page.text
    monkeypatch.undo()
    again = client.post(f"/admin/announcements/{announcement.id}/resume")
    assert again.status == 303
    drain()
    assert Announcement.get_by_id(announcement.id).state == "written"
    assert {m.recipient for m in rows_of(announcement)} == {alice.email, bob.email}
    assert client.post(f"/admin/announcements/{announcement.id}/resume").status == 409


# -- the API --------------------------------------------------------------------------------------


def test_the_api_starts_an_announcement_and_its_task_can_be_followed(new_client, alice, bob,
                                                                     carol, erin, drain):
    appointments.book(alice.id, carol.id, slot(1, "10:00"))
    admin = new_client()
    admin.api_login(erin.email)
    response = admin.post_json("/api/admin/announcements", {
        "subject": "Dr Clark is away", "text": "Dr Clark is away next week.",
        "audience": {"type": "doctor", "doctor_id": carol.id}})
    assert response.status == 202, response
    body = response.json()
    assert body["recipients"] == 1 and set(body) == {"task_id", "announcement_id", "recipients"}
    assert admin.get(f"/api/tasks/{body['task_id']}").json()["state"] == "PENDING"
    drain()
    assert admin.get(f"/api/tasks/{body['task_id']}").json()["state"] == "SUCCESS"
    (row,) = rows_of(Announcement.get_by_id(body["announcement_id"]))
    assert row.recipient == alice.email

    bad = admin.post_json("/api/admin/announcements", {"subject": 3, "text": "t",
                                                       "audience": "all"})
    assert bad.status == 400 and set(bad.json()["fields"]) == {"subject", "audience"}
    patient = new_client()
    patient.api_login(alice.email)
    assert patient.post_json("/api/admin/announcements", {}).status == 403
