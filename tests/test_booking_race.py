"""Races through the real HTTP server: many clients, each a patient with its own connection, send
their booking at the same moment (a barrier releases them together). Exactly one gets the slot;
the others get 409, and the database holds one appointment."""

import threading

import pytest

from clinic.models import Appointment
from tests.conftest import TZ, make_doctor, make_patient, slot


def at_once(clients, bodies):
    """POST each body to /api/appointments from its own client and thread, all released
    together; the response statuses in client order."""
    barrier = threading.Barrier(len(clients))
    statuses = [None] * len(clients)

    def book(i):
        barrier.wait(timeout=30)
        statuses[i] = clients[i].post_json("/api/appointments", bodies[i]).status

    threads = [threading.Thread(target=book, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


@pytest.fixture
def patients(app, new_client):
    """Twelve signed-in API clients, each a different patient."""
    clients = []
    for i in range(12):
        make_patient(f"patient{i}@example.com", f"Patient {i}")
        client = new_client()
        client.api_login(f"patient{i}@example.com")
        clients.append(client)
    return clients


@pytest.mark.parametrize("at", ["10:00", "10:30", "16:30"])
def test_many_patients_racing_for_one_slot_get_one_booking(patients, carol, at):
    start = slot(1, at)
    body = {"doctor_id": carol.id, "start": start.astimezone(TZ).isoformat()}
    statuses = at_once(patients, [body] * len(patients))
    assert sorted(statuses) == [201] + [409] * (len(patients) - 1), statuses
    rows = list(Appointment.select().where(Appointment.doctor == carol.id,
                                           Appointment.start == start))
    assert len(rows) == 1
    winner = patients[statuses.index(201)]
    assert winner.get(f"/api/appointments/{rows[0].id}").status == 200


def test_one_patient_racing_to_book_several_doctors_at_once_gets_at_most_one(app, new_client,
                                                                             alice, carol, dave):
    doctors = [carol, dave] + [make_doctor(f"doc{i}@example.com", f"Dr {i}", "General")
                               for i in range(4)]
    clients = []
    for _ in doctors:
        client = new_client()
        client.api_login(alice.email)  # the same patient on several phones
        clients.append(client)
    start = slot(1, "11:00").astimezone(TZ).isoformat()
    statuses = at_once(clients, [{"doctor_id": d.id, "start": start} for d in doctors])
    assert statuses.count(201) == 1 and statuses.count(409) == len(doctors) - 1, statuses
    assert Appointment.select().where(Appointment.patient == alice.id).count() == 1
