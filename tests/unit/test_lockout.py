"""Lockout arithmetic, on timestamps handed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auth_api.lockout import FailureCount, LockoutPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = LockoutPolicy(max_failures=3, window=timedelta(minutes=10), lock_for=timedelta(minutes=5))


def test_the_failure_that_reaches_the_limit_locks_and_clears_the_counter():
    count = FailureCount()
    for minute in range(2):
        count = count.after_failure(POLICY, T0 + timedelta(minutes=minute))
    assert (count.failures, count.first_failed_at, count.locked_until) == (2, T0, None)
    count = count.after_failure(POLICY, T0 + timedelta(minutes=2))
    assert count == FailureCount(0, None, T0 + timedelta(minutes=7))


def test_a_failure_after_the_window_starts_a_new_window():
    count = FailureCount(2, T0, None).after_failure(POLICY, T0 + timedelta(minutes=10, seconds=1))
    assert count == FailureCount(1, T0 + timedelta(minutes=10, seconds=1), None)


def test_retry_after_rounds_up_and_ends_with_the_lock():
    count = FailureCount(locked_until=T0 + timedelta(seconds=90))
    assert count.retry_after(T0) == 90
    assert count.retry_after(T0 + timedelta(seconds=89, milliseconds=1)) == 1
    assert count.retry_after(T0 + timedelta(seconds=90)) is None
    assert FailureCount().retry_after(T0) is None
