"""The dashboard's memo is per process; an admin's Refresh in one web process reaches the memo of
every other through a stamp in the database. (tests/test_scale_out.py shows it with two real
web processes; here the other process is played by its stamp.)"""

from datetime import timedelta

from clinic import clock, stats
from clinic.models import JobState


def refreshed_elsewhere(at):
    """What ``stats.forget(key)`` in another process leaves in the shared database."""
    JobState.insert(name=stats.REFRESHED, last_started_at=at).on_conflict(
        conflict_target=[JobState.name], update={JobState.last_started_at: at}).execute()


def test_a_refresh_in_another_process_drops_the_figures_kept_here(app):
    now = clock.now()
    calls = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert stats.memo("figures", compute, now=now) == (1, now, False)
    assert stats.memo("figures", compute, now=now + timedelta(seconds=5))[2] is True

    refreshed_elsewhere(now + timedelta(seconds=10))
    later = now + timedelta(seconds=20)
    assert stats.memo("figures", compute, now=later) == (2, later, False)
    assert stats.memo("figures", compute, now=later + timedelta(seconds=1))[2] is True


def test_a_refresh_before_the_figures_were_computed_keeps_them(app):
    now = clock.now()
    refreshed_elsewhere(now - timedelta(seconds=1))
    stats.memo("figures", lambda: 1, now=now)
    assert stats.memo("figures", lambda: 2, now=now + timedelta(seconds=1)) == (1, now, True)


def test_forgetting_a_key_stamps_the_database_and_forgetting_all_does_not(app):
    now = clock.now()
    stats.forget()
    assert JobState.get_or_none(JobState.name == stats.REFRESHED) is None
    stats.forget("dashboard", now=now)
    assert JobState.get_by_id(stats.REFRESHED).last_started_at == now
