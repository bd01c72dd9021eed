"""The write side's composition root: what commands need, built once per process from Settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from auth_api.extensions import db
from auth_api.lockout import LockoutPolicy
from auth_api.passwords import PasswordHasher
from auth_api.unit_of_work import SqlUnitOfWork
from settings import Settings


@dataclass(frozen=True)
class WriteSide:
    hasher: PasswordHasher
    lockout: LockoutPolicy
    after_commit: Callable[[], None]

    def unit_of_work(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(db.session, self.after_commit)


def build_write_side(settings: Settings) -> WriteSide:
    after_commit: Callable[[], None] = lambda: None  # noqa: E731
    if settings.relay_kick:
        from auth_api.relay_kick import RelayKicker
        from celery_config.app import make_celery

        after_commit = RelayKicker(make_celery(settings))
    hasher = PasswordHasher.from_settings(settings)
    return WriteSide(hasher, LockoutPolicy.from_settings(settings), after_commit)
