"""Definitions from a validated tables file: per table its assets, checks, job, schedule and sensor.

Every table has its own partitions (from its ``start_date``), job, schedule and sensor, so turning one
table's automation off in the UI leaves the others running. The one resource, ``s3``
(dagster-aws ``S3Resource``), says where AWS is; boto3's standard environment fills what it leaves
unset (credentials, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for an emulator).
"""

from __future__ import annotations

from dagster import Definitions

from s3_parquet_assets.core import Tables, TableSpec

from .assets import DEFAULT_DAYS_PER_RUN, build_load_assets
from .keys import TableKeys, check_dagster_fields, check_unique_names
from .partitions import daily_partitions
from .resources import S3Resource
from .schedules import build_catchup_schedule, build_table_job
from .sensors import DEFAULT_INTERVAL_SECONDS, build_source_sensor

__all__ = ["build_definitions", "build_table_definitions"]


def build_table_definitions(
    spec: TableSpec,
    *,
    days_per_run: int = DEFAULT_DAYS_PER_RUN,
    sensor_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> Definitions:
    """One table's assets (with checks), job, catch-up schedule and source sensor."""
    partitions = daily_partitions(spec.start_date)
    job = build_table_job(spec, partitions)
    return Definitions(
        assets=[build_load_assets(spec, partitions, days_per_run=days_per_run)],
        jobs=[job],
        schedules=[build_catchup_schedule(spec, job)],
        sensors=[
            build_source_sensor(spec, job, partitions, minimum_interval_seconds=sensor_interval_seconds)
        ],
    )


def build_definitions(
    tables: Tables,
    *,
    s3: S3Resource | None = None,
    days_per_run: int = DEFAULT_DAYS_PER_RUN,
    sensor_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> Definitions:
    """Every table of ``tables``, and the ``s3`` resource (default: boto3's environment)."""
    check_unique_names((TableKeys(spec) for spec in tables), tables.source)
    for spec in tables:
        check_dagster_fields(spec, tables.source)
    per_table = [
        build_table_definitions(
            spec, days_per_run=days_per_run, sensor_interval_seconds=sensor_interval_seconds
        )
        for spec in tables
    ]
    return Definitions.merge(*per_table, Definitions(resources={"s3": s3 or S3Resource()}))
