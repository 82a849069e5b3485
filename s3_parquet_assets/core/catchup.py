"""Catching up: a scheduled run re-checks the table's trailing days, not only yesterday.

For each day of the window (``catchup_days`` days ending with the newest complete day, never before
the table's ``start_date``) it lists the day's source and reads the day's Glue partition, and loads
the day only when its newest source object is not the one the partition was loaded from (the
partition records the source ETag). A day that failed, timed out or was refused by a stuck lease is
loaded by the next scheduled run; a re-export of an old day inside the window is picked up; a day
already current costs one listing and one catalog read.

A day of the window with no export yet is reported and skipped, except the newest day: its export
missing is an error, as a plain scheduled load of yesterday would say.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from .aws import AwsClients
from .errors import LoadError
from .event import parse_event
from .pipeline import error_response, handle_event, loaded_etag
from .source import newest_export
from .tables import TableSpec

__all__ = ["DayCheck", "as_date", "catch_up", "check_day", "window"]

log = logging.getLogger(__name__)

Verdict = Literal["load", "current", "no export"]


def as_date(day: str) -> date:
    """A YYYYMMDD day as a date."""
    return date(int(day[:4]), int(day[4:6]), int(day[6:]))


def window(end_day: str, days: int, start_date: str | None = None) -> list[str]:
    """``days`` days ending with ``end_day`` (oldest first), none before ``start_date``."""
    end = as_date(end_day)
    out = [(end - timedelta(days=n)).strftime("%Y%m%d") for n in range(days - 1, -1, -1)]
    return [d for d in out if start_date is None or d >= start_date]


@dataclass(frozen=True)
class DayCheck:
    """What the catch-up found for one day: ``load`` (never loaded, or the source changed),
    ``current`` (loaded from the newest export) or ``no export``."""

    data_ref: str
    verdict: Verdict
    source_key: str | None = None
    source_etag: str | None = None
    loaded_etag: str | None = None


def check_day(clients: AwsClients, event: Mapping[str, Any]) -> DayCheck:
    """Compare the day's newest export with what its Glue partition was loaded from (raises
    ``LoadError`` for a bad event or an unreadable source or catalog)."""
    ev = parse_event(event)
    src = newest_export(clients.s3, ev)
    if src is None:
        return DayCheck(ev.data_ref, "no export")
    etag = loaded_etag(clients, ev)
    verdict: Verdict = "current" if etag == src.etag else "load"
    return DayCheck(ev.data_ref, verdict, src.key, src.etag, etag)


def catch_up(
    spec: TableSpec,
    end_day: str,
    clients: AwsClients,
    *,
    overrides: Mapping[str, Any] | None = None,
    load: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Check the window ending with ``end_day`` and load every day that needs it, oldest first; each
    day is isolated (a failed day does not stop the others).

    Returns ``{"statusCode", "body", "table", "days": {day: verdict or error}, "results": [...]}``:
    200 when every day is loaded or current, 500 naming the failed days otherwise."""
    run = load or (lambda event: handle_event(event, clients))
    days: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for day in window(end_day, spec.catchup_days, spec.start_date):
        event = spec.event(day, overrides)
        try:
            check = check_day(clients, event)
        except LoadError as exc:
            response = error_response(exc)
        else:
            if check.verdict == "no export" and day != end_day:
                log.info("%s %s: no export yet, skipped", spec.name, day)
                days[day] = "no export"
                continue
            if check.verdict == "current":
                log.info("%s %s: current (loaded from %s)", spec.name, day, check.source_etag)
                days[day] = "current"
                continue
            response = run(event)
        if response.get("statusCode") == 200 and "result" in response:
            days[day] = "loaded"
            results.append(response["result"])
        elif response.get("statusCode") == 200:  # e.g. another load of the same export holds the day
            days[day] = str(response.get("body"))
        else:
            days[day] = str(response.get("body"))
            failures.append(f"{day}: {response.get('body')}")
    return {
        "statusCode": 500 if failures else 200,
        "body": "; ".join(failures) if failures else "Success",
        "table": spec.name,
        "days": days,
        "results": results,
    }
