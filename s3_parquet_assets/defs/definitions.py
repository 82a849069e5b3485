"""The code location: assembles partitions, assets, checks, job, schedule, sensor and resources.

Settings come from the environment through ``EnvVar`` (resolved when a run starts, never baked in):

- required: ``S3PA_BUCKET_SRC``, ``S3PA_BUCKET_DSTN``, ``S3PA_PREFIX``, ``S3PA_SUBSTR``, ``S3PA_SCHEMA``
  (JSON), ``S3PA_PATHOUTPUT``, ``S3PA_TABLE``, ``S3PA_DATABASE``, and ``AWS_REGION``;
- AWS credentials and ``AWS_ENDPOINT_URL`` (an emulator) are boto3's standard environment;
- optional, read when the location loads: ``S3PA_START_DATE`` (first partition, YYYYMMDD) and
  ``S3PA_OPTIONS``, a JSON object of the other settings (``header``, ``delimiter``, ``sse``,
  ``kms_key_id``, ``run_on``, ``lambda_function``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dagster import Definitions, EnvVar

from .assets import DEFAULT_DAYS_PER_RUN, build_load_assets
from .partitions import DEFAULT_START_DATE, daily_partitions
from .resources import LoadSettings, S3Resource
from .schedules import build_daily_job, build_daily_schedule
from .sensors import build_source_sensor

__all__ = ["build_definitions", "defs", "env_load_settings"]


def env_load_settings(options: Mapping[str, Any] | None = None) -> LoadSettings:
    """``LoadSettings`` whose required fields are ``EnvVar`` s (see the module docstring)."""
    return LoadSettings(
        bucket_src=EnvVar("S3PA_BUCKET_SRC"),
        bucket_dstn=EnvVar("S3PA_BUCKET_DSTN"),
        prefix=EnvVar("S3PA_PREFIX"),
        substr=EnvVar("S3PA_SUBSTR"),
        schema_spec=EnvVar("S3PA_SCHEMA"),
        pathoutput=EnvVar("S3PA_PATHOUTPUT"),
        table=EnvVar("S3PA_TABLE"),
        database=EnvVar("S3PA_DATABASE"),
        **dict(options or {}),
    )


def build_definitions(
    *,
    start_date: str = DEFAULT_START_DATE,
    load_settings: LoadSettings | None = None,
    s3: S3Resource | None = None,
    days_per_run: int = DEFAULT_DAYS_PER_RUN,
) -> Definitions:
    partitions = daily_partitions(start_date)
    load_assets = build_load_assets(partitions, days_per_run=days_per_run)
    job = build_daily_job(partitions)
    return Definitions(
        assets=[load_assets],
        jobs=[job],
        schedules=[build_daily_schedule(job)],
        sensors=[build_source_sensor(job, partitions)],
        resources={
            "s3": s3 or S3Resource(region_name=EnvVar("AWS_REGION")),
            "load_settings": load_settings or env_load_settings(),
        },
    )


defs = build_definitions(
    start_date=EnvVar("S3PA_START_DATE").get_value() or DEFAULT_START_DATE,
    load_settings=env_load_settings(json.loads(EnvVar("S3PA_OPTIONS").get_value() or "{}")),
)
