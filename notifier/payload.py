"""What a notification task carries: the raw records, as the projector hands them over."""

from __future__ import annotations

from typing import Any


def batch_repr(deliveries: list[dict[str, Any]]) -> str:
    """What logs and Flower show of a task's arguments: a count, not the events (addresses, codes)."""
    return f"[<{len(deliveries)} events>]"
