"""The one partitioning of the project: a daily partition per ``data_ref`` (``YYYYMMDD``, UTC)."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

__all__ = ["DEFAULT_START_DATE", "DEFAULT_TIMEZONE", "PARTITION_FMT", "daily_partitions"]

PARTITION_FMT = "%Y%m%d"
DEFAULT_START_DATE = "20240101"
DEFAULT_TIMEZONE = "UTC"


def daily_partitions(start_date: str = DEFAULT_START_DATE) -> DailyPartitionsDefinition:
    """Daily partitions keyed by ``data_ref`` from ``start_date`` (``YYYYMMDD``) to yesterday.

    ``end_offset=0``: the newest partition is the last *complete* day, i.e. yesterday in UTC, which
    is the day a daily export describes (the core's default ``data_ref``).
    """
    return DailyPartitionsDefinition(
        start_date=start_date, fmt=PARTITION_FMT, timezone=DEFAULT_TIMEZONE, end_offset=0
    )
