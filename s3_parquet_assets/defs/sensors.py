"""Each table's sensor on its source: a run for the day of every new export.

It never lists the table's whole history. With ``{data_ref}`` in the prefix it lists only the prefixes
of the trailing ``catchup_days`` days ending yesterday (the window the schedule also re-checks), one
listing each, and picks a day's export with the core's rule (newest key holding ``substr``). A day is
requested when its export's ETag is not the one the cursor recorded for it; the cursor (stored by
Dagster, so it survives restarts) maps each window day to that ETag and forgets days that left the
window. A re-export of an older day is loaded by a backfill of that day.

A prefix without ``{data_ref}`` has no day in its keys: the listing starts after the newest export
key seen (export keys must sort in arrival order, e.g. a timestamp in the name) and the day is the one
before the object's LastModified (a daily export describes yesterday).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from s3_parquet_assets.core import AwsClients, TableSpec, newest_export, window

from .keys import TableKeys
from .resources import S3Resource, aws_clients

__all__ = ["Cursor", "build_source_sensor", "new_exports"]

DEFAULT_INTERVAL_SECONDS = 60


@dataclass
class Cursor:
    """Per day, the ETag of the export last requested; ``after``: the newest export key seen
    (prefixes without ``{data_ref}``)."""

    etags: dict[str, str] = field(default_factory=dict)
    after: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(dict(data.get("etags", {})), str(data.get("after", "")))

    def dumps(self) -> str:
        return json.dumps({"etags": dict(sorted(self.etags.items())), "after": self.after})


@dataclass(frozen=True)
class NewExport:
    day: str
    key: str
    etag: str


def _by_day(spec: TableSpec, clients: AwsClients, days: list[str], cursor: Cursor) -> list[NewExport]:
    out: list[NewExport] = []
    for day in days:
        src = newest_export(clients.s3, spec.load_event(day))
        if src is None:
            continue
        if cursor.etags.get(day) != src.etag:
            out.append(NewExport(day, src.key, src.etag))
    return out


def _after_cursor(spec: TableSpec, clients: AwsClients, cursor: Cursor) -> tuple[list[NewExport], str]:
    ev = spec.probe
    newest: dict[str, tuple[datetime, NewExport]] = {}
    after = cursor.after
    kwargs: dict[str, Any] = {"Bucket": ev.bucket_src, "Prefix": ev.prefix}
    if cursor.after:
        kwargs["StartAfter"] = cursor.after
    if ev.expected_bucket_owner:
        kwargs["ExpectedBucketOwner"] = ev.expected_bucket_owner
    for page in clients.s3.get_paginator("list_objects_v2").paginate(**kwargs):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/") or ev.substr not in key:
                continue
            after = max(after, key)
            stamp = obj["LastModified"]
            day = (stamp.astimezone(UTC) - timedelta(days=1)).strftime("%Y%m%d")
            if day not in newest or (stamp, key) > (newest[day][0], newest[day][1].key):
                newest[day] = (stamp, NewExport(day, key, str(obj.get("ETag", "")).strip('"')))
    return [n for _, (_, n) in sorted(newest.items())], after


def new_exports(
    spec: TableSpec, s3: S3Resource, cursor: Cursor, *, now: datetime
) -> tuple[list[NewExport], Cursor]:
    """The exports to request a run for, and the next cursor (see the module docstring)."""
    clients = aws_clients(s3)
    yesterday = (now.astimezone(UTC) - timedelta(days=1)).strftime("%Y%m%d")
    if "{data_ref}" not in spec.probe.prefix:
        found, after = _after_cursor(spec, clients, cursor)
        return found, Cursor({}, after)
    days = window(yesterday, spec.catchup_days, spec.start_date)
    found = _by_day(spec, clients, days, cursor)
    etags = {d: e for d, e in cursor.etags.items() if d in days}
    etags.update({n.day: n.etag for n in found})
    return found, Cursor(etags)


def build_source_sensor(
    spec: TableSpec,
    job: Any,
    partitions_def: PartitionsDefinition[str],
    *,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> SensorDefinition:
    keys = TableKeys(spec)

    @sensor(
        name=keys.sensor,
        target=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"Requests a run for each new export of {spec.name} among its last {spec.catchup_days} "
            "day prefixes."
        ),
    )
    def _new_exports(context: SensorEvaluationContext, s3: S3Resource) -> SensorResult:
        found, cursor = new_exports(spec, s3, Cursor.parse(context.cursor), now=datetime.now(UTC))
        requests = [
            RunRequest(
                run_key=f"{spec.name}:{n.day}:{n.key}:{n.etag}",
                partition_key=n.day,
                tags={"s3pa/source_key": n.key},
            )
            for n in found
            if partitions_def.has_partition_key(n.day)
        ]
        if not requests:
            return SensorResult(skip_reason=SkipReason(f"{spec.name}: no new export"), cursor=cursor.dumps())
        context.log.info(f"{spec.name}: new exports for {', '.join(r.partition_key or '' for r in requests)}")
        return SensorResult(run_requests=requests, cursor=cursor.dumps())

    return _new_exports
