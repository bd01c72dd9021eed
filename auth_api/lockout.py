"""Login lockout: how many failures, within which window, lock an email for how long.

Failures are counted per normalised email, whether or not an account has it, so a lock
tells nothing about which emails are registered. The counters are keyed by an HMAC of the
email (``failure_key``): the table holds no address in clear, and erasing a user's counter
only needs their email. Pure arithmetic on timestamps handed in, so the rules are tested
with any clock.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from settings import Settings


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        return cls(settings.lockout_max_failures, settings.lockout_window, settings.lockout_duration)


def failure_key(secret: bytes, normalized_email: str) -> bytes:
    """The counter's key for an email: HMAC-SHA256, so the key alone does not give the email."""
    return hmac.new(secret, normalized_email.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class FailureCount:
    """The failure counter of one email: failures since ``first_failed_at``, and the lock."""

    failures: int = 0
    first_failed_at: datetime | None = None
    locked_until: datetime | None = None

    def retry_after(self, now: datetime) -> int | None:
        """Whole seconds until the lock ends (at least 1), or None if not locked at ``now``."""
        if self.locked_until is None or self.locked_until <= now:
            return None
        return max(1, int((self.locked_until - now).total_seconds() + 0.999))

    def after_failure(self, policy: LockoutPolicy, now: datetime) -> FailureCount:
        """The counter after one more failure at ``now``; the failure that reaches the limit locks."""
        first, failures = self.first_failed_at, self.failures
        if first is None or now - first > policy.window:
            first, failures = now, 0  # the window expired: this failure starts a new one
        failures += 1
        if failures >= policy.max_failures:
            return FailureCount(0, None, now + policy.lock_for)
        return FailureCount(failures, first, self.locked_until)
