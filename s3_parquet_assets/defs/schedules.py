"""The daily schedule: load yesterday's partition every morning (UTC)."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    PartitionsDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from .assets import SOURCE, TABLE

__all__ = ["DAILY_JOB", "build_daily_job", "build_daily_schedule"]

DAILY_JOB = "load_daily"


def build_daily_job(partitions_def: PartitionsDefinition[str]) -> UnresolvedAssetJobDefinition:
    """Both assets and their checks, one day (or a range, from a backfill) per run."""
    return define_asset_job(
        DAILY_JOB,
        selection=AssetSelection.assets(SOURCE, TABLE),
        partitions_def=partitions_def,
        description="Pick the day's export and load it into the Parquet table (with checks).",
    )


def build_daily_schedule(job: UnresolvedAssetJobDefinition, *, hour_of_day: int = 6):  # type: ignore[no-untyped-def]
    """Every day at ``hour_of_day``:00 UTC, a run for the newest partition (yesterday)."""
    return build_schedule_from_partitioned_job(
        job,
        name="load_yesterday",
        hour_of_day=hour_of_day,
        minute_of_hour=0,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Loads yesterday's export every morning (UTC).",
    )
