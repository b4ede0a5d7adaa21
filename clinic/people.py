"""Patients, doctors and admins: creating them, the rules on what they may hold, and who may
see a patient's records."""

import re
from datetime import date

import phonenumbers
from peewee import IntegrityError, fn

from clinic import auth, details, i18n
from clinic.db import database
from clinic.errors import Forbidden, Invalid, NoAccess, NotFound, check
from clinic.i18n import N_, _
from clinic.models import CHANNEL_CHOICES, WEEKDAYS, Appointment, Doctor, Patient, User

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


PHONE_EXAMPLE = "+49 30 1234567"


def parse_phone(raw, errors, region=None):
    """A phone number in E.164 (+4930123456), or "" for none; what is wrong goes in
    ``errors["phone"]``. The ONE check of every phone the clinic keeps (registration, the
    profile, the front desk, the Clinic page), by libphonenumber: a number in national format
    (030 1234567) is read as one of ``region`` (default: the clinic's, clinic/details.py), so a
    number of another country needs its +code."""
    text = " ".join((raw or "").split())
    if not text:
        return ""
    if region is None:
        region = details.current().phone_region
    example = _example(region)
    if len(text) > 40:
        errors["phone"] = _("The phone number is too long.")
        return text
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        if not text.startswith("+") and not region and any(c.isdigit() for c in text):
            errors["phone"] = (_("Enter the number with its country code, such as %(example)s.")
                               % {"example": example})
        else:
            errors["phone"] = (_("This is not a phone number: enter it with its country code, "
                                 "such as %(example)s.") % {"example": example})
        return text
    if not phonenumbers.is_valid_number(number):
        errors["phone"] = (_("This is not a phone number in use: check the digits and the "
                             "country code (such as %(example)s).") % {"example": example})
        return text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _example(region):
    number = phonenumbers.example_number(region) if region else None
    if number is None:
        return PHONE_EXAMPLE
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# How each channel reads on the forms that choose it, translated where shown.
CHANNEL_WORDS = {"email": N_("By email"), "sms": N_("By SMS (text message)"),
                 "both": N_("By email and SMS")}
assert tuple(CHANNEL_WORDS) == CHANNEL_CHOICES


def parse_channel(patient_id, changes, patient_changes, errors):
    """``{"channel": ...}`` from ``changes`` (the profile form, PATCH /api/me, the desk) for the
    patient ``patient_id``, or {} when it does not change; checks that a channel with SMS has
    a phone, the one in ``patient_changes`` (already parsed) or else the stored one. Problems go
    into ``errors``, beside the field that was sent. ``patient_id`` None: a patient being
    registered."""
    current = patient_id and Patient.get_or_none(Patient.user == patient_id)
    channel = (changes.get("channel") or "").strip().lower() if "channel" in changes else (
        current.channel if current else "email")
    if channel not in CHANNEL_CHOICES:
        errors["channel"] = _("Choose email, sms or both.")
        return {}
    if "phone" in errors:
        return {}
    phone = patient_changes.get("phone", current.phone if current else "")
    if channel != "email" and not phone:
        if "channel" in changes:
            errors["channel"] = _("SMS needs a phone number: enter one with its country "
                                  "code.")
        else:
            errors["phone"] = _("Messages go by SMS: keep a phone number, or choose email "
                                "first.")
    return {"channel": channel} if "channel" in changes else {}


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
    phone = parse_phone(phone, errors)
    check(errors)
    with database.atomic():
        user = _create_user(email, name, password, "patient", language)
        Patient.create(user=user, date_of_birth=dob, phone=phone)
    return user


# A password no one can type: argon2 refuses to verify it. A patient registered at the desk
# sets a real one through "Forgot your password?", once they have an email address.
NO_PASSWORD = "!"  # noqa: S105 (a marker, not a password)


def register_at_desk(name, email="", date_of_birth="", phone="", channel="", language=""):
    """A patient registered by the front desk: a name, and an email, a date of birth, a phone
    number, how their messages go (``channel``, default email) and their language if the
    desk knows them. A patient without an email gets no email at all."""
    errors = {}
    email = auth.normalize_email(email or "")
    if email and (problem := email_problem(email)):
        errors["email"] = problem
    if not (name or "").strip():
        errors["name"] = _("Enter the patient's name.")
    elif len(name.strip()) > 200:
        errors["name"] = _("The name is too long (200 characters at most).")
    dob = parse_birth_date(date_of_birth, errors)
    phone = parse_phone(phone, errors)
    language = parse_language(language, errors)
    chosen = parse_channel(None, {"channel": channel or "email"}, {"phone": phone}, errors)
    check(errors)
    with database.atomic():
        try:
            user = User.create(email=email or None, name=name.strip(), role="patient",
                               password_hash=NO_PASSWORD, language=language)
        except IntegrityError:
            raise Invalid(_("An account with this email already exists."),
                          {"email": _("An account with this email already exists.")}) from None
        Patient.create(user=user, date_of_birth=dob, phone=phone, **chosen)
    return user


def patient_to_book(patient_id):
    """The patient user with this id, for the desk and admins to book for: the person only,
    nothing of their records. NotFound when there is none."""
    user = User.get_or_none(User.id == patient_id, User.role == "patient")
    if user is None:
        raise NotFound(_("No such patient."))
    return user


def patient_contact(patient_id):
    """The Patient profile (with .user) for the desk and admins: how to reach the patient,
    nothing of their records. NotFound when ``patient_id`` is not a patient's."""
    patient = (Patient.select(Patient, User).join(User)
               .where(Patient.user == patient_id, User.role == "patient").first())
    if patient is None:
        raise NotFound(_("No such patient."))
    return patient


# -- staff: the front desk and admins ------------------------------------------------------------

STAFF_ROLES = ("desk", "admin")


def create_staff(name, email, password, role):
    """A desk or admin account. Raises Invalid with the fields at fault."""
    errors = {}
    email = _check_identity(errors, email, name, password)
    if role not in STAFF_ROLES:
        errors["role"] = _("Choose desk or admin.")
    check(errors)
    return _create_user(email, name, password, role)


def staff():
    """Every desk and admin account, active ones first, by name."""
    return (User.select().where(User.role.in_(STAFF_ROLES))
            .order_by(User.active.desc(), User.name, User.id))


def staff_member(user_id):
    user = User.get_or_none(User.id == user_id, User.role.in_(STAFF_ROLES))
    if user is None:
        raise NotFound(_("No such staff member."))
    return user


def reset_staff_password(user_id, password):
    """Give a staff member a new password; their sign-ins end, so the old one stops working
    everywhere at once."""
    user = staff_member(user_id)
    if problem := password_problem(password):
        raise Invalid(problem, {"password": problem})
    with database.atomic():
        User.update(password_hash=auth.hash_password(password)).where(User.id == user.id).execute()
        auth.end_all_sessions(user.id)
    return user


def create_admin(email, password, name="Administrator"):
    errors = {}
    email = _check_identity(errors, email, name, password)
    check(errors)
    return _create_user(email, name, password, "admin")


# Marked for the catalog; translated where shown (templates: _(WEEKDAY_NAMES[day])).
WEEKDAY_NAMES = dict(zip(WEEKDAYS, (N_("Monday"), N_("Tuesday"), N_("Wednesday"),
                                     N_("Thursday"), N_("Friday"), N_("Saturday"),
                                     N_("Sunday")), strict=True))
RANGES_A_DAY = 2  # the admin form's ranges a weekday (morning and afternoon)


def parse_working_hours(value):
    """Validate ``{"mon": [["09:00","13:00"], ...], ...}``; returns it normalised (each day's
    ranges in order) or raises Invalid. Ranges must end after they start and not overlap.
    Every day's problem is told: under "working_hours" (the first) and "working_hours.<day>",
    so the weekly editor says it beside the day."""
    if not isinstance(value, dict):
        raise Invalid("working_hours must be an object of weekdays",
                      {"working_hours": _("Expected weekdays mon..sun with lists of intervals.")})
    result, errors = {}, {}
    for day, intervals in value.items():
        if day not in WEEKDAYS:
            raise Invalid(f"unknown weekday {day!r}; use mon..sun",
                          {"working_hours": _("Unknown weekday %(day)s; use mon..sun.")
                           % {"day": repr(day)}})
        if problem := _day_problem(day, intervals):
            errors[f"working_hours.{day}"] = problem
            continue
        clean = sorted([a, b] for a, b in intervals)
        if clean:
            result[day] = clean
    if errors:
        first = errors[min(errors, key=lambda key: WEEKDAYS.index(key.split(".")[1]))]
        raise Invalid(first, {"working_hours": first, **errors})
    return result


def _day_problem(day, intervals):
    """What is wrong with one weekday's ranges, or None."""
    if not isinstance(intervals, list):
        return _("%(day)s: expected a list of [start, end] pairs.") % {"day": day}
    for interval in intervals:
        if not (isinstance(interval, list | tuple) and len(interval) == 2
                and all(isinstance(t, str) and TIME_RE.match(t) for t in interval)):
            return _("%(day)s: enter each time as HH:MM, such as 09:00.") % {"day": day}
        if interval[0] >= interval[1]:
            return (_("%(day)s: a range must end after it starts (%(start)s to %(end)s).")
                    % {"day": day, "start": interval[0], "end": interval[1]})
    ordered = sorted(tuple(i) for i in intervals)
    for (a, b), (c, d) in zip(ordered, ordered[1:], strict=False):
        if c < b:
            return (_("%(day)s: the ranges %(first)s and %(second)s overlap.")
                    % {"day": day, "first": f"{a}-{b}", "second": f"{c}-{d}"})
    return None


def working_hours_from_form(data):
    """The weekly editor's fields (``hours-mon-1-from``, ``hours-mon-1-to``, ``hours-mon-2-from``
    ...) in the stored shape ``{"mon": [["09:00", "13:00"]]}``, to be checked by
    parse_working_hours. A range with both times empty is left out: a day without one is a day
    off. An old browser's text input may send 9:00 or 09:00:00; both mean 09:00."""
    hours = {}
    for day in WEEKDAYS:
        n = 1
        while n <= RANGES_A_DAY or f"hours-{day}-{n}-from" in data:
            start = _hhmm(data.get(f"hours-{day}-{n}-from"))
            end = _hhmm(data.get(f"hours-{day}-{n}-to"))
            if start or end:
                hours.setdefault(day, []).append([start, end])
            n += 1
    return hours


def working_hours_to_form(hours):
    """The stored hours as the weekly editor's fields (the inverse of working_hours_from_form)."""
    fields = {}
    for day, ranges in (hours or {}).items():
        for n, (start, end) in enumerate(ranges, start=1):
            fields[f"hours-{day}-{n}-from"], fields[f"hours-{day}-{n}-to"] = start, end
    return fields


def _hhmm(raw):
    text = (raw or "").strip()
    match = re.fullmatch(r"(\d{1,2}):(\d\d)(:\d\d)?", text)
    return f"{int(match.group(1)):02d}:{match.group(2)}" if match else text


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
    """Patients whose name, email or phone contains ``query`` (phone: spaces ignored), or
    born on it when it is a date (YYYY-MM-DD)."""
    q = (Patient.select(Patient, User).join(User).order_by(User.name, User.id))
    needle = (query or "").strip().lower()
    if needle:
        match = (fn.LOWER(User.name).contains(needle) | fn.LOWER(User.email).contains(needle))
        if digits := re.sub(r"\s+", "", needle):
            match |= fn.REPLACE(Patient.phone, " ", "").contains(digits)
        # A whole number typed as people say it (030 1234567) is found by its E.164 form.
        problems = {}
        if (phone := parse_phone(needle, problems)) and not problems:
            match |= Patient.phone == phone
        try:
            match |= Patient.date_of_birth == date.fromisoformat(needle)
        except ValueError:
            pass
        q = q.where(match)
    return q.limit(limit).offset(offset)


def get_doctor(doctor_id):
    """The doctor's profile (with ``.user``), active or not, or NotFound."""
    doctor = Doctor.select(Doctor, User).join(User).where(Doctor.user == doctor_id).first()
    if doctor is None:
        raise NotFound(_("No such doctor."))
    return doctor
