"""Appointments: the booking rules (booking, rescheduling, cancelling, confirming, completing,
no-shows) and who may see which appointment.

A start is bookable when it is in the future, within the booking horizon, on the doctor's slot
grid (clinic/slots.py), free and not in time off. The partial unique index
``appointment_slot_taken`` (doctor, start) over every appointment that is not cancelled settles
races in the database, and on PostgreSQL so does the exclusion constraint
``appointment_no_overlap`` for visits of different starts and lengths (on SQLite the booking's
IMMEDIATE transaction does); the checks here give the clear message before that.
"""

from datetime import datetime, timedelta

from peewee import IntegrityError

from clinic import clock, details, i18n, settings, slots, visit_types, waitlist
from clinic.db import database, locked
from clinic.errors import Conflict, Forbidden, Invalid, NoAccess, NotFound
from clinic.i18n import N_, _
from clinic.mail import notices
from clinic.models import (
    ACTIVE_STATUSES,
    BUSY_STATUSES,
    Appointment,
    Doctor,
    Patient,
    Treatment,
    User,
)

TREATMENT_FIELDS = ("visit_type", "symptoms", "diagnosis", "treatment", "prescription", "notes")
# Marked here, translated where raised: the words of a refused booking.
SLOT_TAKEN = N_("This time was just taken by someone else. Please choose another slot.")
ALREADY_YOURS = N_("You already booked this time: it is in your appointments.")


def _taken(patient_id, doctor_id, start):
    """Why a slot cannot be booked: the patient's own booking (a second click), or another's."""
    own = Appointment.select().where(
        Appointment.patient == patient_id, Appointment.doctor == doctor_id,
        Appointment.start == start, Appointment.status.in_(ACTIVE_STATUSES))
    return _(ALREADY_YOURS if own.exists() else SLOT_TAKEN)


def parse_start(raw):
    """An ISO 8601 start with an offset (the API) or clinic-local wall time (the forms)."""
    try:
        value = datetime.fromisoformat((raw or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("start must be an ISO 8601 date and time, such as "
                      "2026-03-02T09:30:00+01:00", {"start": _("Choose a valid time.")}) from None
    return clock.to_utc(value)


def _check_bookable(doctor, start, now, exclude=None, patient_id=None, minutes=None):
    if doctor is None or not doctor.user.active:
        raise Invalid(_("This doctor is not taking bookings."),
                      {"doctor_id": _("This doctor is not taking bookings.")})
    if start <= now:
        raise Invalid(_("That time has already passed."),
                      {"start": _("Choose a time in the future.")})
    if start > now + settings.get().booking_horizon:
        raise Invalid(_("That time is too far ahead to book."),
                      {"start": _("Choose a time closer to today.")})
    day = clock.local(start).date()
    if start not in slots.grid(doctor, day, minutes=minutes):
        raise Invalid(_("The doctor does not see patients at that time for a visit this long.")
                      if minutes else _("The doctor does not see patients at that time."),
                      {"start": _("Choose one of the offered times.")})
    end = start + timedelta(minutes=minutes or doctor.slot_minutes)
    away = slots.away(doctor.user_id, start, end)
    if away:
        closed, reason = away[0].doctor_id is None, away[0].reason
        if closed:
            who = (_("The clinic is closed at that time (%(reason)s).") % {"reason": reason}
                   if reason else _("The clinic is closed at that time."))
        else:
            who = (_("The doctor is away at that time (%(reason)s).") % {"reason": reason}
                   if reason else _("The doctor is away at that time."))
        raise Invalid(who + " " + _("Please choose another time."),
                      {"start": _("Choose one of the offered times.")})
    if slots.busy(doctor.user_id, start, end, exclude=exclude):
        raise Conflict(_taken(patient_id, doctor.user_id, start))
    waitlist.check_not_held(doctor.user_id, start, end, patient_id)
    return end


def _check_patient_free(patient_id, start, end, exclude=None):
    clash = Appointment.select().where(
        Appointment.patient == patient_id, Appointment.status.in_(BUSY_STATUSES),
        Appointment.start > start - slots.LONGEST_VISIT, Appointment.start < end,
        Appointment.end > start)
    if exclude is not None:
        clash = clash.where(Appointment.id != exclude)
    if clash.exists():
        raise Conflict(_("You already have an appointment at that time."))


def _doctor(doctor_id):
    try:
        doctor_id = int(doctor_id)
    except (TypeError, ValueError):
        raise Invalid("doctor_id must be a doctor's id",
                      {"doctor_id": _("Choose a doctor.")}) from None
    doctor = locked(Doctor.select(Doctor, User).join(User).where(Doctor.user == doctor_id))
    return doctor.first()


def book(patient_id, doctor_id, start, reason="", now=None, visit_type_id=None):
    """Book ``start`` (an aware datetime) with the doctor for the patient, one slot long or as
    long as the visit type ``visit_type_id`` (clinic/visit_types.py). Raises Invalid for a
    time that is not bookable, Conflict when the slot or the patient is taken."""
    now = now or clock.now()
    reason = (reason or "").strip()
    if len(reason) > 2000:
        raise Invalid(_("The reason is too long."), {"reason": _("Keep it under 2000 characters.")})
    try:
        with database.atomic():
            doctor = _doctor(doctor_id)
            visit_type = doctor and visit_types.offered(doctor.user_id, visit_type_id)
            end = _check_bookable(doctor, start, now, patient_id=patient_id,
                                  minutes=visit_type.minutes if visit_type else None)
            if locked(Patient.select().where(Patient.user == patient_id)).first() is None:
                raise Invalid(_("Only patients can book appointments."))
            _check_patient_free(patient_id, start, end)
            appointment = Appointment.create(
                patient=patient_id, doctor=doctor.user_id, start=start, end=end, reason=reason,
                status="booked", created_at=now, updated_at=now)
            notices.booked(appointment, "booked")
    except IntegrityError:
        raise Conflict(_taken(patient_id, doctor_id, start)) from None
    return appointment


def reschedule(appointment, start, user, now=None):
    """Move an appointment to a new free slot with the same doctor."""
    now = now or clock.now()
    _check_changeable(appointment, user, now)
    try:
        with database.atomic():
            doctor = _doctor(appointment.doctor_id)
            end = _check_bookable(doctor, start, now, exclude=appointment.id,
                                  minutes=slots.moved_minutes(appointment, doctor))
            _check_patient_free(appointment.patient_id, start, end, exclude=appointment.id)
            changed = (Appointment.update(start=start, end=end, status="booked", updated_at=now)
                       .where(Appointment.id == appointment.id,
                              Appointment.status.in_(ACTIVE_STATUSES))
                       .execute())
            if not changed:
                raise Conflict(_("This appointment can no longer be changed."))
            waitlist.slot_freed(appointment.doctor_id, appointment.start, appointment.end, now,
                                freed_by=appointment.id)
            appointment = Appointment.get_by_id(appointment.id)
            notices.booked(appointment, "rescheduled")
    except IntegrityError:
        raise Conflict(_(SLOT_TAKEN)) from None
    return appointment


def status_word(status):
    """An appointment's status as a word in a sentence, in the language in force."""
    words = {"booked": _("booked"), "confirmed": _("confirmed"), "cancelled": _("cancelled"),
             "completed": _("completed"), "no_show": _("no show"), "arrived": _("arrived")}
    return words.get(status, status.replace("_", " "))


def _check_changeable(appointment, user, now):
    if appointment.status not in ACTIVE_STATUSES:
        raise Conflict(_("This appointment is %(status)s and can no longer be changed.")
                       % {"status": status_word(appointment.status)})
    if user is not None and user.role == "patient":
        cutoff = appointment.start - settings.get().cancel_cutoff
        if now > cutoff:
            hours = settings.get().cancel_cutoff.total_seconds() / 3600
            raise Conflict(_("Appointments can be changed online until %(hours)s hours before "
                             "they start.") % {"hours": f"{hours:g}"} + " " + details.call_us())
    elif appointment.start <= now and (user is None or user.role not in ("admin", "desk")):
        raise Conflict(_("This appointment has already started."))


def can_change(appointment, user, now=None):
    try:
        _check_changeable(appointment, user, now or clock.now())
    except Conflict:
        return False
    return True


def cancel(appointment, user, now=None):
    """Cancel a booked or confirmed appointment (patients until the cutoff)."""
    now = now or clock.now()
    _check_changeable(appointment, user, now)
    with database.atomic():
        changed = (Appointment.update(status="cancelled", updated_at=now)
                   .where(Appointment.id == appointment.id,
                          Appointment.status.in_(ACTIVE_STATUSES))
                   .execute())
        if not changed:
            raise Conflict(_("This appointment can no longer be cancelled."))
        appointment = Appointment.get_by_id(appointment.id)
        notices.cancelled(appointment)
        waitlist.slot_freed(appointment.doctor_id, appointment.start, appointment.end, now,
                            freed_by=appointment.id)
    return appointment


def confirm(appointment, now=None):
    now = now or clock.now()
    if appointment.status == "confirmed":
        return appointment
    changed = (Appointment.update(status="confirmed", updated_at=now)
               .where(Appointment.id == appointment.id, Appointment.status == "booked",
                      Appointment.start > now)
               .execute())
    if not changed:
        raise Conflict(_("This appointment can no longer be confirmed."))
    return Appointment.get_by_id(appointment.id)


# A doctor may complete a visit marked as a no-show (by them or by the no-shows job an hour after
# its start) on its day and the next: the patient came, and the notes are written at the end of
# the day. A visit still booked, confirmed or checked in may be completed from its start on.
COMPLETABLE = (*ACTIVE_STATUSES, "arrived", "no_show")
NO_SHOW_COMPLETABLE_DAYS = 2  # the visit's clinic-local day and the next


def _why_not_completable(appointment, now):
    """Why complete() refuses the appointment now (a sentence), or None when it may."""
    if appointment.status not in COMPLETABLE:
        return _("This appointment is %(status)s.") % {"status": status_word(appointment.status)}
    if now < appointment.start:
        return (_("A visit can be completed from its start on: %(start)s.")
                % {"start": i18n.formatted(appointment.start)})
    if appointment.status == "no_show":
        days = (clock.local(now).date() - clock.local(appointment.start).date()).days
        if days >= NO_SHOW_COMPLETABLE_DAYS:
            return _("A visit marked as a no-show can be completed on its day and the next "
                     "only.")
    return None


def check_in(appointment, now=None):
    """The desk checks the patient in on the visit's day: booked or confirmed becomes
    ``arrived``, which keeps the slot taken until the doctor completes the visit."""
    now = now or clock.now()
    if appointment.status == "arrived":
        return appointment
    if clock.local(now).date() != clock.local(appointment.start).date():
        raise Conflict(_("A patient can be checked in on the day of the visit only."))
    changed = (Appointment.update(status="arrived", updated_at=now)
               .where(Appointment.id == appointment.id,
                      Appointment.status.in_(ACTIVE_STATUSES))
               .execute())
    if not changed:
        raise Conflict(_("This appointment is %(status)s and cannot be checked in.")
                       % {"status": status_word(appointment.status)})
    return Appointment.get_by_id(appointment.id)


def complete(appointment, doctor_user, fields, now=None):
    """Record the treatment and complete the visit: the doctor's own, from its start on (one
    marked as a no-show on its day and the next)."""
    now = now or clock.now()
    if appointment.doctor_id != doctor_user.id:
        raise Forbidden(_("Only the appointment's doctor can complete it."))
    if (why := _why_not_completable(appointment, now)) is not None:
        raise Conflict(why)
    values = treatment_values(fields)
    with database.atomic():
        changed = (Appointment.update(status="completed", updated_at=now)
                   .where(Appointment.id == appointment.id,
                          Appointment.status.in_(COMPLETABLE))
                   .execute())
        if not changed:
            raise Conflict(_("This appointment was changed meanwhile; reload the page."))
        Treatment.create(appointment=appointment.id, created_at=now, **values)
    return Appointment.get_by_id(appointment.id)


def treatment_values(fields):
    """The treatment fields of a form or JSON body, stripped and checked; Invalid names each
    field that is wrong."""
    values = {name: str(fields.get(name) or "").strip() for name in TREATMENT_FIELDS}
    errors = {}
    if not values["visit_type"]:
        errors["visit_type"] = _("Enter the type of visit.")
    for name, value in values.items():
        if len(value) > 10_000:
            errors[name] = _("This is too long.")
    if errors:
        raise Invalid(next(iter(errors.values())) if len(errors) == 1
                      else _("Please correct the highlighted fields."), errors)
    return values


def mark_no_show(appointment, user, now=None):
    now = now or clock.now()
    if user.role == "doctor" and appointment.doctor_id != user.id:
        raise Forbidden(_("Only the appointment's doctor can mark it."))
    if appointment.status not in ACTIVE_STATUSES:
        raise Conflict(_("This appointment is %(status)s.")
                       % {"status": status_word(appointment.status)})
    if appointment.start > now:
        raise Conflict(_("A visit can be marked as missed only after it was due to start."))
    changed = (Appointment.update(status="no_show", prior_status=Appointment.status,
                                  updated_at=now)
               .where(Appointment.id == appointment.id,
                      Appointment.status.in_(ACTIVE_STATUSES))
               .execute())
    if not changed:
        raise Conflict(_("This appointment was changed meanwhile; reload the page."))
    return Appointment.get_by_id(appointment.id)


def _why_not_undoable(appointment, now):
    if appointment.status != "no_show":
        return _("This appointment is not marked as a no-show.")
    if clock.local(now).date() != clock.local(appointment.start).date():
        return _("A no-show mark can be undone on the visit's day only.")
    return None


def undo_no_show(appointment, user, now=None):
    """Take back a no-show mark (the doctor's or the no-shows job's) on the visit's day: the
    visit is booked or confirmed again, as it was, and the no-shows job leaves it alone from
    then on (``no_show_undone_at``)."""
    now = now or clock.now()
    if appointment.doctor_id != user.id:
        raise Forbidden(_("Only the appointment's doctor can undo the mark."))
    if (why := _why_not_undoable(appointment, now)) is not None:
        raise Conflict(why)
    back = appointment.prior_status if appointment.prior_status in ACTIVE_STATUSES else "booked"
    changed = (Appointment.update(status=back, prior_status=None, no_show_undone_at=now,
                                  updated_at=now)
               .where(Appointment.id == appointment.id, Appointment.status == "no_show")
               .execute())
    if not changed:
        raise Conflict(_("This appointment was changed meanwhile; reload the page."))
    return Appointment.get_by_id(appointment.id)


def can_undo_no_show(appointment, now=None):
    return _why_not_undoable(appointment, now or clock.now()) is None


def mark_no_shows(now=None):
    """The no-shows job (every 15 minutes): every visit still booked or confirmed longer than
    CLINIC_NO_SHOW_AFTER (1 h) past its start becomes a no-show. One conditional UPDATE, served
    by the (status, start) index: a visit completed or cancelled a moment before is left alone,
    and two runs at once mark each visit once; a visit whose mark its doctor undid is not marked
    again. Returns ``{"marked": n}``."""
    now = now or clock.now()
    marked = (Appointment.update(status="no_show", prior_status=Appointment.status,
                                 updated_at=now)
              .where(Appointment.status.in_(ACTIVE_STATUSES),
                     Appointment.start < now - settings.get().no_show_after,
                     Appointment.no_show_undone_at.is_null())
              .execute())
    return {"marked": marked}


def can_complete(appointment, now=None):
    """Whether complete() would take this appointment now: the pages offer the form only then."""
    return _why_not_completable(appointment, now or clock.now()) is None


def can_mark_no_show(appointment, now=None):
    now = now or clock.now()
    return appointment.status in ACTIVE_STATUSES and appointment.start <= now


def check_changeable(appointment, user, now=None):
    """Raise Conflict saying why ``user`` may no longer cancel or move the appointment, so a page
    can say so before offering a form that would fail."""
    _check_changeable(appointment, user, now or clock.now())


# -- who may see which appointment -----------------------------------------------------------


def visible_to(user):
    """Every appointment ``user`` may see (the desk and admins: all of them)."""
    query = Appointment.with_people()
    if user.role == "patient":
        return query.where(Appointment.patient == user.id)
    if user.role == "doctor":
        return query.where(Appointment.doctor == user.id)
    return query


def appointment_for(user, appointment_id):
    """The appointment with this id if ``user`` may see it, else NotFound (never Forbidden:
    another patient's appointment ids are not to be probed)."""
    try:
        appointment_id = int(appointment_id)
    except (TypeError, ValueError):
        raise NotFound(_("No such appointment.")) from None
    appointment = visible_to(user).where(Appointment.id == appointment_id).first()
    if appointment is None:
        raise NoAccess(_("No such appointment."), "appointment", appointment_id)
    return appointment

