"""The partitioning of every table: a daily partition per ``data_ref`` (``YYYYMMDD``, UTC), from the
table's ``start_date``."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

__all__ = ["PARTITION_FMT", "TIMEZONE", "daily_partitions"]

PARTITION_FMT = "%Y%m%d"
TIMEZONE = "UTC"


def daily_partitions(start_date: str) -> DailyPartitionsDefinition:
    """Daily partitions keyed by ``data_ref`` from ``start_date`` (``YYYYMMDD``) to yesterday.

    ``end_offset=0``: the newest partition is the last *complete* day, i.e. yesterday in UTC, which
    is the day a daily export describes (the core's default ``data_ref``).
    """
    return DailyPartitionsDefinition(
        start_date=start_date, fmt=PARTITION_FMT, timezone=TIMEZONE, end_offset=0
    )
