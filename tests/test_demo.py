"""The demo clinic (clinic/demo.py) reads like a real one: each doctor sees patients who fit
the specialty (children at the paediatrician only), for reasons and with records of that
specialty."""

from datetime import datetime

import time_machine

from clinic import clock, demo
from clinic.models import Appointment, Doctor, Patient, Treatment
from tests.conftest import TZ


def age_on(born, day):
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def test_patients_fit_their_doctors_specialties(app):
    now = datetime(2031, 3, 12, 12, 0, tzinfo=TZ)
    with time_machine.travel(now, tick=False):
        demo.create(now=now)
    specialty = {d.user_id: d.specialization for d in Doctor.select()}
    born = {p.user_id: p.date_of_birth for p in Patient.select()}
    records = {t.appointment_id: t for t in Treatment.select()}
    seen = {name: 0 for name in demo.VISITS}
    for visit in Appointment.select():
        kind = specialty[visit.doctor_id]
        seen[kind] += 1
        age = age_on(born[visit.patient_id], clock.local(visit.start).date())
        if kind == demo.CHILDREN:
            assert age < 18, (kind, age, visit.reason)
        else:
            assert age >= 18, (kind, age, visit.reason)
        reasons = {v[0] for v in demo.VISITS[kind]}
        assert visit.reason in reasons, (kind, visit.reason)
        if visit.id in records:
            diagnoses = {v[3] for v in demo.VISITS[kind]}
            assert records[visit.id].diagnosis in diagnoses, (kind, records[visit.id].diagnosis)
    assert all(count > 10 for count in seen.values()), seen
    assert not Appointment.select().where(
        Appointment.doctor.in_([d for d, k in specialty.items() if k == demo.CHILDREN]),
        Appointment.reason == "Back pain").exists()
