"""The component: ``defs.yaml`` points at the tables file, and every declared table becomes assets,
checks, a job, a catch-up schedule and a source sensor (see :mod:`.build`).

.. code-block:: yaml

    type: s3_parquet_assets.defs.component.S3ParquetTables
    attributes:
      tables_file: tables.yaml      # relative to this defs.yaml; or an s3://bucket/key URI

The tables file is the one the Lambda and the CLI read (:func:`s3_parquet_assets.core.read_tables`).
``S3PA_TABLES`` in the environment (a path or an ``s3://`` URI, as for the Lambda) takes precedence;
it is read when the definitions load, never at import. A bad file fails loading with the table and
the field named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import boto3
from dagster import Component, ComponentLoadContext, Definitions, Model, Resolvable
from pydantic import Field

from s3_parquet_assets.core import Tables, read_tables

from .assets import DEFAULT_DAYS_PER_RUN
from .build import build_definitions
from .sensors import DEFAULT_INTERVAL_SECONDS

__all__ = ["TABLES_ENV", "S3ParquetTables", "tables_location"]

TABLES_ENV = "S3PA_TABLES"


def tables_location(tables_file: str, base: Path, environ: Mapping[str, str]) -> str:
    """Where the tables file is: ``S3PA_TABLES`` if set, else ``tables_file`` (relative to ``base``)."""
    from_env = environ.get(TABLES_ENV)
    if from_env:  # a relative path is the process's, as for any path in the environment
        return from_env
    if tables_file.startswith("s3://") or Path(tables_file).is_absolute():
        return tables_file
    return str(base / tables_file)


def load_tables(location: str) -> Tables:
    """Read and validate the tables file (an ``s3://`` URI is read with boto3's environment)."""
    s3 = boto3.client("s3") if location.startswith("s3://") else None
    return read_tables(location, s3=s3)


class S3ParquetTables(Component, Model, Resolvable):  # type: ignore[misc]
    """Daily CSV exports on S3 loaded into partitioned Parquet + Glue tables, one set of assets,
    checks and automation per table of the tables file."""

    tables_file: str = Field(
        default="tables.yaml",
        description="The tables file: a path relative to this defs.yaml, or an s3://bucket/key URI. "
        f"{TABLES_ENV} in the environment takes precedence.",
    )
    days_per_run: int = Field(
        default=DEFAULT_DAYS_PER_RUN, ge=1, description="Days a backfill run loads (per table)."
    )
    sensor_interval_seconds: int = Field(
        default=DEFAULT_INTERVAL_SECONDS, ge=1, description="Minimum seconds between source sensor ticks."
    )

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        location = tables_location(self.tables_file, context.path, os.environ)
        return build_definitions(
            load_tables(location),
            days_per_run=self.days_per_run,
            sensor_interval_seconds=self.sensor_interval_seconds,
        )
