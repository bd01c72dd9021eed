"""The write side's composition root: what commands need, built once per process from Settings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from auth_api.commands import CodePolicy
from auth_api.extensions import db
from auth_api.lockout import LockoutPolicy
from auth_api.passwords import PasswordHasher
from auth_api.unit_of_work import SqlUnitOfWork
from event_contract.crypto import MasterKeys
from event_contract.keystore import master_keys as load_master_keys
from settings import Settings
from web.jwt_setup import read_key


@dataclass(frozen=True)
class WriteSide:
    hasher: PasswordHasher
    lockout: LockoutPolicy
    # The write side's secret: keys the per-email failure counters (auth_api.lockout) and the
    # digests of devices and email codes (auth_api.keyed).
    failure_secret: bytes
    after_commit: Callable[[], None]
    master: MasterKeys  # wraps the users' data keys
    codes: CodePolicy = CodePolicy()  # email-change codes: lifetime and tries

    def unit_of_work(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(db.session, self.master, self.after_commit)


def build_write_side(settings: Settings) -> WriteSide:
    after_commit: Callable[[], None] = lambda: None  # noqa: E731
    if settings.relay_kick:
        from auth_api.relay_kick import RelayKicker
        from celery_config.app import make_celery

        kicks = make_celery(settings)
        # A kick is a hint (the relay reads whatever is unpublished when it runs); its
        # "task-sent" event for Flower was a second AMQP publish for every command. Flower
        # still shows each relay run once a worker receives it.
        kicks.conf.task_send_sent_event = False
        after_commit = RelayKicker(kicks)
    hasher = PasswordHasher.from_settings(settings)
    codes = CodePolicy(settings.email_code_ttl, settings.email_code_max_attempts)
    return WriteSide(
        hasher,
        LockoutPolicy.from_settings(settings),
        failure_secret(settings),
        after_commit,
        master_keys(settings),
        codes,
    )


def master_keys(settings: Settings) -> MasterKeys:
    return load_master_keys(settings.data_master_keys, settings.data_master_keys_file)
def failure_secret(settings: Settings) -> bytes:
    """``LOGIN_FAILURE_KEY``, else a key derived from the signing key: a secret only the write
    side holds, with nothing more to provision."""
    if settings.login_failure_key:
        return settings.login_failure_key.encode()
    pem = read_key(settings.jwt_private_key_pem, settings.jwt_private_key_file)
    if pem is None:
        raise RuntimeError("no LOGIN_FAILURE_KEY and no signing key to derive it from")
    return hashlib.sha256(b"cqrs login_failures v1\0" + pem.encode()).digest()
