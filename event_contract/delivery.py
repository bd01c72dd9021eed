"""One Kafka record as it travels from the projector to a projection worker.

The projector turns a Kafka record into a ``Delivery`` (JSON-safe for a Celery task);
workers, the rebuild and the dead-letter replay turn it back into raw bytes to parse.
Records are never parsed here: a poison record must still travel to be dead-lettered.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol


class KafkaRecord(Protocol):
    """What a Delivery needs of a ``confluent_kafka.Message``."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


@dataclass(frozen=True)
class Delivery:
    value: str
    encoding: str = "utf-8"  # or "base64" for bytes that are not UTF-8
    source: str | None = None  # topic/partition/offset
    request_id: str | None = None
    key: str | None = None  # the record key: the user id the producer meant

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Delivery:
        return cls(
            value=item["value"],
            encoding=item.get("encoding", "utf-8"),
            source=item.get("source"),
            request_id=item.get("request_id"),
            key=item.get("key"),
        )

    @classmethod
    def from_bytes(
        cls,
        raw: bytes | None,
        source: str | None = None,
        request_id: str | None = None,
        key: str | None = None,
    ) -> Delivery:
        raw = raw or b""
        try:
            return cls(raw.decode("utf-8"), "utf-8", source, request_id, key)
        except UnicodeDecodeError:
            return cls(base64.b64encode(raw).decode("ascii"), "base64", source, request_id, key)

    @classmethod
    def from_record(cls, record: KafkaRecord) -> Delivery:
        headers = dict(record.headers() or [])
        request_id = headers.get("request_id")
        key = record.key()
        return cls.from_bytes(
            record.value(),
            f"{record.topic()}/{record.partition()}/{record.offset()}",
            request_id.decode("utf-8", "replace") if request_id else None,
            key.decode("utf-8", "replace") if key is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "encoding": self.encoding,
            "source": self.source,
            "request_id": self.request_id,
            "key": self.key,
        }

    def raw(self) -> bytes:
        if self.encoding == "base64":
            return base64.b64decode(self.value)
        return self.value.encode("utf-8")


def next_offsets(records: list[KafkaRecord]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after the last of ``records``: what a consumer
    stores for commit once their hand-over is confirmed."""
    following: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic() or "", record.partition() or 0)
        following[key] = max(following.get(key, -1), (record.offset() or 0) + 1)
    return following
