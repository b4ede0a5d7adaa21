"""Free slots: a doctor's slot grid on a clinic-local day, and which of its starts a patient may
book now (in the future, within the booking horizon, not taken, not in time off), for a visit
of one slot or of a visit type's length.

Booking itself (clinic/appointments.py) checks a start against the same grid and the same busy
times, inside the booking transaction.
"""

from datetime import UTC, datetime, time, timedelta

from clinic import clock, settings, waitlist
from clinic.errors import NotFound
from clinic.models import WEEKDAYS, Appointment, Doctor, TimeOff, User

# No visit is this long: an overlap search starts this far before the time asked about, so the
# (doctor, start) / (patient, start) index reads a day of rows, not the whole history.
LONGEST_VISIT = timedelta(days=1)
# Nor is any time off longer than this (clinic/time_off.py refuses it): the same bound for the
# (doctor, start) index when looking for time off over a day.
LONGEST_TIME_OFF = timedelta(days=366)


def _wall_to_utc(day, hhmm, tz):
    """Clinic-local wall time on ``day`` as a UTC instant, or None when that wall time does not
    exist (the hour skipped when clocks go forward). An hour that happens twice (clocks go back)
    means its first occurrence."""
    hour, minute = map(int, hhmm.split(":")) if isinstance(hhmm, str) else (hhmm.hour,
                                                                             hhmm.minute)
    local = datetime.combine(day, time(hour, minute), tzinfo=tz)
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


def grid(doctor, day, tz=None, minutes=None):
    """Every slot start (UTC) of ``doctor``'s working hours on the clinic-local ``day`` where a
    visit of ``minutes`` (default: the doctor's slot length) fits before the hours end. Starts
    are always on the doctor's slot grid."""
    tz = tz or clock.zone()
    step = timedelta(minutes=doctor.slot_minutes)
    length = timedelta(minutes=minutes) if minutes else step
    starts = []
    for start_text, end_text in doctor.working_hours.get(WEEKDAYS[day.weekday()], []):
        start = datetime.combine(day, time.fromisoformat(start_text))
        end = datetime.combine(day, time.fromisoformat(end_text))
        while start + length <= end:
            instant = _wall_to_utc(day, start.time(), tz)
            if instant is not None:
                starts.append(instant)
            start += step
    return sorted(set(starts))


def moved_minutes(appointment, doctor):
    """The length a move of ``appointment`` keeps, for free_slots(minutes=) and booking: None
    for one of the doctor's slots, else its own length (a visit type's)."""
    minutes = int((appointment.end - appointment.start).total_seconds() // 60)
    return None if minutes == doctor.slot_minutes else minutes


def busy(doctor_id, start, end, exclude=None):
    """(start, end) of the doctor's appointments (not cancelled) that overlap [start, end)."""
    query = Appointment.select(Appointment.start, Appointment.end).where(
        Appointment.doctor == doctor_id, Appointment.status != "cancelled",
        Appointment.start > start - LONGEST_VISIT, Appointment.start < end,
        Appointment.end > start)
    if exclude is not None:
        query = query.where(Appointment.id != exclude)
    return [(row.start, row.end) for row in query]


def away(doctor_id, start, end):
    """The approved time off (the doctor's own and the clinic's closures) that overlaps
    [start, end), as TimeOff rows (start, end, reason, doctor_id), earliest first."""
    def overlapping(who):
        # One doctor's (or the clinic's) rows through the (doctor, start) index: a year back at
        # most, as no time off is longer.
        return list(TimeOff.select(TimeOff.start, TimeOff.end, TimeOff.reason, TimeOff.doctor)
                    .where(who, TimeOff.start < end, TimeOff.start > start - LONGEST_TIME_OFF,
                           TimeOff.end > start, TimeOff.status == "approved"))
    rows = overlapping(TimeOff.doctor == doctor_id) + overlapping(TimeOff.doctor.is_null())
    return sorted(rows, key=lambda t: t.start)


def free_slots(doctor, day, now=None, exclude=None, minutes=None, patient_id=None):
    """Bookable slot starts (UTC, ascending) for ``doctor`` on the clinic-local ``day``, for a
    visit of ``minutes`` (default: the doctor's slot length): the whole visit must fit in the
    working hours, clear of other visits and of time off. Slots held for a patient on the
    waitlist are not free, but for ``patient_id`` if it is theirs."""
    now = now or clock.now()
    horizon = now + settings.get().booking_horizon
    if not doctor.user.active:
        return []
    length = timedelta(minutes=minutes or doctor.slot_minutes)
    lo, hi = clock.day_bounds(day)
    blocked = busy(doctor.user_id, lo, hi + length, exclude=exclude)
    blocked += [(t.start, t.end) for t in away(doctor.user_id, lo, hi + length)]
    blocked += waitlist.held(doctor.user_id, lo, hi + length, patient_id)
    return [s for s in grid(doctor, day, minutes=minutes) if now < s <= horizon
            and not any(b_start < s + length and b_end > s for b_start, b_end in blocked)]


def bookable_doctor(doctor_id):
    """The profile (with ``.user``) of an active doctor patients may book, or NotFound."""
    try:
        doctor_id = int(doctor_id)
    except (TypeError, ValueError):
        raise NotFound("No such doctor.") from None
    doctor = (Doctor.select(Doctor, User).join(User)
              .where(Doctor.user == doctor_id, User.active).first())
    if doctor is None:
        raise NotFound("No such doctor.")
    return doctor
