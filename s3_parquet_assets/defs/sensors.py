"""A sensor on the source prefix: a run for the day of every new export.

It lists the fixed part of the prefix (before ``{data_ref}``), keeps keys holding the substring, and
requests one run per day for the objects modified after its cursor. The cursor (stored by Dagster,
so it survives restarts) is the newest LastModified seen plus the keys carrying exactly that time
(S3 keeps whole seconds, so two exports can share it).

The day of an object is the ``{data_ref}`` part of its key when the prefix has the placeholder,
otherwise the day before its LastModified (a daily export describes yesterday). Days that are not a
partition yet (today, or before the start date) are skipped; the schedule picks today up tomorrow.
"""

import json
import re
from dataclasses import dataclass
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
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from .resources import LoadSettings, S3Resource, aws_clients

__all__ = ["Cursor", "build_source_sensor", "day_of_key"]


@dataclass(frozen=True)
class Cursor:
    last_modified: datetime | None = None
    keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["last_modified"]), tuple(data.get("keys", [])))

    def dumps(self) -> str:
        stamp = self.last_modified.isoformat() if self.last_modified else None
        return json.dumps({"last_modified": stamp, "keys": sorted(self.keys)})

    def is_new(self, key: str, stamp: datetime) -> bool:
        if self.last_modified is None:
            return True
        return stamp > self.last_modified or (stamp == self.last_modified and key not in self.keys)


def day_of_key(prefix_template: str, key: str, last_modified: datetime) -> str | None:
    """The ``data_ref`` an object belongs to (see the module docstring); ``None`` if the key does not
    fit the template."""
    if "{data_ref}" in prefix_template:
        pattern = re.escape(prefix_template).replace(re.escape("{data_ref}"), r"(?P<d>\d{8})", 1)
        pattern = pattern.replace(re.escape("{data_ref}"), r"(?P=d)")
        m = re.match(pattern, key)
        return m.group("d") if m else None
    return (last_modified.astimezone(UTC) - timedelta(days=1)).strftime("%Y%m%d")


def build_source_sensor(
    job: UnresolvedAssetJobDefinition,
    partitions_def: PartitionsDefinition[str],
    *,
    minimum_interval_seconds: int = 60,
) -> SensorDefinition:
    @sensor(
        name="new_source_objects",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description="Requests a run for the day of each new export under the source prefix.",
    )
    def new_source_objects(
        context: SensorEvaluationContext, s3: S3Resource, load_settings: LoadSettings
    ) -> SensorResult | SkipReason:
        cursor = Cursor.parse(context.cursor)
        clients = aws_clients(s3)
        root = load_settings.listing_root
        newest: dict[str, dict[str, Any]] = {}
        top = cursor.last_modified
        top_keys = set(cursor.keys)
        ignored: list[str] = []
        for page in clients.s3.get_paginator("list_objects_v2").paginate(
            Bucket=load_settings.bucket_src, Prefix=root
        ):
            for obj in page.get("Contents", []):
                key, stamp = obj["Key"], obj["LastModified"]
                if key.endswith("/") or load_settings.substr not in key or not cursor.is_new(key, stamp):
                    continue
                if top is None or stamp > top:
                    top, top_keys = stamp, {key}
                elif stamp == top:
                    top_keys.add(key)
                day = day_of_key(load_settings.prefix, key, stamp)
                if day is None or not partitions_def.has_partition_key(day):
                    ignored.append(f"{key} (day {day})")
                    continue
                best = newest.get(day)
                if best is None or (stamp, key) > (best["LastModified"], best["Key"]):
                    newest[day] = obj
        if ignored:
            context.log.info(f"not a partition (yet): {', '.join(ignored[:20])}")
        new_cursor = Cursor(top, tuple(sorted(top_keys))).dumps() if top is not None else context.cursor
        if not newest:
            return SensorResult(
                skip_reason=SkipReason(f"no new object under s3://{load_settings.bucket_src}/{root}"),
                cursor=new_cursor,
            )
        requests = [
            RunRequest(
                run_key=f"{day}:{obj['Key']}:{str(obj.get('ETag', '')).strip(chr(34))}",
                partition_key=day,
                tags={"s3pa/source_key": obj["Key"]},
            )
            for day, obj in sorted(newest.items())
        ]
        context.log.info(f"{len(requests)} day(s) with new exports: {', '.join(sorted(newest))}")
        return SensorResult(run_requests=requests, cursor=new_cursor)

    return new_source_objects
