"""clinic/db.py's plain-SQL helpers, on every engine: what they write and read must be what
peewee would have written and read."""

from datetime import UTC, datetime

from clinic import db
from clinic.models import Message, User


def _message(key, subject="Reminder"):
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    return (key, "reminder_advance", "alice@example.com", subject, f"<{key}@test>", at, at, at)


FIELDS = [Message.key, Message.kind, Message.recipient, Message.subject, Message.message_id,
          Message.due_at, Message.created_at, Message.updated_at]


def test_insert_new_writes_rows_with_the_models_defaults(app):
    inserted = db.insert_new(Message, FIELDS, [_message("a"), _message("b")],
                             returning=(Message.key, Message.due_at))
    assert sorted(inserted) == [("a", datetime(2026, 3, 29, 0, 30, tzinfo=UTC)),
                                ("b", datetime(2026, 3, 29, 0, 30, tzinfo=UTC))]
    a = Message.get(Message.key == "a")
    assert (a.status, a.attachments, a.attempts, a.text_body) == ("pending", [], 0, "")
    assert a.due_at == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def test_insert_new_leaves_a_taken_key_alone_and_returns_only_what_it_wrote(app):
    db.insert_new(Message, FIELDS, [_message("a", subject="first")])
    inserted = db.insert_new(Message, FIELDS, [_message("a", subject="second"), _message("b")],
                             returning=(Message.key,))
    assert inserted == [("b",)]
    assert Message.get(Message.key == "a").subject == "first"


def test_insert_new_of_nothing_writes_nothing(app):
    assert db.insert_new(Message, FIELDS, [], returning=(Message.id,)) == []
    assert Message.select().count() == 0


def test_select_gives_back_python_values_as_the_fields_would(app):
    Message.create(key="k", kind="reminder_advance", recipient="alice@example.com",
                   subject="Reminder", message_id="<k@test>", attachments=[{"filename": "a.ics"}],
                   due_at=datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    rows = db.select(f'SELECT {db.columns(Message.key, Message.due_at, Message.attachments)} '
                     f'FROM "message" WHERE "kind" = ?', ("reminder_advance",),
                     [Message.key, Message.due_at, Message.attachments])
    assert rows == [("k", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), [{"filename": "a.ics"}])]


def test_instance_is_a_model_object_with_nothing_marked_changed(app, alice):
    fields = User._meta.sorted_fields
    values = db.select(f'SELECT {db.columns(*fields)} FROM "user" WHERE "id" = ?', (alice.id,),
                       fields)[0]
    user = db.instance(User, fields, values)
    assert (user.id, user.email, user.role, user.active) == (alice.id, alice.email, "patient",
                                                            True)
    assert user.created_at == User.get_by_id(alice.id).created_at
    assert not user.dirty_fields
