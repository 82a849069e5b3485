"""A caller's deadline for a load (a Lambda invocation's time limit).

A load given a deadline stops on its own before it: at each step (before the lease, before reading,
between read blocks, before the catalog step and the swap) it checks that at least ``margin`` seconds
are left, the time it keeps to stop cleanly (abort its uploads, remove its folder, release its
lease). Stopping raises :class:`DeadlineReached`, a ``LoadError`` of the stage it stopped in. The
day's lease never lasts past the deadline (:meth:`Deadline.wall`), so a load killed at its deadline
anyway leaves a lease that expires then, not minutes later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import LoadError, Stage

__all__ = ["Deadline", "DeadlineReached", "deadline_from_remaining_ms"]


class DeadlineReached(LoadError):
    """The load stopped itself before the caller's deadline (its stage is where it stopped)."""


def deadline_from_remaining_ms(remaining_ms: int) -> float:
    """The ``time.monotonic()`` deadline of a caller with ``remaining_ms`` left (Lambda:
    ``context.get_remaining_time_in_millis()``)."""
    return time.monotonic() + remaining_ms / 1000


@dataclass(frozen=True)
class Deadline:
    """``at``: the ``time.monotonic()`` moment the load must have ended by (``None``: no deadline);
    ``margin``: the seconds kept to stop cleanly."""

    at: float | None
    margin: float

    def left(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        return None if self.at is None else self.at - time.monotonic()

    def wall(self) -> datetime | None:
        """The deadline as a UTC time (for the lease's expiry)."""
        left = self.left()
        return None if left is None else datetime.now(UTC) + timedelta(seconds=left)

    def check(self, stage: Stage, step: str, day: str) -> None:
        """Raise :class:`DeadlineReached` in ``stage`` if less than ``margin`` seconds are left."""
        left = self.left()
        if left is not None and left < self.margin:
            raise DeadlineReached(
                stage,
                f"stopped {step} with {max(left, 0.0):.1f} s left before the caller's deadline (a load "
                f"keeps {self.margin:g} s to stop cleanly); nothing of day {day} was replaced, this "
                "load's uploads were aborted, its files removed and its lease released",
            )
