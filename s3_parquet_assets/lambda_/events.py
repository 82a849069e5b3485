"""The kinds of event the function serves, and what each one asks to load.

``direct``
    A load event, either **full** (the core's contract, used as is) or **by name**. The rule: with a
    tables file, an event that has a ``table`` and lacks at least one of the contract's required
    fields (``bucket_src``, ``bucket_dstn``, ``substr``, ``schema``, ``pathoutput``, ``table``,
    ``database``) is by name: its ``table`` is a table's ``name`` in the file, every other field
    (``data_ref`` included) overrides the file's settings for this load. An event with every
    required field is a full event (its ``table`` is the Glue table), tables file or not. Without a
    tables file every direct event is full (the core names what is missing).
``scheduled``
    An EventBridge ``"Scheduled Event"`` (``source`` ``aws.events``), with a top-level ``"table"``
    naming the table (the rule's input). The run catches up that table: it checks the
    ``catchup_days`` days ending with the day before the event's ``time`` (UTC) and loads each whose
    source changed since its partition was loaded. Without ``"table"`` it serves the only table
    (the environment's, or a tables file's single table); with several, it is an error.
``s3``
    An S3 ``ObjectCreated:*`` notification (the classic ``Records`` shape, or the EventBridge
    ``"Object Created"`` shape): see :mod:`.routing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from ..core import LoadError, Tables, contract, yesterday

__all__ = [
    "EventKind",
    "by_name_load",
    "classify",
    "is_by_name",
    "scheduled_day",
    "scheduled_table",
]

EventKind = Literal["direct", "scheduled", "s3"]

_REQUIRED = tuple(f.name for f in contract.event_fields() if f.required)
TABLE_KEY = "table"


def _is_s3_records(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records)
    )


def classify(event: Any) -> EventKind:
    """Which kind of event this is (see the module docstring). Raises ``LoadError("validate")`` for
    AWS event shapes the handler does not serve."""
    if not isinstance(event, Mapping):
        return "direct"  # the core names the problem
    if event.get("detail-type") == "Scheduled Event" and event.get("source") == "aws.events":
        return "scheduled"
    if event.get("detail-type") == "Object Created" and event.get("source") == "aws.s3":
        return "s3"
    if _is_s3_records(event) or event.get("Event") == "s3:TestEvent":
        return "s3"
    if "Records" in event:
        sources = sorted({str(r.get("eventSource")) for r in event["Records"] if isinstance(r, dict)})
        raise LoadError(
            "validate",
            f"unsupported notification (Records from {sources or 'nothing'}); this function serves "
            "direct load events, EventBridge scheduled events and S3 ObjectCreated notifications",
        )
    if "detail-type" in event and "source" in event:
        raise LoadError(
            "validate",
            f"unsupported EventBridge event {event.get('source')!r} / {event.get('detail-type')!r}; "
            "expected a 'Scheduled Event' from aws.events or an 'Object Created' from aws.s3",
        )
    return "direct"


def is_by_name(event: Any) -> bool:
    """A direct event that names a table of the tables file rather than carrying the whole contract
    (it has a ``table`` and misses a required field). Only meaningful with a tables file."""
    return (
        isinstance(event, Mapping)
        and isinstance(event.get(TABLE_KEY), str)
        and any(name not in event for name in _REQUIRED)
    )


def by_name_load(event: Mapping[str, Any], tables: Tables) -> dict[str, Any]:
    """The load event of a by-name event: the named table's settings, then the event's other fields
    (``data_ref`` included). An unknown name is a ``validate`` error listing the declared tables."""
    spec = tables.get(str(event[TABLE_KEY]))
    overrides = {k: v for k, v in event.items() if k != TABLE_KEY}
    return {**spec.settings, **overrides}


def _event_time(event: Mapping[str, Any]) -> datetime:
    stamp = event.get("time")
    if not isinstance(stamp, str):
        raise LoadError("validate", "scheduled event without a 'time' (ISO 8601) to count yesterday from")
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise LoadError(
            "validate", f"scheduled event 'time' {stamp!r} is not an ISO 8601 timestamp"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def scheduled_day(event: Mapping[str, Any]) -> str:
    """The newest day a scheduled run serves: the day before the event's ``time`` (UTC)."""
    return yesterday(_event_time(event))


def scheduled_table(event: Mapping[str, Any]) -> str | None:
    """The table a scheduled event names (top-level ``"table"``), if any."""
    name = event.get(TABLE_KEY)
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise LoadError("validate", f"scheduled event 'table' must be a table name, got {name!r}")
    return name
