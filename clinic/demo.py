"""A living demo clinic for an empty database: an admin, doctors with working hours, patients,
past visits with treatments, and appointments today and in the coming days.

The calendar has two visit types, a clinic holiday and a doctor's request for time off. Its
sign-ins are fixed: admin@demo.clinic, desk@demo.clinic (the front desk), doctor@demo.clinic
and patient@demo.clinic, all with the password demo1234. The demo patient has a history of
completed visits with the demo doctor, and waits on the cardiologist's waitlist for a time in
the coming week.
"""

import random
from datetime import timedelta

from clinic import appointments, auth, clock, slots
from clinic.db import database
from clinic.models import (
    Appointment,
    Doctor,
    Patient,
    TimeOff,
    Treatment,
    User,
    VisitType,
    VisitTypeDoctor,
    WaitlistEntry,
)

PASSWORD = "demo1234"
ADMIN = "admin@demo.clinic"
DOCTOR = "doctor@demo.clinic"
PATIENT = "patient@demo.clinic"
DESK = "desk@demo.clinic"

WEEKDAYS_9_TO_5 = {day: [["09:00", "12:30"], ["13:30", "17:00"]]
                   for day in ("mon", "tue", "wed", "thu", "fri")}

DOCTORS = [
    (DOCTOR, "Dr Maria Keller", "General practice", 20, WEEKDAYS_9_TO_5),
    ("cardio@demo.clinic", "Dr Jonas Weber", "Cardiology", 30,
     {day: [["08:00", "14:00"]] for day in ("mon", "tue", "wed", "thu")}),
    ("derma@demo.clinic", "Dr Aylin Demir", "Dermatology", 15,
     {**WEEKDAYS_9_TO_5, "sat": [["09:00", "13:00"]]}),
    ("peds@demo.clinic", "Dr Lucas Novak", "Paediatrics", 30,
     {day: [["10:00", "18:00"]] for day in ("mon", "wed", "fri", "sat")}),
]

FIRST = ["Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jan",
         "Katja", "Leon", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sami", "Tara", "Umut"]
LAST = ["Schmidt", "Müller", "Fischer", "Yilmaz", "Wagner", "Becker", "Hoffmann", "Kowalski",
        "Rossi", "Nguyen", "Richter", "Klein"]

# What each specialty sees: (reason for the visit, visit type, symptoms, diagnosis, treatment,
# prescription, notes). Patients fit their doctors: children at the paediatrician, adults
# everywhere else.
VISITS = {
    "General practice": [
        ("Tiredness", "Check-up", "Tiredness", "Iron deficiency", "Blood test, diet advice",
         "Iron 100 mg daily", "Recheck in 3 months"),
        ("Cough", "Consultation", "Cough for two weeks", "Acute bronchitis", "Inhalation",
         "Ambroxol 30 mg", "Come back if fever"),
        ("Back pain", "Consultation", "Low back pain after lifting", "Lumbar strain",
         "Exercises shown", "Ibuprofen 400 mg as needed", "Keep moving; back if no better"),
        ("Vaccination", "Vaccination", "", "Routine immunisation", "Influenza vaccine given", "",
         ""),
        ("Prescription renewal", "Follow-up", "", "Hypothyroidism, stable", "Renewed",
         "Levothyroxine 75 µg", "TSH in 6 months"),
    ],
    "Cardiology": [
        ("Blood pressure", "Follow-up", "Blood pressure review", "Essential hypertension",
         "Medication adjusted", "Ramipril 5 mg", "Home readings twice a day"),
        ("Palpitations", "Consultation", "Racing heart at night", "Benign ectopic beats",
         "ECG and reassurance", "", "24 h ECG if it persists"),
        ("Chest pain", "Consultation", "Chest tightness when climbing stairs", "Stable angina",
         "Stress test booked", "Nitroglycerin spray", "Call 112 if pain at rest"),
    ],
    "Dermatology": [
        ("Skin rash", "Consultation", "Itchy rash on forearm", "Contact dermatitis",
         "Topical steroid", "Hydrocortisone 1% cream", "Avoid the new detergent"),
        ("Mole check", "Check-up", "Changing mole on the back", "Benign naevus",
         "Dermatoscopy", "", "Photograph again in a year"),
        ("Acne", "Follow-up", "Spots on the face", "Acne vulgaris", "Skin care advice",
         "Adapalene gel", "Review in 8 weeks"),
    ],
    "Paediatrics": [
        ("Check-up", "Check-up", "", "Healthy development", "Growth and hearing checked", "",
         "Next check-up in a year"),
        ("Fever", "Consultation", "Fever and sore ears for two days", "Otitis media",
         "Ear examined", "Paracetamol syrup as needed", "Back if not better in 3 days"),
        ("Vaccination", "Vaccination", "", "Routine immunisation", "MMR vaccine given", "",
         "Next dose as in the vaccination book"),
    ],
}
CHILDREN = "Paediatrics"  # the one specialty for patients under 18, and only for them


def is_empty():
    return not User.select().exists()


def has_demo_accounts():
    return User.select().where(User.email.in_([ADMIN, DOCTOR, PATIENT])).count() == 3


def _user(email, name, role, password_hash):
    return User.create(email=email, name=name, role=role, password_hash=password_hash)


def create(now=None, patients=40, seed=7, progress=None):
    """Fill the (empty) database; returns counts. ``progress(done, total, what)`` is told how
    far it got."""
    now = now or clock.now()
    rng = random.Random(seed)
    progress = progress or (lambda done, total, what: None)
    password_hash = auth.hash_password(PASSWORD)  # one hash for all demo accounts: quick
    today = clock.local(now).date()
    counts = {"doctors": 0, "patients": 0, "appointments": 0, "treatments": 0, "waitlist": 0}
    steps = 3
    with database.atomic():
        _user(ADMIN, "Alex Admin", "admin", password_hash)
        _user(DESK, "Dana Desk", "desk", password_hash)
        doctors = []
        for email, name, specialization, slot, hours in DOCTORS:
            user = _user(email, name, "doctor", password_hash)
            doctors.append(Doctor.create(user=user, specialization=specialization,
                                         slot_minutes=slot, working_hours=hours))
        counts["doctors"] = len(doctors)
        progress(1, steps, "doctors")

        people = [_user(PATIENT, "Paula Patient", "patient", password_hash)]
        Patient.create(user=people[0], phone="+49 30 555 0100",
                       date_of_birth=today.replace(year=today.year - 38, day=1))
        children, adults = [], []
        for i in range(patients - 1):
            name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}"
            user = _user(f"patient{i + 1}@demo.clinic", name, "patient", password_hash)
            age = rng.randint(1, 16) if i % 4 == 3 else rng.randint(18, 85)  # a quarter children
            Patient.create(user=user, phone=f"+49 30 555 {1000 + i}",
                           date_of_birth=today.replace(year=today.year - age,
                                                       day=rng.randint(1, 28)))
            people.append(user)
            (children if age < 18 else adults).append(user)
        counts["patients"] = len(people)
        progress(2, steps, "patients")

        taken = set()
        busy_patients = set()

        def add(doctor, patient, start, status, visit):
            key = (doctor.user_id, start)
            if key in taken or (patient.id, start) in busy_patients:
                return False
            taken.add(key)
            busy_patients.add((patient.id, start))
            end = start + timedelta(minutes=doctor.slot_minutes)
            reason, *record = visit
            appointment = Appointment.create(
                patient=patient, doctor=doctor.user_id, start=start, end=end,
                reason=reason, status=status, created_at=start - timedelta(days=7),
                updated_at=start)
            counts["appointments"] += 1
            if status == "completed":
                fields = dict(zip(appointments.TREATMENT_FIELDS, record, strict=True))
                Treatment.create(appointment=appointment, created_at=end, **fields)
                counts["treatments"] += 1
            return True

        # The demo patient's own history with the demo doctor: a visit every two months.
        main_doctor = doctors[0]
        for months_ago in range(1, 7):
            day = today - timedelta(days=61 * months_ago)
            while not slots.grid(main_doctor, day):  # the nearest working day before
                day -= timedelta(days=1)
            starts = slots.grid(main_doctor, day)
            usual = VISITS[main_doctor.specialization]
            add(main_doctor, people[0], starts[len(starts) // 3], "completed",
                usual[months_ago % len(usual)])

        # Ninety days of past visits, and two weeks ahead, across all doctors.
        for offset in range(-90, 15):
            day = today + timedelta(days=offset)
            for doctor in doctors:
                for start in slots.grid(doctor, day):
                    if rng.random() > (0.45 if offset <= 0 else 0.3):
                        continue
                    pool = children if doctor.specialization == CHILDREN else adults
                    if not pool:  # a tiny demo may have no child (or no adult) to book
                        continue
                    patient = rng.choice(pool)
                    visit = rng.choice(VISITS[doctor.specialization])
                    if start + timedelta(minutes=doctor.slot_minutes) <= now:
                        status = rng.choices(["completed", "no_show", "cancelled"],
                                             weights=[85, 6, 9])[0]
                    else:
                        status = rng.choices(["booked", "confirmed", "cancelled"], [70, 22, 8])[0]
                    add(doctor, patient, start, status, visit)

        # The demo patient's next visits: one tomorrow-ish with the demo doctor.
        for offset in range(1, 8):
            free = slots.free_slots(main_doctor, today + timedelta(days=offset), now=now)
            if free and add(main_doctor, people[0], free[len(free) // 2], "booked",
                            VISITS[main_doctor.specialization][0]):
                break

        # The demo patient waits for the cardiologist in the coming week: a cancellation there
        # is offered to her (clinic/waitlist.py).
        WaitlistEntry.create(patient=people[0], doctor=doctors[1].user_id, from_day=today,
                             to_day=today + timedelta(days=7), created_at=now, updated_at=now)
        counts["waitlist"] = 1
        progress(3, steps, "appointments")
        _calendar(doctors, today, now, counts)
    return counts


def _calendar(doctors, today, now, counts):
    """Two visit types, a clinic holiday three weeks ahead (past the booked fortnight, so it
    cancels nothing) and the demo doctor's request for a day off, waiting for the admin."""
    main, cardio = doctors[0].user_id, doctors[1].user_id
    first = VisitType.create(name="First consultation", minutes=60, created_at=now)
    short = VisitType.create(name="Vaccination", minutes=10, created_at=now)
    VisitTypeDoctor.insert_many(
        [{"visit_type": first.id, "doctor": main}, {"visit_type": first.id, "doctor": cardio},
         {"visit_type": short.id, "doctor": main}]).execute()
    holiday = today + timedelta(days=21)
    TimeOff.create(doctor=None, start=clock.midnight(holiday),
                   end=clock.midnight(holiday + timedelta(days=1)), reason="Clinic holiday",
                   status="approved", created_at=now)
    day_off = today + timedelta(days=28)
    TimeOff.create(doctor=main, start=clock.midnight(day_off),
                   end=clock.midnight(day_off + timedelta(days=1)), reason="Training course",
                   status="requested", requested_by=main, created_at=now)
    counts.update(visit_types=2, time_off=2)
