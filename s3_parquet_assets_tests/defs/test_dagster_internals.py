"""Pins what :mod:`s3_parquet_assets.defs.dagster_internals` relies on in Dagster 1.13 (no public API
for it): per-day data and input versions set by tags, and per-day check results attached to that
day's materialization inside one multi-day run, read back the way the UI reads them."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey, DataVersion
from dagster._core.definitions.data_version import extract_data_version_from_entry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from s3_parquet_assets.defs.checks import CHECK_NAMES
from s3_parquet_assets.defs.dagster_internals import version_tags

from ..helpers import DB, SRC, Lake
from ..three_tables import source_keys, stage_day
from .conftest import Runner

DAYS = ["20240115", "20240116"]
TABLE = AssetKey([DB, "sales"])
SOURCE = AssetKey(["s3_source", "sales"])


def test_version_tags_are_dagsters_own() -> None:
    assert version_tags("e1") == {
        "dagster/data_version": "e1",
        "dagster/data_version_is_user_provided": "true",
    }
    assert version_tags("e2", upstream=SOURCE) == {
        "dagster/data_version": "e2",
        "dagster/data_version_is_user_provided": "true",
        "dagster/input_data_version/s3_source/sales": "e2",
    }


def test_a_range_run_gives_each_day_its_versions_and_its_checks(lake: Lake, runner: Runner) -> None:
    for i, day in enumerate(DAYS):
        stage_day(lake, day, rows=4 + i)
    assert runner.run(TABLE, DAYS[0], DAYS[-1]).success
    instance = runner.instance
    for day in DAYS:
        etag = lake.clients.s3.head_object(Bucket=SRC, Key=source_keys(day)["sales"])["ETag"].strip('"')
        for key in (SOURCE, TABLE):
            record = instance.get_latest_data_version_record(key, partition_key=day)
            assert record is not None, (key, day)
            assert extract_data_version_from_entry(record.event_log_entry) == DataVersion(etag)
        mat = instance.get_latest_data_version_record(TABLE, partition_key=day)
        assert mat is not None and mat.asset_materialization is not None
        assert mat.asset_materialization.tags["dagster/input_data_version/s3_source/sales"] == etag

    infos = instance.event_log_storage.get_asset_check_partition_info(
        [AssetCheckKey(TABLE, name) for name in CHECK_NAMES], partition_keys=DAYS
    )
    seen = {(i.check_key.name, i.partition_key): i for i in infos}
    assert set(seen) == {(name, day) for name in CHECK_NAMES for day in DAYS}
    for info in seen.values():
        assert info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED
        # the evaluation targets that day's materialization: the UI shows it as current, passed
        assert info.latest_target_materialization_storage_id is not None
        assert info.latest_target_materialization_storage_id == info.latest_materialization_storage_id
        assert info.is_current
