"""The relay's Kafka wait stays below the time after which it loses its lock."""

from __future__ import annotations

import pytest

from outbox_relay.relay import relay_outbox
from outbox_relay.tasks import relay_kafka_wait_seconds
from settings import load_settings


def test_the_kafka_wait_is_shorter_than_the_lock_timeout() -> None:
    settings = load_settings({})
    assert relay_kafka_wait_seconds(settings) == 12.0 < settings.relay_lock_timeout_seconds == 15.0


def test_a_lock_timeout_at_or_below_the_kafka_wait_is_refused() -> None:
    settings = load_settings({"RELAY_DELIVERY_TIMEOUT_MS": "10000", "RELAY_LOCK_TIMEOUT_SECONDS": "12"})
    with pytest.raises(ValueError, match="RELAY_LOCK_TIMEOUT_SECONDS"):
        relay_kafka_wait_seconds(settings)
    with pytest.raises(ValueError, match="shorter"):
        relay_outbox(None, None, "t", delivery_timeout_s=20, lock_timeout_s=20)  # type: ignore[arg-type]
