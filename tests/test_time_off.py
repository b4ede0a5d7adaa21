"""Time off and clinic closures through the real HTTP API: slots inside are not offered, booking
into them is refused, removing the time off brings them back, bad ranges are refused with nothing
written, and "cancel_affected" cancels the visits inside and tells each patient once, also when
the run stops half-way and is run again."""

from datetime import timedelta

import pytest

from clinic import appointments, cancellations, clock, time_off
from clinic.models import Appointment, Cancellation, Message, TimeOff
from huey_config import huey
from tests.conftest import TZ, slot


def local(instant):
    return instant.astimezone(TZ).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def admin(new_client, erin):
    client = new_client()
    client.api_login(erin.email)
    return client


def offered(client, doctor, day, visit_type=None):
    query = f"?date={day.isoformat()}" + (f"&visit_type={visit_type}" if visit_type else "")
    response = client.get(f"/api/doctors/{doctor.id}/slots{query}")
    assert response.status == 200, response
    return response.json()["slots"]


def test_a_lunch_break_on_one_day_takes_its_slots_away_until_removed(admin, client, carol,
                                                                     alice):
    day = slot(2).astimezone(TZ).date()
    before = offered(client, carol, day)
    answer = admin.post_json("/api/admin/time-off", {
        "doctor_id": carol.id, "start": local(slot(2, "12:00")), "end": local(slot(2, "13:00")),
        "reason": "Lunch break"})
    assert answer.status == 201, answer
    body = answer.json()
    assert body["doctor_id"] == carol.id and body["affected"] == [] and body["reason"] == \
        "Lunch break"
    after = offered(client, carol, day)
    gone = [s for s in before if s not in after]
    assert [s[11:16] for s in gone] == ["12:00", "12:30"]
    assert offered(client, carol, day + timedelta(days=1))[6][11:16] == "12:00"  # other days

    patient = client
    patient.api_login(alice.email)
    refused = patient.post_json("/api/appointments", {
        "doctor_id": carol.id, "start": slot(2, "12:30").astimezone(TZ).isoformat()})
    assert refused.status == 400 and "away" in refused.json()["error"]
    assert "Lunch break" in refused.json()["error"]
    assert not Appointment.select().exists()

    listed = admin.get("/api/admin/time-off").json()["time_off"]
    assert [t["id"] for t in listed] == [body["id"]]
    assert admin.request("DELETE", f"/api/admin/time-off/{body['id']}").status == 200
    assert offered(client, carol, day) == before
    assert admin.request("DELETE", f"/api/admin/time-off/{body['id']}").status == 404


def test_a_clinic_holiday_closes_every_doctor_and_lists_the_visits_inside(admin, client, carol,
                                                                          dave, alice, bob):
    kept = appointments.book(alice.id, carol.id, slot(3, "10:00"))
    other = appointments.book(bob.id, dave.id, slot(3, "15:00"))
    day = slot(3).astimezone(TZ).date()
    answer = admin.post_json("/api/admin/time-off", {
        "doctor_id": None, "start": day.isoformat(), "end": day.isoformat(),
        "reason": "Public holiday"})
    assert answer.status == 201, answer
    assert sorted(answer.json()["affected"]) == sorted([kept.id, other.id])
    assert offered(client, carol, day) == [] and offered(client, dave, day) == []
    # Without cancel_affected the visits stay for the desk to phone.
    assert Appointment.get_by_id(kept.id).status == "booked"
    moved = admin.post_json(f"/api/appointments/{other.id}/reschedule",
                            {"start": slot(3, "16:00").astimezone(TZ).isoformat()})
    assert moved.status == 400 and "clinic is closed" in moved.json()["error"]


@pytest.mark.parametrize("body, field", [
    ({"start": "T1", "end": "T2"}, "start"),
    ({"start": "S13:00", "end": "S12:00"}, "end"),
    ({"start": "S12:00", "end": "S12:00"}, "end"),
    ({"doctor_id": 999_999, "start": "S12:00", "end": "S13:00"}, "doctor_id"),
    ({"doctor_id": "carol", "start": "S12:00", "end": "S13:00"}, "doctor_id"),
    ({"start": "S12:00", "end": "S13:00", "cancel_affected": "yes"}, "cancel_affected"),
    ({"start": "S12:00", "end": "S13:00", "cancel_affected": True}, "reason"),
    ({"start": "S12:00", "end": "S13:00", "reason": "x" * 201}, "reason"),
])
def test_bad_time_off_is_refused_with_the_field_and_nothing_written(admin, carol, body, field):
    body = {k: (local(slot(2, v[1:])) if isinstance(v, str) and v.startswith("S") else v)
            for k, v in body.items()}
    body.setdefault("doctor_id", carol.id)
    answer = admin.post_json("/api/admin/time-off", body)
    assert answer.status == 400, answer
    assert field in answer.json()["fields"]
    assert not TimeOff.select().exists()


def test_overlapping_time_off_is_a_conflict(admin, carol, dave):
    first = {"doctor_id": carol.id, "start": local(slot(2, "09:00")),
             "end": local(slot(2, "12:00")), "reason": "Conference"}
    assert admin.post_json("/api/admin/time-off", first).status == 201
    overlapping = {**first, "start": local(slot(2, "11:00")), "end": local(slot(2, "14:00"))}
    answer = admin.post_json("/api/admin/time-off", overlapping)
    assert answer.status == 409 and "overlaps" in answer.json()["error"]
    # Another doctor's time off, and time right after, are fine.
    assert admin.post_json("/api/admin/time-off", {**overlapping, "doctor_id": dave.id}).status \
        == 201
    after = {**first, "start": local(slot(2, "12:00")), "end": local(slot(2, "13:00"))}
    assert admin.post_json("/api/admin/time-off", after).status == 201
    assert TimeOff.select().count() == 3


def test_only_admins_enter_time_off(new_client, alice, carol):
    patient = new_client()
    patient.api_login(alice.email)
    body = {"doctor_id": carol.id, "start": local(slot(2, "09:00")),
            "end": local(slot(2, "10:00"))}
    assert patient.post_json("/api/admin/time-off", body).status == 403
    assert patient.get("/api/admin/time-off").status == 403


def test_cancel_affected_tells_each_patient_once_why_with_a_link(admin, carol, alice, bob,
                                                                 delivered, smtp_settings):
    first = appointments.book(alice.id, carol.id, slot(2, "10:00"))
    second = appointments.book(bob.id, carol.id, slot(2, "11:00"))
    outside = appointments.book(alice.id, carol.id, slot(2, "15:00"))
    before = len(delivered())
    answer = admin.post_json("/api/admin/time-off", {
        "doctor_id": carol.id, "start": local(slot(2, "09:00")), "end": local(slot(2, "13:00")),
        "reason": "Dr Clark is ill", "cancel_affected": True})
    assert answer.status == 201, answer
    body = answer.json()
    assert sorted(body["affected"]) == sorted([first.id, second.id])
    task_id = body["cancellation"]["task_id"]
    messages = [m.message for m in delivered()[before:]]
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        "alice@example.com", "bob@example.com"]
    for message in messages:
        text = message.get_body(("plain",)).get_content()
        assert "Dr Clark is ill" in text
        assert f"/patient/doctors/{carol.id}" in text
    assert {a.status for a in Appointment.select().where(
        Appointment.id.in_([first.id, second.id]))} == {"cancelled"}
    assert Appointment.get_by_id(outside.id).status == "booked"
    task = admin.get(f"/api/tasks/{task_id}").json()
    assert task["state"] == "SUCCESS" and task["current"] == task["total"] == 2


def test_a_run_that_stops_half_way_loses_and_repeats_no_notice(app, carol, alice, bob,
                                                               monkeypatch):
    visits = [appointments.book(p.id, carol.id, slot(2, at))
              for p, at in ((alice, "10:00"), (bob, "11:00"), (alice, "12:00"))]
    entry = time_off.add(carol.id, local(slot(2, "09:00")), local(slot(2, "13:00")), "Ill")
    batch = Cancellation.create(reason="Ill", appointment_ids=[v.id for v in visits])
    real = cancellations.notices.cancelled
    calls = []

    def crash_on_second(appointment, why=""):
        calls.append(appointment.id)
        if len(calls) == 2:
            raise RuntimeError("the process died")
        return real(appointment, why=why)

    monkeypatch.setattr(cancellations.notices, "cancelled", crash_on_second)
    with pytest.raises(RuntimeError):
        cancellations.run(batch.id)
    assert Cancellation.get_by_id(batch.id).state == "failed"
    # The first is cancelled with its notice; the second rolled back whole.
    statuses = [Appointment.get_by_id(v.id).status for v in visits]
    assert statuses == ["cancelled", "booked", "booked"]
    monkeypatch.setattr(cancellations.notices, "cancelled", real)
    assert cancellations.run(batch.id) == {"cancelled": 2, "skipped": 1}
    assert cancellations.run(batch.id) == {"cancelled": 0, "skipped": 3}
    notices = Message.select().where(Message.kind == "cancellation")
    assert sorted(m.appointment_id for m in notices) == sorted(v.id for v in visits)
    assert all("Ill" in m.text_body for m in notices)
    assert Cancellation.get_by_id(batch.id).state == "done"
    assert entry.id


def test_the_sweep_runs_again_a_batch_whose_task_was_lost(app, carol, alice, bob, drain):
    visits = [appointments.book(p.id, carol.id, slot(2, at))
              for p, at in ((alice, "10:00"), (bob, "11:00"))]
    drain()  # the confirmations
    started = clock.now()
    batch = cancellations.start([v.id for v in visits], "Dr Clark is ill", now=started)
    # The task is lost before it runs (a kill -9): Huey runs a task at most once.
    lost = huey.dequeue()
    assert lost.name.endswith("cancel_appointments") and huey.dequeue() is None
    assert cancellations.sweep(now=started) == {"resumed": 0}  # not stale yet
    later = started + cancellations.STALE + timedelta(seconds=1)
    assert cancellations.sweep(now=later) == {"resumed": 1}
    drain()
    assert {Appointment.get_by_id(v.id).status for v in visits} == {"cancelled"}
    assert Cancellation.get_by_id(batch.id).state == "done"
    assert cancellations.sweep(now=later) == {"resumed": 0}
    assert Message.select().where(Message.kind == "cancellation").count() == 2
