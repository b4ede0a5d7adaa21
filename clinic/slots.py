"""Free slots: a doctor's slot grid on a clinic-local day, and which of its starts a patient may
book now (in the future, within the booking horizon, not taken).

Booking itself (clinic/appointments.py) checks a start against the same grid and the same busy
times, inside the booking transaction.
"""

from datetime import UTC, datetime, time, timedelta

from clinic import clock, settings
from clinic.errors import NotFound
from clinic.i18n import _
from clinic.models import WEEKDAYS, Appointment, Doctor, User

# No visit is this long: an overlap search starts this far before the time asked about, so the
# (doctor, start) / (patient, start) index reads a day of rows, not the whole history.
LONGEST_VISIT = timedelta(days=1)


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


def grid(doctor, day, tz=None):
    """Every slot start (UTC) of ``doctor``'s working hours on the clinic-local ``day``."""
    tz = tz or clock.zone()
    step = timedelta(minutes=doctor.slot_minutes)
    starts = []
    for start_text, end_text in doctor.working_hours.get(WEEKDAYS[day.weekday()], []):
        start = datetime.combine(day, time.fromisoformat(start_text))
        end = datetime.combine(day, time.fromisoformat(end_text))
        while start + step <= end:
            instant = _wall_to_utc(day, start.time(), tz)
            if instant is not None:
                starts.append(instant)
            start += step
    return sorted(set(starts))


def busy(doctor_id, start, end, exclude=None):
    """(start, end) of the doctor's appointments (not cancelled) that overlap [start, end)."""
    query = Appointment.select(Appointment.start, Appointment.end).where(
        Appointment.doctor == doctor_id, Appointment.status != "cancelled",
        Appointment.start > start - LONGEST_VISIT, Appointment.start < end,
        Appointment.end > start)
    if exclude is not None:
        query = query.where(Appointment.id != exclude)
    return [(row.start, row.end) for row in query]


def free_slots(doctor, day, now=None, exclude=None):
    """Bookable slot starts (UTC, ascending) for ``doctor`` on the clinic-local ``day``."""
    now = now or clock.now()
    horizon = now + settings.get().booking_horizon
    if not doctor.user.active:
        return []
    step = timedelta(minutes=doctor.slot_minutes)
    lo, hi = clock.day_bounds(day)
    taken = busy(doctor.user_id, lo, hi + step, exclude=exclude)
    return [s for s in grid(doctor, day) if now < s <= horizon
            and not any(b_start < s + step and b_end > s for b_start, b_end in taken)]


def bookable_doctor(doctor_id):
    """The profile (with ``.user``) of an active doctor patients may book, or NotFound."""
    try:
        doctor_id = int(doctor_id)
    except (TypeError, ValueError):
        raise NotFound(_("No such doctor.")) from None
    doctor = (Doctor.select(Doctor, User).join(User)
              .where(Doctor.user == doctor_id, User.active).first())
    if doctor is None:
        raise NotFound(_("No such doctor."))
    return doctor
