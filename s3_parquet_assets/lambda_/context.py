"""What the Lambda context object tells an invocation: its deadline."""

from __future__ import annotations

from typing import Any

from ..core.deadline import deadline_from_remaining_ms

__all__ = ["invocation_deadline"]


def invocation_deadline(context: Any) -> float | None:
    """The ``time.monotonic()`` moment the invocation times out (``None`` without a Lambda context):
    every load stops cleanly before it, so a timeout never strands a lease or an upload."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return deadline_from_remaining_ms(int(remaining()))
