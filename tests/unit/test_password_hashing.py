"""Password hashing: Argon2id at the configured parameters, every older scheme verified and
re-hashed at the next successful login, and no GIL held while hashing."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import argon2
import pytest
from werkzeug.security import generate_password_hash

from auth_api import commands
from auth_api.lockout import LockoutPolicy
from auth_api.models import Device
from auth_api.passwords import PasswordHasher
from settings import load_settings
from tests.unit.fakes import FakeUnitOfWork

PASSWORD = "correct horse battery"
SMALL = {"time_cost": 1, "memory_kib": 1024}  # cheap Argon2id for the tests


def test_the_defaults_are_owasp_first_argon2id_recommendation():
    settings = load_settings({})
    assert (settings.password_hash_method, settings.argon2_memory_kib) == ("argon2id", 19 * 1024)
    assert (settings.argon2_time_cost, settings.argon2_parallelism) == (2, 1)


def test_each_parameter_is_a_setting_and_shows_in_the_hash():
    settings = load_settings(
        {"ARGON2_TIME_COST": "3", "ARGON2_MEMORY_KIB": "2048", "ARGON2_PARALLELISM": "1"}
    )
    stored = PasswordHasher.from_settings(settings).hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=2048,t=3,p=1$")
    two_lanes = PasswordHasher.from_settings(replace(settings, argon2_parallelism=2)).hash(PASSWORD)
    assert two_lanes.startswith("$argon2id$v=19$m=2048,t=3,p=2$")  # argon2-cffi: libsodium has one lane


@pytest.mark.parametrize(
    "old",
    [
        generate_password_hash(PASSWORD, method="scrypt"),  # werkzeug's default, the seed's scheme
        generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
        argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=2).hash(PASSWORD),
        argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=1, type=argon2.Type.I).hash(PASSWORD),
        argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=1, type=argon2.Type.D).hash(PASSWORD),
    ],
    ids=["scrypt", "pbkdf2", "argon2id-other-parameters", "argon2i", "argon2d"],
)
def test_older_schemes_verify_and_need_rehash(old):
    hasher = PasswordHasher("argon2id", **SMALL)
    assert hasher.verify(old, PASSWORD)
    assert not hasher.verify(old, PASSWORD + "!")
    assert hasher.needs_rehash(old)


def test_hashes_of_either_argon2_library_verify_with_the_other():
    ours = PasswordHasher("argon2id", **SMALL)
    theirs = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    assert ours.verify(theirs.hash(PASSWORD), PASSWORD)
    assert theirs.verify(ours.hash(PASSWORD), PASSWORD)
    assert not ours.needs_rehash(ours.hash(PASSWORD))


@pytest.mark.parametrize(
    "damaged", ["", "$argon2id$v=19$m=1024,t=1,p=1$", "$argon2id$garbage", "plain", "$7$x"]
)
def test_a_damaged_hash_never_verifies(damaged):
    assert not PasswordHasher("argon2id", **SMALL).verify(damaged, PASSWORD)


def test_a_scrypt_hash_is_rehashed_to_argon2id_on_the_next_successful_login_only():
    uow = FakeUnitOfWork()
    old = PasswordHasher("scrypt")
    registered = commands.register(uow, old, "ada@example.com", PASSWORD)
    stored = uow.users.rows[registered.account.id].password_hash
    assert stored.startswith("scrypt:")
    new = PasswordHasher("argon2id", **SMALL)
    policy = LockoutPolicy.from_settings(load_settings({}))
    device = Device(ip=None, user_agent=None)
    with pytest.raises(commands.InvalidCredentials):
        commands.log_in(uow, new, policy, "ada@example.com", "wrong password", device, failure_secret=b"k")
    assert uow.users.rows[registered.account.id].password_hash == stored  # a failure upgrades nothing
    commands.log_in(uow, new, policy, "ada@example.com", PASSWORD, device, failure_secret=b"k")
    upgraded = uow.users.rows[registered.account.id].password_hash
    assert upgraded.startswith("$argon2id$v=19$m=1024,t=1,p=1$") and new.verify(upgraded, PASSWORD)
    assert not new.needs_rehash(upgraded)


def test_hashing_releases_the_gil():
    """Python code in another thread runs while a hash is computed. With the GIL held through
    the hash, no iteration of the counting loop could fall inside the hash's middle half."""
    hasher = PasswordHasher("argon2id", time_cost=3, memory_kib=32 * 1024)
    span: list[float] = []

    def hash_once() -> None:
        span.append(time.perf_counter())
        hasher.hash(PASSWORD)
        span.append(time.perf_counter())

    thread = threading.Thread(target=hash_once)
    stamps: list[float] = []
    thread.start()
    while thread.is_alive():
        stamps.append(time.perf_counter())
    thread.join()
    start, end = span
    quarter = (end - start) / 4
    inside = [t for t in stamps if start + quarter < t < end - quarter]
    assert len(inside) > 0
