"""Time off: a doctor away (leave, a conference, a lunch break on one day) or the whole clinic
closed (a holiday: no doctor). Approved time off takes its slots off the booking pages and
booking or moving into it is refused (clinic/slots.py, clinic/appointments.py).

An admin adds time off at once; a doctor asks for their own, and it blocks nothing until an admin
approves it. Visits already booked inside are listed as ``affected``: either the desk phones the
patients, or the clinic cancels them and emails each patient why (clinic/cancellations.py).

Times are clinic-local wall times; a date alone means the whole day (from its midnight to the
next).
"""

from datetime import date, datetime, timedelta

from peewee import JOIN

from clinic import cancellations, clock, i18n, slots, waitlist
from clinic.db import database
from clinic.errors import Conflict, Invalid, NotFound, check
from clinic.i18n import N_, _
from clinic.models import ACTIVE_STATUSES, Appointment, Doctor, TimeOff, User

MAX_REASON = 200


def _instant(raw, name, errors, end=False):
    text = str(raw or "").strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return clock.midnight(day + timedelta(days=1) if end else day)
        return clock.to_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        errors[name] = (_("Enter a date and time such as 2026-03-03T12:00 (clinic time), or a "
                        "date for the whole day."))
        return None


def parse(doctor_id, start, end, reason):
    """``(doctor_id, start, end, reason)`` checked: a doctor who exists (None: the whole clinic),
    a range that is not reversed nor longer than a year. Invalid naming the fields otherwise."""
    errors = {}
    if doctor_id in ("", None):
        doctor_id = None
    else:
        if isinstance(doctor_id, str) and doctor_id.strip().isdigit() \
                and len(doctor_id.strip()) <= 18:
            doctor_id = int(doctor_id.strip())
        if isinstance(doctor_id, bool) or not isinstance(doctor_id, int) \
                or Doctor.get_or_none(Doctor.user == doctor_id) is None:
            errors["doctor_id"] = _("Choose a doctor, or none for the whole clinic.")
    start = _instant(start, "start", errors)
    end = _instant(end, "end", errors, end=True)
    if start and end and end <= start:
        errors["end"] = _("The end must come after the start.")
    elif start and end and end - start > slots.LONGEST_TIME_OFF:
        errors["end"] = _("Enter at most a year at a time.")
    reason = " ".join(str(reason or "").split())
    if len(reason) > MAX_REASON:
        errors["reason"] = (_("Keep the reason under %(count)s characters.")
                            % {"count": MAX_REASON})
    check(errors)
    return doctor_id, start, end, reason


def _check_free(doctor_id, start, end, exclude=None):
    """Conflict if approved time off of the same kind (this doctor's, or the clinic's) overlaps."""
    query = TimeOff.select().where(TimeOff.status == "approved", TimeOff.start < end,
                                   TimeOff.end > start)
    query = query.where(TimeOff.doctor.is_null() if doctor_id is None
                        else TimeOff.doctor == doctor_id)
    if exclude is not None:
        query = query.where(TimeOff.id != exclude)
    clash = query.first()
    if clash is not None:
        raise Conflict(_("This overlaps time off already entered (%(other)s): change or remove "
                         "that one instead.") % {"other": describe(clash)},
                       {"start": _("Overlaps other time off.")})


def affected(time_off):
    """The visits still booked inside the time off, earliest first (Appointment.with_people())."""
    query = (Appointment.with_people()
             .where(Appointment.status.in_(ACTIVE_STATUSES), Appointment.start < time_off.end,
                    Appointment.end > time_off.start,
                    Appointment.start > time_off.start - slots.LONGEST_VISIT)
             .order_by(Appointment.start))
    if time_off.doctor_id is not None:
        query = query.where(Appointment.doctor == time_off.doctor_id)
    return query


def add(doctor_id, start, end, reason, user=None, cancel_affected=False, now=None):
    """Enter approved time off; returns it. With ``cancel_affected`` the visits inside are
    cancelled in the background and each patient is told why (``time_off.cancellation``)."""
    doctor_id, start, end, reason = parse(doctor_id, start, end, reason)
    if cancel_affected and not reason:
        raise Invalid(_("Say why: the patients whose visits are cancelled are told."),
                      {"reason": _("Enter the reason the patients are told.")})
    with database.atomic():
        _check_free(doctor_id, start, end)
        time_off = TimeOff.create(doctor=doctor_id, start=start, end=end, reason=reason,
                                  status="approved", requested_by=user,
                                  created_at=now or clock.now())
    # The visits inside as they were found, before any cancelling: the answer lists them.
    found = [a.id for a in affected(time_off)]
    if cancel_affected:
        cancel_visits(time_off, user)
    time_off = get(time_off.id)
    time_off.affected_ids = found
    return time_off


def cancel_visits(time_off, user=None):
    """Cancel the visits still booked inside approved time off and tell the patients why."""
    if time_off.status != "approved":
        raise Conflict(_("Only approved time off cancels visits."))
    ids = [a.id for a in affected(time_off)]
    # Marked, not translated: each patient's email translates it (the "translated" filter).
    batch = cancellations.start(ids, time_off.reason or N_("the doctor is away"), user=user)
    TimeOff.update(cancellation=batch.id).where(TimeOff.id == time_off.id).execute()
    return batch


def request(doctor_user, start, end, reason, now=None):
    """A doctor asks for time off; it blocks nothing until an admin approves it."""
    doctor_id, start, end, reason = parse(doctor_user.id, start, end, reason)
    with database.atomic():
        _check_free(doctor_id, start, end)
        return TimeOff.create(doctor=doctor_id, start=start, end=end, reason=reason,
                              status="requested", requested_by=doctor_user,
                              created_at=now or clock.now())


def decide(time_off_id, approve, user=None, cancel_affected=False):
    """An admin approves or declines a doctor's request; returns it."""
    time_off = get(time_off_id)
    if time_off.status != "requested":
        raise Conflict(_("This request was approved already.") if time_off.status == "approved"
                       else _("This request was declined already.")
                       if time_off.status == "declined"
                       else _("This request was %(status)s already.")
                       % {"status": time_off.status})
    with database.atomic():
        if approve:
            _check_free(time_off.doctor_id, time_off.start, time_off.end, exclude=time_off.id)
        changed = (TimeOff.update(status="approved" if approve else "declined")
                   .where(TimeOff.id == time_off.id, TimeOff.status == "requested").execute())
    if not changed:
        raise Conflict(_("This request was decided meanwhile."))
    time_off = get(time_off.id)
    if approve and cancel_affected:
        cancel_visits(time_off, user)
    return get(time_off.id)


def remove(time_off_id, now=None):
    """Delete time off: its slots are offered again, first to the patients on the doctor's
    waitlist (every doctor's, for a closure of the whole clinic), in the same transaction.
    Returns the removed row (unsaved)."""
    time_off = get(time_off_id)
    with database.atomic():
        TimeOff.delete().where(TimeOff.id == time_off.id).execute()
        if time_off.status == "approved":  # a request still open blocked nothing
            doctor_ids = ([time_off.doctor_id] if time_off.doctor_id is not None else
                          [d.user_id for d in Doctor.select(Doctor.user)])
            for doctor_id in doctor_ids:
                waitlist.slot_freed(doctor_id, time_off.start, time_off.end, now)
    return time_off


def get(time_off_id):
    try:
        time_off_id = int(time_off_id)
    except (TypeError, ValueError):
        raise NotFound(_("No such time off.")) from None
    time_off = (TimeOff.select(TimeOff, User).join(User, on=(TimeOff.doctor == User.id),
                                                    join_type=JOIN.LEFT_OUTER, attr="doctor_user")
                .where(TimeOff.id == time_off_id).first())
    if time_off is None:
        raise NotFound(_("No such time off."))
    return time_off


def listing(status=None, doctor_id=None, upcoming_from=None):
    """Time off, earliest first, with ``.doctor_user`` (None for the clinic's closures)."""
    query = (TimeOff.select(TimeOff, User)
             .join(User, on=(TimeOff.doctor == User.id), join_type=JOIN.LEFT_OUTER,
                   attr="doctor_user")
             .order_by(TimeOff.start, TimeOff.id))
    if status:
        query = query.where(TimeOff.status == status)
    if doctor_id is not None:
        query = query.where(TimeOff.doctor == doctor_id)
    if upcoming_from is not None:
        query = query.where(TimeOff.end > upcoming_from)
    return query


def describe(time_off):
    who = _("the whole clinic") if time_off.doctor_id is None else _("the doctor")
    text = (_("%(who)s, %(start)s to %(end)s")
            % {"who": who, "start": i18n.formatted(time_off.start),
               "end": i18n.formatted(time_off.end)})
    return text + (f": {time_off.reason}" if time_off.reason else "")


def as_dict(time_off, with_affected=True):
    data = {"id": time_off.id, "doctor_id": time_off.doctor_id,
            "start": clock.local(time_off.start).isoformat(),
            "end": clock.local(time_off.end).isoformat(), "reason": time_off.reason,
            "status": time_off.status, "cancellation_id": time_off.cancellation_id}
    if with_affected:
        data["affected"] = getattr(time_off, "affected_ids", None) or [
            a.id for a in affected(time_off)]
    return data
