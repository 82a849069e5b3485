"""The container's AWS clients: made once, on first use (never at import, never before an event is
validated), then reused by every invocation of the warm container."""

from __future__ import annotations

from ..core import AwsClients, make_clients

__all__ = ["get_clients", "reset_clients"]

_CLIENTS: AwsClients | None = None


def get_clients() -> AwsClients:
    """The container's AWS clients, made on first use and then reused by every invocation."""
    global _CLIENTS  # noqa: PLW0603 - the per-container cache is the point
    if _CLIENTS is None:
        _CLIENTS = make_clients()
    return _CLIENTS


def reset_clients() -> None:
    """Forget the cached clients (tests; a changed environment)."""
    global _CLIENTS  # noqa: PLW0603
    _CLIENTS = None
