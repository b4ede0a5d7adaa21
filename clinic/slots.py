"""Free slots: a doctor's slot grid on a clinic-local day, and which of its starts a patient may
book now (in the future, within the booking horizon, not taken).

Booking itself (clinic/appointments.py) checks a start against the same grid and the same busy
times, inside the booking transaction.
"""

from bisect import bisect_left
from datetime import UTC, datetime, time, timedelta

from clinic import clock, settings
from clinic.errors import NotFound
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
    return free_by_day(doctor, day, day, now=now, exclude=exclude)[day]


def free_by_day(doctor, first, last, now=None, exclude=None):
    """``{day: bookable starts}`` for every clinic-local day from ``first`` to ``last``: the
    doctor's appointments over the whole span are read in ONE query, and each day's grid is
    checked against them here, so a two-week strip or the next free time over the booking
    horizon costs what one day does."""
    now = now or clock.now()
    horizon = now + settings.get().booking_horizon
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    if not doctor.user.active or not days:
        return dict.fromkeys(days, [])
    step = timedelta(minutes=doctor.slot_minutes)
    lo, _ = clock.day_bounds(first)
    _, hi = clock.day_bounds(last)
    taken = sorted(busy(doctor.user_id, lo, hi + step, exclude=exclude))
    starts = [b_start for b_start, _ in taken]

    def free(slot):
        # Only appointments starting before the slot ends, and within LONGEST_VISIT before it,
        # can overlap it.
        i = bisect_left(starts, slot + step)
        while i > 0 and starts[i - 1] > slot - LONGEST_VISIT:
            i -= 1
            if taken[i][1] > slot:
                return False
        return True

    return {day: [s for s in grid(doctor, day) if now < s <= horizon and free(s)]
            for day in days}


STRIP_DAYS = 14  # the booking pages' strip of days with free times


def strip(by_day, day, today, last_day):
    """The booking pages' strip: ``([(day, free count)], earlier, later)``, the STRIP_DAYS
    days from ``today`` that hold ``day`` (within the booking horizon, ``last_day``), and the
    first days of the strips before and after it (None at either end)."""
    shown = day if day is not None and today <= day <= last_day else today
    first = today + timedelta(days=STRIP_DAYS * ((shown - today).days // STRIP_DAYS))
    days = [(d, len(by_day.get(d, []))) for d in
            (first + timedelta(days=n) for n in range(STRIP_DAYS)) if d <= last_day]
    earlier = first - timedelta(days=STRIP_DAYS) if first > today else None
    later = first + timedelta(days=STRIP_DAYS)
    return days, earlier, later if later <= last_day else None


def next_free(by_day):
    """The first bookable start in ``free_by_day()``'s answer, or None."""
    return next((starts[0] for _, starts in sorted(by_day.items()) if starts), None)


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
