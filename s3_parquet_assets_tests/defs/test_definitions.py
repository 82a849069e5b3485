"""Definitions load and validate; partitions, schedule and sensor evaluated with their build contexts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    Definitions,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    materialize,
    partition_loading_context,
)
from dagster._core.errors import DagsterInvalidConfigError
from dagster_aws.s3 import S3Resource

from s3_parquet_assets.core import parse_event
from s3_parquet_assets.defs.assets import build_load_assets
from s3_parquet_assets.defs.definitions import env_load_settings
from s3_parquet_assets.defs.partitions import daily_partitions
from s3_parquet_assets.defs.resources import LoadSettings
from s3_parquet_assets.defs.sensors import Cursor, day_of_key

from ..helpers import Lake, csv_rows, event
from .conftest import START, settings

ROOT = Path(__file__).resolve().parents[2]


def test_module_definitions_load_and_validate() -> None:
    from s3_parquet_assets.defs import definitions

    Definitions.validate_loadable(definitions.defs)
    repo = definitions.defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"latest_source_object", "parquet_table"}
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert checks == {"row_count", "schema_matches", "partition_registered"}
    assert repo.get_job("load_daily").partitions_def is not None
    assert repo.get_schedule_def("load_yesterday") and repo.get_sensor_def("new_source_objects")
    assets = definitions.defs.resolve_assets_def(AssetKey("parquet_table"))
    assert assets.backfill_policy is not None and assets.backfill_policy.max_partitions_per_run > 1


def test_dagster_cli_validates_the_code_location(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3PA_")}
    env["DAGSTER_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_newest_partition_is_yesterday_utc() -> None:
    parts = daily_partitions("20240101")
    with partition_loading_context(effective_dt=datetime(2024, 3, 1, 0, 5, tzinfo=UTC)):
        assert parts.get_last_partition_key() == "20240229"
        assert parts.get_first_partition_key() == "20240101"
        assert not parts.has_partition_key("20240301")
        assert parts.has_partition_key("20240229") and not parts.has_partition_key("20231231")


def test_settings_are_the_lambda_event() -> None:
    ls = settings(header=True, delimiter=";")
    ev = ls.event("20240115")
    assert ev == {**event(header=True, delimiter=";"), **{k: ev[k] for k in ev if k not in event()}}
    parsed = parse_event(ev)
    assert parsed.data_ref == "20240115" and parsed.header and parsed.delimiter == ";"
    assert ls.listing_root == "exports/"
    assert LoadSettings.from_event(ev).event("20240115") == ev


def test_schedule_requests_yesterday(defs: Definitions) -> None:
    schedule = defs.resolve_schedule_def("load_yesterday")
    assert schedule.cron_schedule == "0 6 * * *"
    ctx = build_schedule_context(scheduled_execution_time=datetime(2024, 3, 2, 6, 0, tzinfo=UTC))
    data = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests] == ["20240301"]


def test_day_of_key() -> None:
    stamp = datetime(2024, 1, 16, 3, 0, tzinfo=UTC)
    assert day_of_key("exports/{data_ref}/", "exports/20240115/sales.csv", stamp) == "20240115"
    assert day_of_key("exports/{data_ref}/", "exports/other/sales.csv", stamp) is None
    assert day_of_key("in/", "in/sales_2.csv", stamp) == "20240115"
    assert day_of_key("a/{data_ref}/b_{data_ref}", "a/20240110/b_20240110.csv", stamp) == "20240110"
    assert day_of_key("a/{data_ref}/b_{data_ref}", "a/20240110/b_20240111.csv", stamp) is None


def _evaluate(defs: Definitions, cursor: str | None) -> SensorResult:
    sensor = defs.resolve_sensor_def("new_source_objects")
    resources = {"s3": defs.resources["s3"], "load_settings": defs.resources["load_settings"]}
    with build_sensor_context(cursor=cursor, resources=resources, definitions=defs) as ctx:
        result = sensor(ctx)
    assert isinstance(result, SensorResult)
    return result


def test_sensor_requests_new_days_and_its_cursor_survives_restarts(lake: Lake, defs: Definitions) -> None:
    lake.put("exports/20240110/sales_a.csv", csv_rows(3))
    lake.put("exports/20240110/sales_b.csv", csv_rows(3))  # two exports of one day: one run
    lake.put("exports/20240111/sales.csv", csv_rows(3))
    lake.put("exports/20240111/returns.csv", csv_rows(3))  # decoy: substring does not match
    lake.put("elsewhere/20240112/sales.csv", csv_rows(3))  # outside the prefix
    today = datetime.now(UTC).strftime("%Y%m%d")
    lake.put(f"exports/{today}/sales.csv", csv_rows(3))  # not a partition yet

    first = _evaluate(defs, None)
    assert [r.partition_key for r in first.run_requests] == ["20240110", "20240111"]
    assert first.run_requests[0].tags["s3pa/source_key"] in (
        "exports/20240110/sales_a.csv",
        "exports/20240110/sales_b.csv",
    )
    cursor = first.cursor
    assert cursor is not None and Cursor.parse(cursor).last_modified is not None

    # a restarted sensor gets its stored cursor back: nothing old is requested again
    again = _evaluate(defs, cursor)
    assert again.run_requests == [] and again.skip_reason is not None
    assert again.cursor == cursor

    lake.put("exports/20240113/sales.csv", csv_rows(3))
    newer = _evaluate(defs, cursor)
    assert [r.partition_key for r in newer.run_requests] == ["20240113"]
    assert Cursor.parse(newer.cursor).last_modified >= Cursor.parse(cursor).last_modified


def test_cursor_keeps_keys_of_the_same_second() -> None:
    t = datetime(2024, 1, 16, 3, 0, tzinfo=UTC)
    c = Cursor.parse(Cursor(t, ("a",)).dumps())
    assert not c.is_new("a", t) and c.is_new("b", t) and c.is_new("a", t + timedelta(seconds=1))
    assert not c.is_new("z", t - timedelta(seconds=1))
    assert Cursor.parse(None).is_new("a", t)


@pytest.mark.parametrize("missing", ["S3PA_BUCKET_SRC", "S3PA_SCHEMA"])
def test_env_settings_name_the_missing_variable(
    missing: str, monkeypatch: pytest.MonkeyPatch, s3_resource: S3Resource
) -> None:
    values = {
        "S3PA_BUCKET_SRC": "src-bucket",
        "S3PA_BUCKET_DSTN": "dst-bucket",
        "S3PA_PREFIX": "exports/{data_ref}/",
        "S3PA_SUBSTR": "sales",
        "S3PA_SCHEMA": json.dumps(["id"]),
        "S3PA_PATHOUTPUT": "t",
        "S3PA_TABLE": "t",
        "S3PA_DATABASE": "d",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(missing)
    with pytest.raises(DagsterInvalidConfigError, match=missing):
        materialize(
            [build_load_assets(daily_partitions(START))],
            resources={"load_settings": env_load_settings(), "s3": s3_resource},
            partition_key="20240115",
        )
