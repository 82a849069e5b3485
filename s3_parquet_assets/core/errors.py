"""The one error type of the core: every failure names the stage it happened in."""

from __future__ import annotations

from typing import Literal

Stage = Literal["validate", "list", "read", "write", "catalog", "swap", "lock"]

__all__ = ["LoadError", "Stage"]


class LoadError(Exception):
    """A load failed in ``stage`` with a message meant for a human.

    The message always names the field, object or line at fault.
    """

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage: Stage = stage
        self.message = message
