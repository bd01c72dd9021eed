import pytest

from event_contract import Delivery
from projector.projection.tasks import MAX_BACKOFF_SECONDS, retry_delay


def test_utf8_values_travel_as_text():
    delivery = Delivery.from_bytes('{"a":"é"}'.encode(), "t/0/1", "rid")
    assert delivery.encoding == "utf-8"
    assert Delivery.from_dict(delivery.to_dict()).raw() == '{"a":"é"}'.encode()


def test_non_utf8_bytes_survive_as_base64():
    raw = b"\xff\x00garbage\xfe"
    delivery = Delivery.from_bytes(raw)
    assert delivery.encoding == "base64"
    assert Delivery.from_dict(delivery.to_dict()).raw() == raw


def test_missing_value_is_an_empty_event():
    assert Delivery.from_bytes(None).raw() == b""


@pytest.mark.parametrize("retries", [0, 1, 5, 30])
def test_backoff_grows_with_jitter_and_is_capped(retries):
    ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * 2**retries)
    delays = [retry_delay(retries) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jitter: not every worker retries at the same instant
