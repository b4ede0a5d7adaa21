"""When a job falls due: schedules parsed from a setting and computed in the clinic's time zone.

A schedule is written as one of::

    every 5m   every 1h        an interval, aligned to the clock (:00, :05, :10 ... in UTC)
    08:00                      every day at that clinic time
    mon 02:00  mon,thu 02:00   on those weekdays (mon tue wed thu fri sat sun)
    1 09:00    day 1 09:00     on that day of each month; a month without it uses its last day

Due times are aware UTC instants. Daylight-saving rules, the same as cron's:

- a clinic time that does not exist that day (the clocks jump forward over it) falls due at the
  first instant after the jump: 02:30 on the spring-forward day runs at 03:00;
- a clinic time that happens twice (the clocks go back) falls due once, at its first occurrence.

Times outside the change (08:00 in Europe/Berlin) are untouched: 08:00 is 08:00 on both days.
"""

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EXAMPLES = '"every 5m", "08:00", "mon 02:00", "mon,thu 02:00" or "1 09:00"'

_INTERVAL = re.compile(r"every\s+(\d+)\s*(m|min|mins|minutes?|h|hours?)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse(text):
    """The Schedule that ``text`` describes; ValueError with a one-line reason if none."""
    words = " ".join(str(text).lower().replace(",", " , ").split()).replace(" , ", ",")
    if not words:
        raise ValueError(f"expected a schedule such as {EXAMPLES}")
    if words.startswith("every"):
        match = _INTERVAL.fullmatch(words)
        if not match:
            raise ValueError('expected an interval such as "every 5m" or "every 1h"')
        minutes = int(match.group(1)) * (60 if match.group(2).startswith("h") else 1)
        if not 1 <= minutes <= 24 * 60:
            raise ValueError("an interval must be from 1 minute to 24 hours")
        return Interval(minutes)
    *when, at = words.split(" ")
    if ":" not in at:
        raise ValueError(f"expected a schedule such as {EXAMPLES}")
    at = _time_of_day(at)
    if not when:
        return Daily(at)
    if when[0] == "day":
        when = when[1:]
    if len(when) == 1 and when[0].isascii() and when[0].isdigit():
        day = int(when[0])
        if not 1 <= day <= 31:
            raise ValueError(f"{day} is not a day of the month (1 to 31)")
        return Monthly(at, day)
    if len(when) == 1:
        return Weekly(at, _weekdays(when[0]))
    raise ValueError(f"expected a schedule such as {EXAMPLES}")


def _time_of_day(word):
    match = re.fullmatch(r"(\d{1,2}):(\d\d)", word)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f'"{word}" is not a time of day (HH:MM, 00:00 to 23:59)')
    return time(int(match.group(1)), int(match.group(2)))


def _weekdays(word):
    days = set()
    for name in word.split(","):
        # "mon", "monday" and "Mon" all name Monday.
        found = [i for i, full in enumerate(WEEKDAY_NAMES)
                 if len(name) >= 3 and full.lower().startswith(name)]
        if not found:
            raise ValueError(f'"{name}" is not a weekday ({", ".join(WEEKDAYS)})')
        days.add(found[0])
    return tuple(sorted(days))


# -- the schedules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Every ``minutes`` minutes, at whole multiples of the interval since the Unix epoch: the
    time zone plays no part."""

    minutes: int

    def previous(self, now, tz=None):
        """The latest due time at or before ``now``."""
        step = self.minutes * 60
        seconds = int((now - _EPOCH).total_seconds()) // step * step
        return _EPOCH + timedelta(seconds=seconds)

    def next(self, after, tz=None, n=1):
        """The ``n`` due times strictly after ``after``."""
        first = self.previous(after, tz)
        return [first + timedelta(minutes=self.minutes * i) for i in range(1, n + 1)]

    def describe(self, tz=None):
        if self.minutes == 1:
            return "every minute"
        if self.minutes % 60 == 0:
            hours = self.minutes // 60
            return "every hour" if hours == 1 else f"every {hours} hours"
        return f"every {self.minutes} minutes"

    def __str__(self):
        if self.minutes % 60 == 0:
            return f"every {self.minutes // 60}h"
        return f"every {self.minutes}m"


@dataclass(frozen=True)
class _Calendar:
    """At a clinic time of day on the days that ``runs_on`` accepts."""

    at: time

    def runs_on(self, day):
        return True

    def previous(self, now, tz):
        """The latest due time at or before ``now``."""
        day = now.astimezone(tz).date()
        for _ in range(400):  # every schedule falls due at least once a month
            if self.runs_on(day):
                due = due_at(day, self.at, tz)
                if due <= now:
                    return due
            day -= timedelta(days=1)
        raise AssertionError(f"{self} never fell due")  # pragma: no cover

    def next(self, after, tz, n=1):
        """The ``n`` due times strictly after ``after``."""
        # Start a day early: a due time skipped over by a long jump forward can land on the
        # next local day.
        day = after.astimezone(tz).date() - timedelta(days=1)
        found = []
        while len(found) < n:
            if self.runs_on(day):
                due = due_at(day, self.at, tz)
                if due > after and (not found or due > found[-1]):
                    found.append(due)
            day += timedelta(days=1)
        return found

    def _at(self, tz):
        return f"at {self.at:%H:%M}" + (f" {tz}" if tz is not None else "")


@dataclass(frozen=True)
class Daily(_Calendar):
    def describe(self, tz=None):
        return f"every day {self._at(tz)}"

    def __str__(self):
        return f"{self.at:%H:%M}"


@dataclass(frozen=True)
class Weekly(_Calendar):
    weekdays: tuple = ()  # 0 = Monday

    def runs_on(self, day):
        return day.weekday() in self.weekdays

    def describe(self, tz=None):
        names = [WEEKDAY_NAMES[d] for d in self.weekdays]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"every {listed} {self._at(tz)}"

    def __str__(self):
        return ",".join(WEEKDAYS[d] for d in self.weekdays) + f" {self.at:%H:%M}"


@dataclass(frozen=True)
class Monthly(_Calendar):
    day: int = 1

    def runs_on(self, day):
        last = calendar.monthrange(day.year, day.month)[1]
        return day.day == min(self.day, last)

    def describe(self, tz=None):
        text = f"on the {_ordinal(self.day)} of each month"
        if self.day > 28:
            text += " (the last day in shorter months)"
        return f"{text} {self._at(tz)}"

    def __str__(self):
        return f"{self.day} {self.at:%H:%M}"


def _ordinal(n):
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# -- wall time to instants ------------------------------------------------------------------------


def due_at(day, at, tz):
    """The instant (aware UTC) at which clinic wall time ``at`` on ``day`` falls due.

    1. fold=0 gives the first occurrence of a time that happens twice.
    2. If that instant does not read back as ``at`` on ``day``, the time fell into a gap: find
       the instant the clocks jumped (the first valid one after the gap) by bisection between
       the readings with the offsets before and after the jump."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = int(min(first, other).timestamp()), int(max(first, other).timestamp())
    offset_lo = _offset(lo, tz)
    while hi - lo > 1:  # lo is before the jump, hi after
        mid = (lo + hi) // 2
        if _offset(mid, tz) == offset_lo:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _offset(timestamp, tz):
    return datetime.fromtimestamp(timestamp, UTC).astimezone(tz).utcoffset()
