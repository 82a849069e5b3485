"""materialize() of the load assets against the moto server: one day, a range, skip/force, failures."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, AssetSelection, ExecuteInProcessResult

from s3_parquet_assets.core import make_clients, parse_event, run_load
from s3_parquet_assets.defs.assets import SOURCE, TABLE
from s3_parquet_assets.defs.checks import CHECK_NAMES

from ..helpers import DAY, DB, DST, Lake, csv_rows, event, gz
from ..helpers import TABLE as GLUE_TABLE
from .conftest import Runner, settings

DAYS = ["20240115", "20240116", "20240117"]


def mats(result: ExecuteInProcessResult, key: AssetKey) -> dict[str, Any]:
    """partition -> the materialization of ``key`` in the run."""
    out = {}
    for e in result.get_asset_materialization_events():
        mat = e.step_materialization_data.materialization
        if mat.asset_key == key:
            assert mat.partition not in out, f"two materializations of {key} {mat.partition}"
            out[mat.partition] = mat
    return out


def meta(mat: Any) -> dict[str, Any]:
    return {k: v.value for k, v in mat.metadata.items()}


def checks(result: ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    return {(c.partition, c.check_name): c for c in result.get_asset_check_evaluations()}


def etag(lake: Lake, key: str) -> str:
    return lake.clients.s3.head_object(Bucket="src-bucket", Key=key)["ETag"].strip('"')


def stage_day(lake: Lake, day: str, n: int, start: int = 0) -> str:
    """An older partial export, a decoy and the day's final export (returned)."""
    lake.put(f"exports/{day}/sales_{day}_partial.csv", csv_rows(2, start=9000))
    lake.put(f"exports/{day}/returns_{day}.csv", csv_rows(5, start=8000))
    key = f"exports/{day}/sales_{day}.csv.gz"
    lake.put(key, gz(csv_rows(n, start=start)))
    return key


def test_one_day_materializes_source_and_table_with_metadata(lake: Lake, runner: Runner) -> None:
    key = stage_day(lake, DAY, 120)
    result = runner.run(DAY)
    assert result.success

    src = mats(result, SOURCE)[DAY]
    src_meta = meta(src)
    assert src_meta["key"] == key
    assert src_meta["etag"] == etag(lake, src_meta["key"])
    assert src.tags["dagster/data_version"] == src_meta["etag"]
    assert src_meta["size"] > 0 and src_meta["last_modified"] > 0

    table = mats(result, TABLE)[DAY]
    m = meta(table)
    assert m["rows"] == 120 == m["dagster/row_count"]
    assert m["files"] == 1 and m["bytes"] > 0
    assert m["glue_table"] == f"{DB}.{GLUE_TABLE}"
    assert m["source_key"] == src_meta["key"]
    assert m["skipped"] is False and m["seconds"] >= 0
    assert m["output_location"] == f"s3://{DST}/tables/sales/data_ref={DAY}/"
    assert m["partition_location"] == f"s3://{DST}/tables/sales/data_ref={DAY}/load-{m['load_id']}/"
    assert table.tags["dagster/data_version"] == src_meta["etag"]
    assert table.tags["dagster/input_data_version/latest_source_object"] == src_meta["etag"]

    part = lake.partition(DAY)
    assert part is not None and part["StorageDescriptor"]["Location"] == m["partition_location"]
    rows = lake.read_catalog(DAY)
    assert len(rows) == 120 and rows[0] == {"id": "0", "customer": "C0", "amount": "0.0"}

    evaluations = checks(result)
    assert {name for _, name in evaluations} == set(CHECK_NAMES)
    assert all(c.passed for c in evaluations.values()), [c.description for c in evaluations.values()]
    assert all(c.partition == DAY for c in evaluations.values())


def test_range_loads_each_day_with_its_own_version(lake: Lake, runner: Runner) -> None:
    keys = {day: stage_day(lake, day, 10 * (i + 1), start=100 * i) for i, day in enumerate(DAYS)}
    result = runner.run(DAYS[0], DAYS[-1])
    assert result.success

    sources, tables = mats(result, SOURCE), mats(result, TABLE)
    assert sorted(sources) == sorted(tables) == DAYS
    for i, day in enumerate(DAYS):
        assert meta(sources[day])["key"] == keys[day]
        assert tables[day].tags["dagster/data_version"] == etag(lake, keys[day])
        assert meta(tables[day])["rows"] == 10 * (i + 1)
        rows = lake.read_catalog(day)
        assert [r["id"] for r in rows] == sorted((str(100 * i + j) for j in range(10 * (i + 1))), key=str)
    evaluations = checks(result)
    assert len(evaluations) == 3 * len(CHECK_NAMES)
    assert all(c.passed for c in evaluations.values())


def test_unchanged_etag_is_skipped_unless_forced(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY, 30)
    first = meta(mats(runner.run(DAY), TABLE)[DAY])
    keys_before = lake.day_keys()

    again = runner.run(DAY)
    assert again.success
    skipped = meta(mats(again, TABLE)[DAY])
    assert skipped["skipped"] is True
    assert "already loaded" in skipped["skip_reason"] and "force" in skipped["skip_reason"]
    assert skipped["load_id"] == first["load_id"] and skipped["rows"] == 30
    assert lake.day_keys() == keys_before  # nothing written
    assert all(c.passed for c in checks(again).values())
    logs = [r.user_message for r in runner.instance.all_logs(again.run_id)]
    assert any(f"{DAY}: skip: source ETag" in m for m in logs)

    forced = meta(mats(runner.run(DAY, force=True), TABLE)[DAY])
    assert forced["skipped"] is False and forced["load_id"] != first["load_id"]
    assert forced["rows"] == 30 and forced["previous_location"] == first["partition_location"]
    assert lake.partition(DAY)["StorageDescriptor"]["Location"] == forced["partition_location"]

    # a new export for the day is loaded without force, and changes the data version
    lake.put(f"exports/{DAY}/sales_{DAY}_rerun.csv", csv_rows(7))
    newer = runner.run(DAY)
    table = mats(newer, TABLE)[DAY]
    assert meta(table)["skipped"] is False and meta(table)["rows"] == 7
    assert table.tags["dagster/data_version"] == etag(lake, f"exports/{DAY}/sales_{DAY}_rerun.csv")
    assert len(lake.read_catalog(DAY)) == 7


def test_day_loaded_outside_dagster_is_skipped(lake: Lake, runner: Runner) -> None:
    """The ETag is read from the Glue partition, so a load by the Lambda (or the CLI) counts too."""
    stage_day(lake, DAY, 12)
    done = run_load(parse_event(event()), make_clients())
    result = runner.run(DAY)
    m = meta(mats(result, TABLE)[DAY])
    assert m["skipped"] is True and m["load_id"] == done.load_id and m["rows"] == 12


def test_range_isolates_a_bad_day(lake: Lake, runner: Runner) -> None:
    good, missing, corrupt = DAYS
    stage_day(lake, good, 15)
    lake.put(f"exports/{missing}/returns_{missing}.csv", csv_rows(3))  # no export, only a decoy
    lake.put(f"exports/{corrupt}/sales_{corrupt}.csv.gz", gz(csv_rows(50))[:-20])  # truncated
    result = runner.run(good, corrupt)
    assert not result.success

    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.error.message
    assert "2 of 3 day(s) failed" in text
    assert f"{missing}: list: no object under s3://src-bucket/exports/{missing}/" in text
    assert f"{corrupt}: read:" in text and good + ":" not in text
    assert (
        failure.step_failure_data.user_failure_data.metadata["failed_days"].value == f"{missing}, {corrupt}"
    )

    assert sorted(mats(result, TABLE)) == [good]
    assert sorted(mats(result, SOURCE)) == [good, corrupt]  # the corrupt day's export exists
    assert len(lake.read_catalog(good)) == 15
    assert lake.partition(missing) is None and lake.partition(corrupt) is None
    assert {c.partition for c in checks(result).values()} == {good}

    # fixing the day and re-running only it loads it
    lake.put(f"exports/{corrupt}/sales_{corrupt}.csv.gz", gz(csv_rows(50)))
    assert runner.run(corrupt).success
    assert len(lake.read_catalog(corrupt)) == 50


def test_checks_fail_on_a_tampered_partition(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY, 40)
    loaded = meta(mats(runner.run(DAY), TABLE)[DAY])
    check_only = AssetSelection.checks_for_assets(TABLE)

    ok = runner.run(DAY, selection=check_only)
    assert ok.success and not mats(ok, TABLE) and not mats(ok, SOURCE)
    assert all(c.passed for c in checks(ok).values()) and len(checks(ok)) == len(CHECK_NAMES)

    # overwrite the registered Parquet file with other rows and another schema
    (key,) = [k for k in lake.day_keys() if k.endswith(".parquet")]
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "other": ["a", "b", "c"]}), buf)
    lake.put(key, buf.getvalue(), bucket=DST)
    bad = checks(runner.run(DAY, selection=check_only))
    assert not bad[(DAY, "row_count")].passed
    assert "footers hold 3 rows, the source had 40" in bad[(DAY, "row_count")].description
    assert not bad[(DAY, "schema_matches")].passed
    assert "other" in bad[(DAY, "schema_matches")].description
    assert bad[(DAY, "partition_registered")].passed

    # repoint the Glue partition at another folder (good files, but not the ones this load wrote)
    fake = f"tables/sales/data_ref={DAY}/load-manual/part-00000.snappy.parquet"
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["x"] * 40, "customer": ["c"] * 40, "amount": ["1"] * 40}), buf)
    lake.put(fake, buf.getvalue(), bucket=DST)
    glue = lake.clients.glue
    part = glue.get_partition(DatabaseName=DB, TableName=GLUE_TABLE, PartitionValues=[DAY])["Partition"]
    sd = dict(part["StorageDescriptor"], Location=f"s3://{DST}/tables/sales/data_ref={DAY}/load-manual/")
    glue.update_partition(
        DatabaseName=DB,
        TableName=GLUE_TABLE,
        PartitionValueList=[DAY],
        PartitionInput={"Values": [DAY], "StorageDescriptor": sd, "Parameters": part["Parameters"]},
    )
    moved = checks(runner.run(DAY, selection=check_only))
    reg = moved[(DAY, "partition_registered")]
    assert not reg.passed
    assert loaded["partition_location"] in reg.description and "load-manual" in reg.description
    assert moved[(DAY, "row_count")].passed and moved[(DAY, "schema_matches")].passed

    # a forced reload repairs the day and the checks pass again
    repaired = runner.run(DAY, force=True)
    assert all(c.passed for c in checks(repaired).values())
    assert len(lake.read_catalog(DAY)) == 40


def test_typed_schema_checked_against_the_footer(lake: Lake, runner: Runner) -> None:
    typed = settings(schema=[{"name": "id", "type": "bigint"}, "customer", "amount"])
    with pytest.raises(Exception, match="mixes"):
        typed.load_event(DAY)
    typed = settings(
        schema=[
            {"name": "id", "type": "bigint"},
            {"name": "customer", "type": "string"},
            {"name": "amount", "type": "decimal(12,2)"},
        ]
    )
    stage_day(lake, DAY, 9)
    result = runner.run(DAY, load_settings=typed)
    assert result.success
    c = checks(result)[(DAY, "schema_matches")]
    assert c.passed and c.metadata["parquet"].value == "id:int64, customer:string, amount:decimal128(12, 2)"


def test_source_only_selection_touches_no_table(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY, 5)
    result = runner.run(DAY, selection=[SOURCE])
    assert result.success
    assert sorted(mats(result, SOURCE)) == [DAY] and not mats(result, TABLE)
    assert lake.keys() == [] and lake.partition(DAY) is None


def test_run_on_lambda_reaches_the_lambda_path(lake: Lake, runner: Runner) -> None:
    """run_on=lambda goes through lambda_run.run_day_on_lambda (its round trip is tested with the
    Lambda handler); here: a missing or unreachable function fails the day, not the source."""
    stage_day(lake, DAY, 5)
    no_fn = runner.run(DAY, load_settings=settings({"run_on": "lambda"}))
    assert "run_on 'lambda' needs lambda_function" in _failure(no_fn)
    with_fn = settings({"run_on": "lambda", "lambda_function": "s3pa-load"})
    result = runner.run(DAY, load_settings=with_fn)
    assert f"1 of 1 day(s) failed: {DAY}:" in _failure(result) and "s3pa-load" in _failure(result)
    assert sorted(mats(result, SOURCE)) == [DAY] and not mats(result, TABLE)
    assert lake.partition(DAY) is None


def _failure(result: ExecuteInProcessResult) -> str:
    assert not result.success
    return next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).step_failure_data.error.message
