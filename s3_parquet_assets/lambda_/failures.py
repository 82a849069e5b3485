"""When a failed load is returned and when it is raised (``S3PA_RAISE_ON_ERROR``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .events import EventKind
from .settings import RaisePolicy

__all__ = ["LoadFailedError", "must_raise"]


class LoadFailedError(RuntimeError):
    """Raised for an asynchronous invocation whose load failed, so Lambda sees a function error
    (alarm, retries, dead-letter queue). The message is the response body."""

    def __init__(self, response: Mapping[str, Any]) -> None:
        super().__init__(str(response.get("body", "Error")))
        self.response = dict(response)


def must_raise(response: Mapping[str, Any], kind: EventKind, policy: RaisePolicy) -> bool:
    """A failed response is raised under ``always``, and under ``auto`` for the asynchronous kinds
    (scheduled, s3) that nobody reads the response of."""
    if response.get("statusCode") == 200:
        return False
    return policy == "always" or (policy == "auto" and kind in ("scheduled", "s3"))
