"""Crypto-shredding: every personal field of an event is encrypted with its user's data key.

Each user has a random 256-bit data key (``new_data_key``), kept outside Kafka, wrapped by
a master key (``MasterKeys``: envelope encryption). An event's personal fields
(``PERSONAL_FIELDS``) are AES-256-GCM ciphertexts on the wire and in the outbox, and the
envelope names the key (CloudEvents extension ``datakeyid``). Erasing a user destroys the
data key: from then on every copy of every event of that user, in Kafka, the outbox,
dead letters or task queues, holds nothing readable about them.

Each ciphertext is bound to its event and field (AES-GCM associated data), so a ciphertext
moved to another event or field does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# What each event type carries about a person. Everything else (ids, roles, reasons,
# timestamps, flags) stays in clear so that the read side keeps its counts after an erasure.
PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "UserRegistered": ("email",),
    "UserLoggedIn": ("email", "ip", "user_agent"),
    "UserLoginFailed": ("email", "ip", "user_agent"),
    "SessionStarted": ("email", "ip", "user_agent"),
    "PasswordChanged": ("email",),
    "EmailChangeRequested": ("new_email", "code"),
    "EmailChanged": ("email", "previous_email"),
    "UserDeactivated": ("reason",),  # free text an operator typed: may name the person
}

KEY_BYTES = 32
_NONCE_BYTES = 12
_PREFIX = "A256GCM:"  # a ciphertext field on the wire: this prefix and urlsafe base64


class KeyUnavailable(Exception):
    """The data key of an event is gone: its user was erased."""


class DataKeys(Protocol):
    """The data keys a consumer may use: None for a key that was destroyed (or never was)."""

    def get(self, user_id: uuid.UUID, key_id: uuid.UUID) -> bytes | None: ...


@dataclass(frozen=True)
class DataKey:
    """One user's data key, in clear: held in memory only while events are (de)ciphered."""

    key_id: uuid.UUID
    secret: bytes


def new_data_key() -> DataKey:
    return DataKey(uuid.uuid4(), AESGCM.generate_key(bit_length=KEY_BYTES * 8))


def personal_fields(event_type: str) -> tuple[str, ...]:
    return PERSONAL_FIELDS.get(event_type, ())


def _aad(event_id: uuid.UUID, field: str) -> bytes:
    return f"{event_id}/{field}".encode()


def seal_fields(
    data: Mapping[str, Any], event_type: str, event_id: uuid.UUID, key: DataKey
) -> dict[str, Any]:
    """``data`` with each personal field (a JSON value; None stays None) encrypted."""
    aead = AESGCM(key.secret)
    sealed = dict(data)
    for field in personal_fields(event_type):
        value = sealed.get(field)
        if value is None:
            continue
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = aead.encrypt(nonce, str(value).encode(), _aad(event_id, field))
        sealed[field] = _PREFIX + base64.urlsafe_b64encode(nonce + ciphertext).decode()
    return sealed


def open_fields(data: Mapping[str, Any], event_type: str, event_id: uuid.UUID, key: bytes) -> dict[str, Any]:
    """The clear ``data``; raises ValueError for a field that is not a valid ciphertext."""
    aead = AESGCM(key)
    opened = dict(data)
    for field in personal_fields(event_type):
        value = opened.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith(_PREFIX):
            raise ValueError(f"{field} is not encrypted")
        try:
            blob = base64.urlsafe_b64decode(value[len(_PREFIX) :])
            clear = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(event_id, field))
            opened[field] = clear.decode()
        except (binascii.Error, InvalidTag, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{field} does not decrypt with its key") from exc
    return opened


def forget_fields(data: Mapping[str, Any], event_type: str) -> dict[str, Any]:
    """``data`` with its personal fields blanked: what an erased user's event still says."""
    return {k: (None if k in personal_fields(event_type) else v) for k, v in data.items()}


@dataclass(frozen=True)
class MasterKeys:
    """Master keys by id; ``current`` wraps new data keys, the others still unwrap old ones.

    Rotation: put a new key first in ``DATA_MASTER_KEYS``, keep the old ones after it, run
    ``flask --app auth_api rotate-master-key`` (re-wraps every data key), then drop the old.
    """

    current: str
    keys: Mapping[str, bytes]

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        """``"id:base64key[,id:base64key...]"``, the current key first."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key_id, _, encoded = item.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"master key {key_id!r} is not base64") from exc
            if not key_id or len(key) != KEY_BYTES:
                raise ValueError(f"master key {key_id!r} must be an id and {KEY_BYTES} bytes")
            keys[key_id] = key
        if not keys:
            raise ValueError("no master key")
        return cls(next(iter(keys)), keys)

    @staticmethod
    def generate_line(key_id: str) -> str:
        return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"

    def wrap(self, user_id: uuid.UUID, key: DataKey) -> tuple[str, bytes]:
        """(master key id, nonce + ciphertext) of ``key``, bound to its user and key id."""
        nonce = os.urandom(_NONCE_BYTES)
        wrapped = AESGCM(self.keys[self.current]).encrypt(nonce, key.secret, _wrap_aad(user_id, key.key_id))
        return self.current, nonce + wrapped

    def unwrap(self, user_id: uuid.UUID, key_id: uuid.UUID, master_id: str, wrapped: bytes) -> bytes:
        master = self.keys.get(master_id)
        if master is None:
            raise KeyUnavailable(f"master key {master_id!r} is not configured")
        try:
            return AESGCM(master).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _wrap_aad(user_id, key_id)
            )
        except InvalidTag as exc:
            raise KeyUnavailable(f"data key {key_id} does not unwrap with master key {master_id!r}") from exc


def _wrap_aad(user_id: uuid.UUID, key_id: uuid.UUID) -> bytes:
    return f"{user_id}/{key_id}".encode()
