"""CloudEvents 1.0 envelope and the data schema of each user event type."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from event_contract.crypto import DataKey, DataKeys, forget_fields, open_fields, personal_fields, seal_fields

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
DEFAULT_SOURCE = "/auth_api"


class InvalidEvent(ValueError):
    """Raised for bytes that are not a valid event of a known type (a poison event)."""


class _Data(BaseModel):
    # Unknown fields are ignored: producers may add optional fields without a new type.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class UserRegistered(_Data):
    email: str = Field(min_length=3, max_length=320)
    roles: list[str] = Field(default_factory=lambda: ["user"])


class UserLoggedIn(_Data):
    email: str = Field(min_length=3, max_length=320)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    # The session (refresh-token family) this login started; absent in older events.
    session_id: uuid.UUID | None = Field(default=None, strict=False)  # a string in JSON


class UserLoginFailed(_Data):
    email: str = Field(min_length=3, max_length=320)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    reason: str = Field(min_length=1, max_length=64)


class SessionStarted(_Data):
    """A login started a session (a refresh-token family) on a device."""

    session_id: uuid.UUID = Field(strict=False)
    email: str = Field(min_length=3, max_length=320)  # where "new sign-in" mail goes
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    # No earlier session of this user came from this user agent (decided by the write side, so
    # that a replay makes the same decision).
    new_device: bool = False


class SessionRefreshed(_Data):
    """A session's refresh token was rotated: the session was used."""

    session_id: uuid.UUID = Field(strict=False)


SESSION_END_REASONS = (
    "logout",
    "logout-all",
    "password-change",
    "deactivation",
    "reuse-detected",
    "deletion",
)


class SessionEnded(_Data):
    session_id: uuid.UUID = Field(strict=False)
    # One of SESSION_END_REASONS; free text for readers, so a new reason needs no new schema.
    reason: str = Field(min_length=1, max_length=64)


class PasswordChanged(_Data):
    email: str = Field(min_length=3, max_length=320)  # told of the change


class EmailChangeRequested(_Data):
    new_email: str = Field(min_length=3, max_length=320)
    # The one-time code mailed to ``new_email`` by the notifier. It is only good with the
    # user's own access token, before ``expires_at``, for a bounded number of tries.
    code: str = Field(min_length=4, max_length=16)
    expires_at: AwareDatetime = Field(strict=False)  # an RFC 3339 string in JSON


class EmailChanged(_Data):
    email: str = Field(min_length=3, max_length=320)
    previous_email: str = Field(min_length=3, max_length=320)  # told of the change


class UserDeactivated(_Data):
    reason: str | None = Field(default=None, max_length=200)


class UserReactivated(_Data):
    pass


class UserDeleted(_Data):
    """The account is erased: its data key is destroyed with it (``event_contract.crypto``)."""

    by: str = Field(default="self", pattern="^(self|admin)$")


class UserRoleGranted(_Data):
    role: str = Field(min_length=1, max_length=64)
    # The whole role set after the change, so the last event by version wins.
    roles: list[str]


class UserRoleRevoked(_Data):
    role: str = Field(min_length=1, max_length=64)
    roles: list[str]


EVENT_TYPES: dict[str, type[_Data]] = {
    "UserRegistered": UserRegistered,
    "UserLoggedIn": UserLoggedIn,
    "UserLoginFailed": UserLoginFailed,
    "UserRoleGranted": UserRoleGranted,
    "UserRoleRevoked": UserRoleRevoked,
    "SessionStarted": SessionStarted,
    "SessionRefreshed": SessionRefreshed,
    "SessionEnded": SessionEnded,
    "PasswordChanged": PasswordChanged,
    "EmailChangeRequested": EmailChangeRequested,
    "EmailChanged": EmailChanged,
    "UserDeactivated": UserDeactivated,
    "UserReactivated": UserReactivated,
    "UserDeleted": UserDeleted,
}


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # CloudEvents extension: the user's data key that encrypted the personal fields
    # (``event_contract.crypto``); absent on events written before encryption.
    datakeyid: uuid.UUID | None = None

    specversion: Literal["1.0"]
    id: uuid.UUID
    type: str
    source: str = Field(min_length=1)
    subject: uuid.UUID
    time: datetime
    sequence: int = Field(ge=1, strict=True)
    datacontenttype: Literal["application/json"] = CONTENT_TYPE
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """A validated user event. ``data`` holds the type's fields as plain JSON values."""

    id: uuid.UUID
    type: str
    user_id: uuid.UUID  # CloudEvents ``subject`` on the wire
    sequence: int
    time: datetime
    data: dict[str, Any]
    source: str = DEFAULT_SOURCE
    # True when the user's data key is gone: the personal fields of ``data`` are None.
    forgotten: bool = False

    def to_cloudevent(self) -> dict[str, Any]:
        return {
            "specversion": SPEC_VERSION,
            "id": str(self.id),
            "type": self.type,
            "source": self.source,
            "subject": str(self.user_id),
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "sequence": self.sequence,
            "datacontenttype": CONTENT_TYPE,
            "data": self.data,
        }


def _validated_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    schema = EVENT_TYPES.get(event_type)
    if schema is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    try:
        return schema.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {event_type} data: {_summary(exc)}") from exc


def new_event(
    event_type: str,
    user_id: uuid.UUID,
    sequence: int,
    data: dict[str, Any],
    *,
    time: datetime | None = None,
    event_id: uuid.UUID | None = None,
    source: str = DEFAULT_SOURCE,
) -> Event:
    """Build a new event; raises InvalidEvent if the data does not fit the type."""
    if sequence < 1:
        raise InvalidEvent("sequence must be >= 1")
    return Event(
        id=event_id or uuid.uuid4(),
        type=event_type,
        user_id=user_id,
        sequence=sequence,
        time=(time or datetime.now(UTC)).astimezone(UTC),
        data=_validated_data(event_type, data),
        source=source,
    )


def serialize_event(event: Event, key: DataKey | None = None) -> bytes:
    """The wire form; with ``key``, the personal fields are encrypted and the key named."""
    document = event.to_cloudevent()
    if key is not None and personal_fields(event.type):
        document["datakeyid"] = str(key.key_id)
        document["data"] = seal_fields(event.data, event.type, event.id, key)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def parse_event(raw: bytes | str, keys: DataKeys | None = None) -> Event:
    """Parse, decrypt and validate one envelope; raises InvalidEvent for anything else.

    An event sealed with a data key that ``keys`` no longer has (its user was erased) parses
    as ``forgotten``: its personal fields are None and the rest is as written.
    """
    try:
        document = json.loads(raw)
    # UnicodeDecodeError is a ValueError; deeply nested arrays raise RecursionError.
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidEvent("envelope is not a JSON object")
    try:
        envelope = _Envelope.model_validate(document)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid envelope: {_summary(exc)}") from exc
    if envelope.time.tzinfo is None:
        raise InvalidEvent("invalid envelope: time has no offset")
    try:
        time = envelope.time.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:30:00+01:00 is before year 1 in UTC
        raise InvalidEvent(f"invalid envelope: time out of range: {exc}") from exc
    data, forgotten = envelope.data, False
    if envelope.datakeyid is not None and personal_fields(envelope.type):
        if envelope.type not in EVENT_TYPES:
            raise InvalidEvent(f"unknown event type {envelope.type!r}")
        if keys is None:
            raise InvalidEvent("the event is encrypted and no data keys were given")
        key = keys.get(envelope.subject, envelope.datakeyid)
        if key is None:
            data, forgotten = forget_fields(data, envelope.type), True
        else:
            try:
                data = open_fields(data, envelope.type, envelope.id, key)
            except ValueError as exc:
                raise InvalidEvent(f"invalid {envelope.type} data: {exc}") from exc
    return Event(
        id=envelope.id,
        type=envelope.type,
        user_id=envelope.subject,
        sequence=envelope.sequence,
        time=time,
        data=data if forgotten else _validated_data(envelope.type, data),
        source=envelope.source,
        forgotten=forgotten,
    )


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
