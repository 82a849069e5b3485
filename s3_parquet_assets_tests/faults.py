"""Real fault injection through botocore's event system (no patching of the code under test).

``kill_at.py`` uses :func:`install_kill` in a loader subprocess; in-process tests use :func:`fail_on`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError


def _matcher(operation: str, nth: int, action: Callable[[], Any]) -> Callable[..., Any]:
    seen = {"n": 0}

    def hook(**_kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == nth:
            return action()
        return None

    return hook


def install_kill(session: boto3.Session, event_name: str, nth: int = 1) -> None:
    """SIGKILL this process when ``event_name`` (e.g. ``before-call.s3.UploadPart``) fires the nth time."""
    session.events.register(
        event_name, _matcher(event_name, nth, lambda: os.kill(os.getpid(), signal.SIGKILL))
    )


def client_error(code: str, operation: str, status: int = 500) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


def fail_on(session: boto3.Session, event_name: str, nth: int = 1, code: str = "InternalError") -> None:
    """Raise a ClientError the nth time ``event_name`` fires (a permanent failure at that step)."""
    op = event_name.rsplit(".", 1)[-1]

    def boom() -> Any:
        raise client_error(code, op)

    session.events.register(event_name, _matcher(event_name, nth, boom))
