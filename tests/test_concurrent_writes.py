"""Jobs that write row by row while another process writes too.

On SQLite a job that walks a query lazily keeps a read snapshot open for as long as the walk
lasts; its next write then needs BEGIN IMMEDIATE on that old snapshot, and once another
connection has committed since, SQLite answers "database is locked" at once (SQLITE_BUSY_SNAPSHOT:
the busy timeout does not apply). Seen on a real start at 1,000,000 appointments: the
review-requests job failed while the monthly reports committed beside it. These tests commit
from a second connection between each of a job's writes."""

from datetime import timedelta

import pytest

from clinic import clock, db, exports, reviews
from clinic.mail import outbox
from clinic.models import Export, Message, User
from tests.test_reviews import completed_visit


@pytest.fixture
def other_process(app, clinic_settings):
    """A second connection to the clinic's database that commits a write on demand."""
    other = db.open_database(clinic_settings.database_url)
    other.connect()

    def commit():
        with other.atomic():
            other.execute_sql(
                'UPDATE "user" SET name = name WHERE id = (SELECT MIN(id) FROM "user")')

    yield commit
    other.close()
    if hasattr(other, "close_all"):
        other.close_all()


@pytest.fixture
def writes_between_enqueues(monkeypatch, other_process):
    enqueue = outbox.enqueue

    def enqueue_after_another_commit(*args, **kwargs):
        other_process()
        return enqueue(*args, **kwargs)

    monkeypatch.setattr(outbox, "enqueue", enqueue_after_another_commit)


def test_review_requests_go_out_while_another_process_writes(
        writes_between_enqueues, alice, bob, carol):
    now = clock.now()
    for patient, hours in ((alice, 3), (bob, 4), (alice, 5)):
        completed_visit(patient, carol, now - timedelta(hours=hours), hours_before=1)
    assert reviews.send_requests(now=now) == {"requested": 3}


def test_review_reminders_go_out_while_another_process_writes(
        writes_between_enqueues, alice, bob, carol):
    asked_at = clock.now() - timedelta(days=8)
    for patient, hours in ((alice, 3), (bob, 4), (alice, 5), (bob, 6)):
        completed_visit(patient, carol, asked_at - timedelta(hours=hours), hours_before=1)
    assert reviews.send_requests(now=asked_at) == {"requested": 4}
    Message.update(status="sent", sent_at=asked_at).execute()
    assert reviews.send_reminders(now=asked_at + timedelta(days=8)) == {"reminded": 4}


def test_expired_exports_are_purged_while_another_process_writes(
        monkeypatch, other_process, app, alice):
    now = clock.now()
    for n in range(4):
        Export.create(patient=alice.id, task_id=f"t{n}", created_at=now - timedelta(days=4),
                      expires_at=now - timedelta(days=1))
    update = Export.update

    def update_after_another_commit(*args, **kwargs):
        other_process()
        return update(*args, **kwargs)

    monkeypatch.setattr(Export, "update", update_after_another_commit)
    assert exports.purge_expired(now=now) == 4
    assert User.select().count() > 0
