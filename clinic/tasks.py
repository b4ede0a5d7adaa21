"""Huey tasks: thin wrappers around plain functions in the domain modules. The functions are
what the tests call; these wrappers only give them a queue, a priority and a schedule.

Priorities (higher runs first): confirmations and reminders before reports and exports,
clean-up last.
"""

from huey_config import huey  # noqa: F401

URGENT = 100  # confirmations, cancellations, reminders
NORMAL = 50  # reports, exports, review requests
BULK = 10  # announcements
HOUSEKEEPING = 0  # statistics, clean-up

# -- the outbox ---------------------------------------------------------------------------------

# -- the scheduler ------------------------------------------------------------------------------
