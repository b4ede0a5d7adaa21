"""Huey tasks: thin wrappers around plain functions in the domain modules. The functions are
what the tests call; these wrappers only give them a queue, a priority and a schedule.

Priorities (higher runs first): confirmations and reminders before reports and exports,
clean-up last.
"""

from huey import crontab

from huey_config import huey

URGENT = 100  # confirmations, cancellations, reminders
NORMAL = 50  # reports, exports, review requests
BULK = 10  # announcements
HOUSEKEEPING = 0  # statistics, clean-up

# -- the outbox ---------------------------------------------------------------------------------
# Delivery is queued by outbox.enqueue() once the row is committed; outbox.sweep() (an interval
# job: every minute) delivers whatever a lost task or a retry leaves pending.

from clinic import outbox  # noqa: E402


@huey.task(priority=URGENT)
def send_messages(ids):
    """Deliver these outbox rows now. Returns nothing: Huey would keep every result.

    No connection_context() here: it would close the caller's connection (and refuse inside a
    transaction) when Huey runs tasks immediately; a worker thread keeps its one connection."""
    outbox.deliver(ids)


# -- the scheduler ------------------------------------------------------------------------------
# One periodic task for every scheduled job: Huey's crontab knows no time zone and skips missed
# checks, so jobs.tick() decides what fell due (in the clinic's zone, caught up once after
# downtime) and enqueues run_job with each job's priority. Every minute is zone-free.

from clinic import jobs  # noqa: E402  (here, after the priorities jobs.py imports)


@huey.periodic_task(crontab(), priority=URGENT)
def scheduler_tick():
    jobs.tick()


@huey.task()
def run_job(name, due_at=None):
    """Run a scheduled job; ``due_at`` (ISO UTC, for the log) is the due time it was queued for.
    Returns nothing: Huey would keep every result."""
    jobs.run(name)
