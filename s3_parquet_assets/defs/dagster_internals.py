"""The only place that uses Dagster internals (``dagster._...``), for what 1.13 has no public API for.

The load op reports one materialization per day of a multi-day run (a range run cannot return one
``Output`` per day with its own data version), so it sets per-day data versions itself and attaches
each day's check results to that day's materialization:

- :func:`version_tags`: the tags Dagster's own ``Output(data_version=...)`` writes: the data version,
  "user provided", and the input data version of the upstream asset (the source object's ETag);
- :func:`check_target`: the materialization a check evaluation belongs to (storage id, run, time),
  so the UI shows the check as passed/failed for that partition's materialization.

``s3_parquet_assets_tests/defs/test_dagster_internals.py`` pins exactly this behaviour, so an upgrade
that changes it fails a test instead of the UI.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetKey
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.data_version import (
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    get_input_data_version_tag,
)

__all__ = ["check_target", "version_tags"]


def version_tags(etag: str, *, upstream: AssetKey | None = None) -> dict[str, str]:
    """Materialization tags: data version ``etag`` (and input version ``etag`` of ``upstream``)."""
    tags = {DATA_VERSION_TAG: etag, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}
    if upstream is not None:
        tags[get_input_data_version_tag(upstream)] = etag
    return tags


def check_target(record: Any) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The check-evaluation target for a materialization ``record`` (``EventLogRecord``) or ``None``."""
    if record is None:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )
