"""One page of a list that a filter form narrows: the audit log, the jobs page's task runs and
the outbox's messages take the same kind of form (a choice from a list, clinic-local days, an
exact value or part of a name) and show rows newest first, a page at a time.
"""

from clinic import clock
from clinic.errors import check


def page(query, at, day_from="", day_to="", choices=None, where=(), order=(), limit=25,
         offset=0):
    """``query`` narrowed as a filter form asks, one page of it:

    1. Each of ``choices``, ``{field: (value, allowed, message)}``, whose value is given but not
       one of ``allowed`` is an error under ``field``; so is a day that is not a date, or a last
       day before the first (clock.days_between, under "from" and "to").
    2. Any error raises Invalid with the fields (errors.check), before any query runs.
    3. The rows kept match every condition in ``where`` that is not None (None: that filter was
       left empty) and have ``at`` on the days from ``day_from`` to ``day_to``, both included.
    4. Ordered by ``order`` (newest first, in an order an index gives), ``limit`` rows from
       ``offset``.
    """
    errors = {}
    for field, (value, allowed, message) in (choices or {}).items():
        if value and value not in allowed:
            errors[field] = message
    since, before = clock.days_between(day_from, day_to, errors)
    check(errors)
    conditions = [condition for condition in where if condition is not None]
    if since:
        conditions.append(at >= since)
    if before:
        conditions.append(at < before)
    for condition in conditions:
        query = query.where(condition)
    return query.order_by(*order).limit(limit).offset(offset)
