"""Three tables of different shapes, declared in one tables file, and their daily exports.

The shapes (and the staging) are the demo's, :mod:`s3_parquet_assets.demo_data`, with the test
buckets and database:

- ``sales``: headerless ``.csv.gz`` under a ``{data_ref}`` folder, names-only schema;
- ``customers``: a ``.zip`` holding a CSV with a header row and ``;`` delimiter, the day in the file
  name (``crm/customers_{data_ref}``), typed schema;
- ``stock``: a plain latin-1 CSV with a typed schema and an extra partition column ``region``.

Used by the CLI, Lambda, Dagster and demo tests alike: :func:`stage_day` puts one day's exports (and
a decoy per table that must not win) and returns the rows each table must then hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s3_parquet_assets import demo_data
from s3_parquet_assets.demo_data import NAMES, source_keys

from .helpers import DB, DST, SRC, Lake

__all__ = ["NAMES", "TABLES_YAML", "source_keys", "stage_day", "write_tables_file"]

TABLES_YAML = demo_data.tables_yaml(SRC, DST, DB)


def write_tables_file(directory: Path, text: str = TABLES_YAML) -> Path:
    path = directory / "tables.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def stage_day(lake: Lake, day: str, rows: int = 6) -> dict[str, list[dict[str, Any]]]:
    """Put the three exports of ``day`` (plus decoys that must not win) and return, per table, the
    rows the day must hold once loaded (as written in the export: text for names-only columns)."""
    return demo_data.stage_day(lake.put, day, rows)
