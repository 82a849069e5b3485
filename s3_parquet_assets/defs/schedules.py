"""Each table's job and its daily catch-up schedule.

At the table's ``schedule`` time (HH:MM UTC) the schedule checks the trailing ``catchup_days`` days
ending yesterday (never before ``start_date``) with the core's :func:`~s3_parquet_assets.core.check_day`,
the rule the Lambda's catch-up uses: a day is requested only when its newest export is not the one
its Glue partition records (never loaded, failed, or re-exported). Yesterday with no export yet is
requested anyway, so that its run fails saying so (as a plain daily load would). One run per day, so
a bad day fails alone; the run key holds the tick's day, so a day that failed is asked again at the
next tick.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from s3_parquet_assets.core import LoadError, TableSpec, check_day, window

from .keys import TableKeys
from .resources import S3Resource, aws_clients

__all__ = ["build_catchup_schedule", "build_table_job", "catchup_requests"]


def build_table_job(spec: TableSpec, partitions_def: PartitionsDefinition[str]) -> Any:
    """The table's two assets and their checks, one day (or a range, from a backfill) per run."""
    keys = TableKeys(spec)
    return define_asset_job(
        keys.job,
        selection=AssetSelection.assets(keys.source, keys.table),
        partitions_def=partitions_def,
        description=f"Pick {spec.name}'s export of the day and load it into its Parquet table (with checks).",
    )


def catchup_requests(
    spec: TableSpec, end_day: str, s3: S3Resource, *, tick: str
) -> tuple[list[RunRequest], dict[str, str]]:
    """The runs the catch-up of the window ending ``end_day`` needs, and each window day's verdict."""
    clients = aws_clients(s3)
    requests: list[RunRequest] = []
    verdicts: dict[str, str] = {}
    for day in window(end_day, spec.catchup_days, spec.start_date):
        try:
            check = check_day(clients, spec.event(day))
        except LoadError as exc:  # unreadable source or catalog: the run reports it for that day
            verdicts[day] = f"load ({exc})"
        else:
            verdicts[day] = check.verdict
            if check.verdict == "current" or (check.verdict == "no export" and day != end_day):
                continue
        requests.append(RunRequest(run_key=f"{spec.name}:{tick}:{day}", partition_key=day))
    return requests, verdicts


def build_catchup_schedule(spec: TableSpec, job: Any) -> ScheduleDefinition:
    """Every day at the table's ``schedule`` time (UTC): the catch-up runs of the module docstring."""
    keys = TableKeys(spec)
    hours, minutes = spec.hhmm

    @schedule(
        name=keys.schedule,
        cron_schedule=f"{minutes} {hours} * * *",
        execution_timezone="UTC",
        target=job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Loads {spec.name}'s yesterday at {spec.schedule} UTC and catches up the trailing "
            f"{spec.catchup_days} day(s) whose export changed or was never loaded."
        ),
    )
    def _catchup(context: ScheduleEvaluationContext, s3: S3Resource) -> list[RunRequest] | SkipReason:
        tick = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)
        end_day = (tick - timedelta(days=1)).strftime("%Y%m%d")
        requests, verdicts = catchup_requests(spec, end_day, s3, tick=tick.strftime("%Y%m%d"))
        context.log.info(f"{spec.name}: " + ", ".join(f"{d}: {v}" for d, v in verdicts.items()))
        if not requests:
            return SkipReason(f"{spec.name}: every day of the window is current or has no export yet")
        return requests

    return _catchup
