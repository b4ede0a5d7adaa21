"""Free slots: a doctor's slot grid on a clinic-local day, and which of its starts a patient may
book now (in the future, within the booking horizon, not taken, not in time off), for a visit
of one slot or of a visit type's length.

Booking itself (clinic/appointments.py) checks a start against the same grid and the same busy
times, inside the booking transaction.
"""

from bisect import bisect_left
from datetime import UTC, datetime, time, timedelta

from clinic import clock, settings, waitlist
from clinic.errors import NotFound
from clinic.i18n import _
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


def away_everyone(start, end):
    """{doctor id: [(start, end)]} of the approved time off overlapping [start, end), for every
    doctor at once; the clinic's closures under None."""
    rows = (TimeOff.select(TimeOff.doctor, TimeOff.start, TimeOff.end)
            .where(TimeOff.status == "approved", TimeOff.start < end,
                   TimeOff.start > start - LONGEST_TIME_OFF, TimeOff.end > start))
    found = {}
    for row in rows:
        found.setdefault(row.doctor_id, []).append((row.start, row.end))
    return found


def free_slots(doctor, day, now=None, exclude=None, minutes=None, patient_id=None):
    """Bookable slot starts (UTC, ascending) for ``doctor`` on the clinic-local ``day``, for a
    visit of ``minutes`` (default: the doctor's slot length); see free_by_day()."""
    return free_by_day(doctor, day, day, now=now, exclude=exclude, minutes=minutes,
                       patient_id=patient_id)[day]


def free_by_day(doctor, first, last, now=None, exclude=None, minutes=None, patient_id=None):
    """``{day: bookable starts}`` for every clinic-local day from ``first`` to ``last``, for a
    visit of ``minutes`` (default: the doctor's slot length): the whole visit must fit in the
    working hours, clear of other visits, of time off and of slots held for a patient on the
    waitlist (but for ``patient_id``, if the hold is theirs). The doctor's appointments, time
    off and holds over the whole span are read once, and each day's grid is checked against
    them here, so a two-week strip or the next free time over the booking horizon costs the
    same few queries as one day."""
    now = now or clock.now()
    horizon = now + settings.get().booking_horizon
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    if not doctor.user.active or not days:
        return dict.fromkeys(days, [])
    length = timedelta(minutes=minutes or doctor.slot_minutes)
    lo, _end = clock.day_bounds(first)
    _start, hi = clock.day_bounds(last)
    free = clear_of(busy(doctor.user_id, lo, hi + length, exclude=exclude)
                    + waitlist.held(doctor.user_id, lo, hi + length, patient_id),
                    [(t.start, t.end) for t in away(doctor.user_id, lo, hi + length)], length)
    return {day: [s for s in grid(doctor, day, minutes=minutes) if now < s <= horizon
                  and free(s)] for day in days}


def clear_of(taken, closed, length):
    """A test of a start: does a visit of ``length`` from it overlap none of ``taken`` (visits
    and holds as (start, end), each at most LONGEST_VISIT long) and none of ``closed`` (time
    off, of any length, and few)?"""
    taken = sorted(taken)
    starts = [b_start for b_start, _ in taken]

    def clear(slot):
        end = slot + length
        if any(c_start < end and c_end > slot for c_start, c_end in closed):
            return False
        # Only visits starting before this one ends, and within LONGEST_VISIT before it, can
        # overlap it.
        i = bisect_left(starts, end)
        while i > 0 and starts[i - 1] > slot - LONGEST_VISIT:
            i -= 1
            if taken[i][1] > slot:
                return False
        return True

    return clear


def open_starts(doctor, day, taken, now, closed=()):
    """free_slots() without the queries, for a caller that read the day of many doctors at
    once (clinic/desk.py): the one-slot starts of ``doctor``'s grid on ``day`` bookable at
    ``now``, clear of the ``taken`` (start, end) pairs and the ``closed`` time off."""
    horizon = now + settings.get().booking_horizon
    clear = clear_of(taken, closed, timedelta(minutes=doctor.slot_minutes))
    return [s for s in grid(doctor, day) if now < s <= horizon and clear(s)]


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
        raise NotFound(_("No such doctor.")) from None
    doctor = (Doctor.select(Doctor, User).join(User)
              .where(Doctor.user == doctor_id, User.active).first())
    if doctor is None:
        raise NotFound(_("No such doctor."))
    return doctor
