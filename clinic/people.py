"""Patients, doctors and admins: creating them, the rules on what they may hold, and who may
see a patient's records."""

import re
from datetime import date

from peewee import IntegrityError, fn

from clinic import auth, i18n
from clinic.db import database
from clinic.errors import Forbidden, Invalid, NoAccess, NotFound, check
from clinic.i18n import _
from clinic.models import WEEKDAYS, Appointment, Doctor, Patient, User

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
SLOT_CHOICES = (10, 15, 20, 30, 45, 60, 90)


def _check_identity(errors, email, name, password, password_required=True):
    email = auth.normalize_email(email)
    if problem := email_problem(email):
        errors["email"] = problem
    if not (name or "").strip():
        errors["name"] = _("Enter a name.")
    elif len(name.strip()) > 200:
        errors["name"] = _("The name is too long (200 characters at most).")
    if (password_required or password) and (problem := password_problem(password)):
        errors["password"] = problem
    return email


def email_problem(email):
    """What is wrong with ``email`` (normalised) as a new account's address, or None."""
    if not EMAIL_RE.match(email) or len(email) > 254 or "\r" in email or "\n" in email:
        return _("Enter a valid email address.")
    if User.select().where(User.email == email).exists():
        return _("An account with this email already exists.")
    return None


def password_problem(password):
    """What is wrong with ``password`` as a new password, or None: the rule of registration,
    also for resets and changes."""
    if len(password or "") < auth.MIN_PASSWORD_LENGTH:
        return _("Use at least %(count)d characters.") % {"count": auth.MIN_PASSWORD_LENGTH}
    if len(password) > 1024:
        return _("The password is too long.")  # noqa: S105 (a message)
    return None


E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")


def parse_phone(raw, errors):
    """A phone number in E.164 (+4930123456) once spaces are taken out, or "" for none."""
    phone = re.sub(r"\s+", "", raw or "")
    if phone and not E164_RE.match(phone):
        errors["phone"] = _("Enter the number with its country code, such as +49 30 1234567.")
    return phone


def parse_birth_date(raw, errors):
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        errors["date_of_birth"] = _("Enter the date as YYYY-MM-DD.")
        return None
    if value > date.today() or value.year < 1900:
        errors["date_of_birth"] = _("Enter a date of birth in the past.")
    return value


def parse_language(raw, errors):
    """A language code CLINIC_LANGUAGES offers, from a form or the API; "" stays "" (not
    chosen)."""
    code = (raw or "").strip().lower()
    if code and not i18n.chosen(code):
        errors["language"] = _("Choose one of the languages offered: %(codes)s.") % {
            "codes": ", ".join(i18n.offered())}
    return code


def _create_user(email, name, password, role, language=""):
    try:
        return User.create(email=email, name=name.strip(), role=role,
                           password_hash=auth.hash_password(password), language=language)
    except IntegrityError:
        # Two sign-ups with one email at once: the unique index decided.
        raise Invalid(_("An account with this email already exists."),
                      {"email": _("An account with this email already exists.")}) from None


def register_patient(email, password, name, date_of_birth="", phone="", language=""):
    errors = {}
    email = _check_identity(errors, email, name, password)
    language = parse_language(language, errors)
    dob = parse_birth_date(date_of_birth, errors)
    phone = (phone or "").strip()
    if len(phone) > 40:
        errors["phone"] = _("The phone number is too long.")
    check(errors)
    with database.atomic():
        user = _create_user(email, name, password, "patient", language)
        Patient.create(user=user, date_of_birth=dob, phone=phone)
    return user


def create_admin(email, password, name="Administrator"):
    errors = {}
    email = _check_identity(errors, email, name, password)
    check(errors)
    return _create_user(email, name, password, "admin")


def parse_working_hours(value):
    """Validate ``{"mon": [["09:00","13:00"], ...], ...}``; returns it normalised or raises
    Invalid. Intervals must be ordered, non-empty and not overlap. Text in the admin form's
    format (see working_hours_from_text) is accepted too, so its errors come with the others."""
    if isinstance(value, str):
        return working_hours_from_text(value)
    if not isinstance(value, dict):
        raise Invalid("working_hours must be an object of weekdays",
                      {"working_hours": _("Expected weekdays mon..sun with lists of intervals.")})
    result = {}
    for day, intervals in value.items():
        if day not in WEEKDAYS:
            raise Invalid(f"unknown weekday {day!r}; use mon..sun",
                          {"working_hours": f"Unknown weekday {day!r}; use mon..sun."})
        if not isinstance(intervals, list):
            raise Invalid(f"{day}: expected a list of [start, end] pairs",
                          {"working_hours": f"{day}: expected a list of [start, end] pairs."})
        clean = []
        for interval in intervals:
            ok = (isinstance(interval, list | tuple) and len(interval) == 2
                  and all(isinstance(t, str) and TIME_RE.match(t) for t in interval)
                  and interval[0] < interval[1])
            if not ok:
                raise Invalid(f"{day}: {interval!r} is not a [\"HH:MM\", \"HH:MM\"] interval",
                              {"working_hours": f"{day}: each interval is HH:MM to a later HH:MM."})
            clean.append([interval[0], interval[1]])
        clean.sort()
        for (_first, end), (start, _last) in zip(clean, clean[1:], strict=False):
            if start < end:
                raise Invalid(f"{day}: intervals overlap",
                              {"working_hours": f"{day}: the intervals overlap."})
        if clean:
            result[day] = clean
    return result


def working_hours_from_text(text):
    """The admin form's one-line-per-day format: ``mon 09:00-13:00, 14:00-17:00``."""
    hours = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        day, _space, rest = line.partition(" ")
        day = day.lower()[:3]
        intervals = []
        for part in rest.split(","):
            if part.strip():
                start, _dash, end = part.strip().partition("-")
                intervals.append([start.strip().zfill(5), end.strip().zfill(5)])
        hours.setdefault(day, []).extend(intervals)
    return parse_working_hours(hours)


def working_hours_to_text(hours):
    return "\n".join(
        f"{day} " + ", ".join(f"{a}-{b}" for a, b in hours[day]) for day in WEEKDAYS if day in hours
    )


def _check_practice(errors, specialization, slot_minutes):
    specialization = (specialization or "").strip()
    if not specialization:
        errors["specialization"] = _("Enter a specialization.")
    elif len(specialization) > 100:
        errors["specialization"] = _("The specialization is too long.")
    try:
        slot = int(slot_minutes)
        if not 5 <= slot <= 240:
            raise ValueError
    except (TypeError, ValueError):
        errors["slot_minutes"] = _("Enter a slot length from 5 to 240 minutes.")
        slot = None
    return specialization, slot


def create_doctor(name, email, password, specialization, slot_minutes=30, working_hours=None):
    errors = {}
    email = _check_identity(errors, email, name, password)
    specialization, slot = _check_practice(errors, specialization, slot_minutes)
    try:
        hours = parse_working_hours(working_hours or {})
    except Invalid as exc:
        errors.update(exc.fields)
    check(errors)
    with database.atomic():
        user = _create_user(email, name, password, "doctor")
        Doctor.create(user=user, specialization=specialization, slot_minutes=slot,
                      working_hours=hours)
    return user


def update_doctor(doctor_id, name, specialization, slot_minutes, working_hours, active=True,
                  password=""):
    doctor = Doctor.get_or_none(Doctor.user == doctor_id)
    if doctor is None:
        raise NotFound(_("No such doctor."))
    errors = {}
    if not (name or "").strip():
        errors["name"] = _("Enter a name.")
    specialization, slot = _check_practice(errors, specialization, slot_minutes)
    try:
        hours = parse_working_hours(working_hours or {})
    except Invalid as exc:
        errors.update(exc.fields)
    if password and len(password) < auth.MIN_PASSWORD_LENGTH:
        errors["password"] = password_problem(password)
    check(errors)
    with database.atomic():
        changes = {"name": name.strip(), "active": bool(active)}
        if password:
            changes["password_hash"] = auth.hash_password(password)
        User.update(**changes).where(User.id == doctor_id).execute()
        (Doctor.update(specialization=specialization, slot_minutes=slot, working_hours=hours)
         .where(Doctor.user == doctor_id).execute())
        if not active:
            auth.end_all_sessions(doctor_id)
    return Doctor.get(Doctor.user == doctor_id)


def set_active(user_id, active):
    User.update(active=bool(active)).where(User.id == user_id).execute()
    if not active:
        auth.end_all_sessions(user_id)


def doctors(specialization=None, active_only=True):
    query = (Doctor.select(Doctor, User).join(User)
             .order_by(Doctor.specialization, User.name))
    if active_only:
        query = query.where(User.active)
    if specialization:
        query = query.where(fn.LOWER(Doctor.specialization) == specialization.strip().lower())
    return query


def specializations():
    return [row.specialization for row in
            Doctor.select(Doctor.specialization).join(User).where(User.active)
            .distinct().order_by(Doctor.specialization)]


def is_doctor_of(doctor_id, patient_id):
    """A doctor's patients are those with any appointment with them."""
    return (Appointment.select().where(Appointment.doctor == doctor_id,
                                       Appointment.patient == patient_id).exists())


def patient_for(user, patient_id):
    """The patient ``user`` may see, or NotFound: patients see themselves, doctors their own
    patients, admins everyone. NotFound rather than Forbidden, so ids are not probed."""
    patient = (Patient.select(Patient, User).join(User)
               .where(Patient.user == patient_id).first())
    if patient is None:
        raise NoAccess(_("No such patient."), "patient", patient_id)
    if user.role == "admin" or user.id == patient.user_id:
        return patient
    if user.role == "doctor" and is_doctor_of(user.id, patient.user_id):
        return patient
    raise NoAccess(_("No such patient."), "patient", patient_id)


def require_role(user, *roles):
    if user is None or user.role not in roles:
        raise Forbidden(_("You do not have access to this."))


def search_patients(query="", limit=50, offset=0):
    q = (Patient.select(Patient, User).join(User).order_by(User.name))
    needle = (query or "").strip().lower()
    if needle:
        q = q.where(fn.LOWER(User.name).contains(needle) | fn.LOWER(User.email).contains(needle)
                    | Patient.phone.contains(needle))
    return q.limit(limit).offset(offset)


def get_doctor(doctor_id):
    """The doctor's profile (with ``.user``), active or not, or NotFound."""
    doctor = Doctor.select(Doctor, User).join(User).where(Doctor.user == doctor_id).first()
    if doctor is None:
        raise NotFound(_("No such doctor."))
    return doctor
