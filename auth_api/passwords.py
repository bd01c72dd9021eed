"""Passwords: the policy for new ones, and how they are hashed and verified."""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path

import argon2
import nacl.exceptions
import nacl.pwhash.argon2id
from werkzeug.security import check_password_hash, generate_password_hash

from settings import Settings

ARGON2ID = "argon2id"

MIN_LENGTH = 8
MAX_LENGTH = 128
_COMMON_FILE = Path(__file__).with_name("common_passwords.txt")


@cache
def _common() -> frozenset[str]:
    return frozenset(line.strip().lower() for line in _COMMON_FILE.read_text().splitlines() if line.strip())


def password_problem(password: str) -> str | None:
    """Why the password is refused, or None if it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if password.lower() in _common() or len(set(password)) < 3:
        return "is too common; choose a less guessable password"
    return None


class PasswordHasher:
    """Hashes new passwords with the configured scheme and verifies every scheme ever used.

    Argon2id by default, computed by libsodium (PyNaCl) when the parallelism is 1: its
    vectorised Argon2 costs about 60% of argon2-cffi's portable build for the same
    parameters and the same standard ``$argon2id$v=19$m=..,t=..,p=..$`` string, which
    either library verifies; argon2-cffi for other parallelisms. Both release the GIL while
    hashing (cffi calls), so the other threads of a process keep serving. A werkzeug
    method such as ``pbkdf2:sha256:1000`` when configured (the tests' cheap hash). Hashes of
    another scheme or older parameters still verify, and ``needs_rehash`` says to upgrade
    them on the next successful login. ``dummy_hash`` lets a login for an unknown email do
    the same work as one for a known email.
    """

    def __init__(self, method: str, *, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1):
        self.method = method
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=argon2.Type.ID
        )
        # libsodium's Argon2id has no lanes: p = 1 only (OWASP's recommendations all are).
        self._sodium = parallelism == 1
        self._ops, self._mem = time_cost, memory_kib * 1024
        self.dummy_hash = self.hash(secrets.token_hex(16))

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        return cls(
            settings.password_hash_method,
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    def hash(self, password: str) -> str:
        if self.method == ARGON2ID:
            if self._sodium:
                return nacl.pwhash.argon2id.str(password.encode(), self._ops, self._mem).decode("ascii")
            return self._argon2.hash(password)
        return generate_password_hash(password, method=self.method)

    def verify(self, stored: str, password: str) -> bool:
        if stored.startswith(("$argon2id$", "$argon2i$")):
            try:  # libsodium verifies both (any parameters); argon2d only argon2-cffi
                return nacl.pwhash.verify(stored.encode("ascii"), password.encode())
            except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError, TypeError):
                return False
        if stored.startswith("$argon2"):
            try:
                return self._argon2.verify(stored, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False
        try:
            return check_password_hash(stored, password)
        except (ValueError, TypeError):  # an unknown or damaged scheme never verifies
            return False

    def needs_rehash(self, stored: str) -> bool:
        if self.method == ARGON2ID:
            return not stored.startswith("$argon2id$") or self._argon2.check_needs_rehash(stored)
        return stored.split("$", 1)[0] != self.method
