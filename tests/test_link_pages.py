"""The pages behind the link in the emails (clinic/views/link.py), through HTTP and without
signing in: the link opens one appointment, cannot be forged or stretched to another one,
expires at the start, and cancels or moves only within the patient's rules."""

import base64
import json
from datetime import timedelta

import pytest
import time_machine

from clinic import appointments, clock, signing
from clinic.mail import notices
from clinic.models import Appointment, Message
from tests.conftest import slot


def book(patient, doctor, start, reason=""):
    return appointments.book(patient.id, doctor.id, start, reason)


def status(appointment):
    return Appointment.get_by_id(appointment.id).status


def forged(token, **changes):
    """The token with its payload changed and the old signature kept."""
    body, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(changes)
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + mac


@pytest.fixture
def visit(alice, carol):
    return book(alice, carol, slot(2, "10:00"), "Private reason")


@pytest.fixture
def path(visit):
    return notices.link_path(visit)


def test_the_link_opens_the_appointment_without_signing_in(client, visit, path):
    response = client.get(path)
    assert response.status == 200
    assert "clinic_session" not in client.cookies
    page = response.text
    local = clock.local(visit.start)
    assert f"{local:%a %d %b %Y}, 10:00–10:30" in page
    assert "Dr Carol Clark (Cardiology)" in page and "1 Test Street, Berlin" in page
    assert "Private reason" not in page
    assert f'action="{path}/confirm"' in page
    assert f'href="{path}/cancel"' in page and f'href="{path}/reschedule"' in page
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # the signature
    lambda token: token.split(".")[0],  # no signature at all
    lambda token: "not-a-token",
    lambda token: forged(token, exp=2_000_000_000),  # a later expiry
])
def test_a_tampered_link_is_refused(client, visit, path, tamper):
    token = path.removeprefix("/visit/")
    bad = f"/visit/{tamper(token)}"
    for url in (bad, f"{bad}/cancel", f"{bad}/reschedule"):
        response = client.get(url)
        assert response.status == 404, url
        assert "This link is not valid" in response.text
        assert "Dr Carol Clark" not in response.text
    client.get("/login")
    assert client.post(f"{bad}/cancel").status == 404
    assert status(visit) == "booked"


def test_a_link_cannot_be_turned_to_another_appointment(client, visit, path, bob, carol):
    bobs = book(bob, carol, slot(2, "11:00"))
    token = path.removeprefix("/visit/")
    for other in (forged(token, a=bobs.id), forged(token, a=bobs.id, p=bob.id)):
        assert client.get(f"/visit/{other}").status == 404
        client.get("/login")
        assert client.post(f"/visit/{other}/cancel").status == 404
    # A link signed for another purpose (a review, say) opens nothing here.
    review = signing.sign("review", {"a": bobs.id, "p": bob.id})
    assert client.get(f"/visit/{review}").status == 404
    assert status(bobs) == "booked"
    # Alice's own link acts on hers only.
    client.get(path)
    assert client.post(f"{path}/cancel").status == 303
    assert (status(visit), status(bobs)) == ("cancelled", "booked")


def test_the_link_expires_when_the_appointment_starts(client, visit, path):
    with time_machine.travel(visit.start - timedelta(minutes=1), tick=False):
        assert client.get(path).status == 200
    with time_machine.travel(visit.start + timedelta(seconds=1), tick=False):
        response = client.get(path)
        assert response.status == 410
        assert "This link has expired" in response.text
        assert "Dr Carol Clark" not in response.text
        assert client.post(f"{path}/confirm").status == 410


def test_confirming_attendance(client, visit, path):
    client.get(path)
    response = client.post(f"{path}/confirm")
    assert response.status == 303 and response.location.endswith(path)
    assert status(visit) == "confirmed"
    page = client.get(path).text
    assert "status-confirmed" in page and f'action="{path}/confirm"' not in page


def test_cancelling_through_the_link(client, visit, path):
    page = client.get(f"{path}/cancel").text
    assert "Cancel this appointment?" in page
    response = client.post(f"{path}/cancel")
    assert response.status == 303 and response.location.endswith(path)
    assert status(visit) == "cancelled"
    assert Message.get(Message.kind == "cancellation").recipient == "alice@example.com"
    page = client.get(path, follow=True).text
    assert "is cancelled" in page and "status-cancelled" in page
    assert f'href="{path}/cancel"' not in page


def test_the_link_keeps_the_patients_cutoff(client, visit, path):
    with time_machine.travel(visit.start - timedelta(minutes=119), tick=False):
        page = client.get(path).text
        assert f'href="{path}/cancel"' not in page
        assert "Online changes close 2 hours before the start" in page
        response = client.get(f"{path}/cancel")
        assert response.status == 409 and "please call the clinic" in response.text.lower()
        response = client.post(f"{path}/cancel")
        assert response.status == 409
        assert client.get(f"{path}/reschedule").status == 409
        assert client.post(f"{path}/confirm").status == 303  # confirming is still welcome
    assert status(visit) == "confirmed"


def test_a_post_without_the_form_token_is_refused(client, visit, path):
    client.get(path)
    assert client.post(f"{path}/cancel", csrf=False).status == 403
    assert status(visit) == "booked"


def test_moving_through_the_link(client, visit, path, bob, carol):
    taken = book(bob, carol, slot(3, "09:30"))
    day = clock.local(slot(3, "09:00")).date()
    page = client.get(f"{path}/reschedule?date={day.isoformat()}").text
    assert f'value="{clock.local(slot(3, "09:00")).isoformat()}"' in page
    assert f'value="{clock.local(taken.start).isoformat()}"' not in page
    new_start = slot(3, "14:00")
    response = client.post(f"{path}/reschedule", {"start": clock.local(new_start).isoformat(),
                                                   "date": day.isoformat()})
    assert response.status == 303
    moved = Appointment.get_by_id(visit.id)
    assert (moved.start, moved.status) == (new_start, "booked")
    assert response.location.endswith(notices.link_path(moved))  # valid until the new start
    assert Message.get(Message.kind == "rescheduled").key.startswith(
        f"rescheduled:{visit.id}:{notices.stamp(new_start)}:")
    assert "moved to" in client.get(response.location, follow=True).text


def test_moving_to_a_taken_time_says_so(client, visit, path, bob, carol):
    taken = book(bob, carol, slot(3, "09:30"))
    client.get(f"{path}/reschedule")
    response = client.post(f"{path}/reschedule", {"start": clock.local(taken.start).isoformat(),
                                                   "date": clock.local(taken.start).date()})
    assert response.status == 409
    assert "taken" in response.text
    assert Appointment.get_by_id(visit.id).start == visit.start


def test_a_bad_day_in_the_time_picker_is_a_form_error(client, path):
    response = client.get(f"{path}/reschedule?date=someday")
    assert response.status == 400
    assert "Enter the date as YYYY-MM-DD." in response.text
