"""materialize() of each table's assets (built by the component) against the moto server: one day and
a range per table, skip/force, a bad day in a range, checks on a tampered day."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetKey, AssetSelection, DagsterInstance, ExecuteInProcessResult

from s3_parquet_assets.core import handle_event
from s3_parquet_assets.defs.checks import CHECK_NAMES

from ..helpers import DB, DST, SRC, Lake, gz, zipped
from ..three_tables import NAMES, TABLES_YAML, source_keys, stage_day, write_tables_file
from .conftest import Runner, component_defs, spec

DAY = "20240115"
DAYS = ["20240115", "20240116", "20240117"]


def table(name: str) -> AssetKey:
    return AssetKey([DB, name])


def source(name: str) -> AssetKey:
    return AssetKey(["s3_source", name])


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
    return lake.clients.s3.head_object(Bucket=SRC, Key=key)["ETag"].strip('"')


def read_day(lake: Lake, name: str, day: str) -> list[dict[str, str]]:
    """Every row of the day through its Glue partitions (extra partition columns from the values),
    as text, sorted: what a catalog reader sees."""
    glue = lake.clients.glue
    got = glue.get_table(DatabaseName=DB, Name=name)["Table"]
    cols = [k["Name"] for k in got["PartitionKeys"]]
    parts = glue.get_partitions(DatabaseName=DB, TableName=name, Expression=f"data_ref = '{day}'")
    rows: list[dict[str, str]] = []
    for part in parts["Partitions"]:
        extra = dict(zip(cols[1:], part["Values"][1:], strict=True))
        for row in lake.read_location(part["StorageDescriptor"]["Location"]):
            rows.append({k: str(v) for k, v in {**row, **extra}.items()})
    return sorted(rows, key=lambda r: sorted(r.items()))


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return sorted(({k: str(v) for k, v in r.items()} for r in rows), key=lambda r: sorted(r.items()))


def test_one_day_of_each_table(lake: Lake, runner: Runner) -> None:
    expected = stage_day(lake, DAY, rows=8)
    for name in NAMES:
        result = runner.run(table(name), DAY)
        assert result.success, name
        src = mats(result, source(name))[DAY]
        src_meta = meta(src)
        assert src_meta["key"] == source_keys(DAY)[name]
        assert src.tags["dagster/data_version"] == src_meta["etag"] == etag(lake, src_meta["key"])

        mat = mats(result, table(name))[DAY]
        m = meta(mat)
        assert m["rows"] == 8 == m["dagster/partition_row_count"]
        assert "dagster/row_count" not in m  # that one means the whole table
        assert m["glue_table"] == f"{DB}.{name}" and m["skipped"] is False
        assert m["partition_location"].startswith(f"s3://{DST}/lake/{name}/data_ref={DAY}/")
        assert mat.tags["dagster/data_version"] == src_meta["etag"]
        assert mat.tags[f"dagster/input_data_version/s3_source/{name}"] == src_meta["etag"]
        assert read_day(lake, name, DAY) == as_text(expected[name])

        evaluations = checks(result)
        assert {n for _, n in evaluations} == set(CHECK_NAMES)
        assert all(c.passed for c in evaluations.values()), [c.description for c in evaluations.values()]
        assert all(c.partition == DAY and c.asset_key == table(name) for c in evaluations.values())


def test_a_range_of_each_table_loads_each_day_with_its_own_version(lake: Lake, runner: Runner) -> None:
    expected = {day: stage_day(lake, day, rows=3 + i) for i, day in enumerate(DAYS)}
    for name in NAMES:
        result = runner.run(table(name), DAYS[0], DAYS[-1])
        assert result.success, name
        sources, tables = mats(result, source(name)), mats(result, table(name))
        assert sorted(sources) == sorted(tables) == DAYS
        for i, day in enumerate(DAYS):
            key = source_keys(day)[name]
            assert meta(sources[day])["key"] == key
            assert tables[day].tags["dagster/data_version"] == etag(lake, key)
            assert meta(tables[day])["dagster/partition_row_count"] == 3 + i
            assert read_day(lake, name, day) == as_text(expected[day][name])
        evaluations = checks(result)
        assert sorted({d for d, _ in evaluations}) == DAYS and len(evaluations) == 3 * len(CHECK_NAMES)
        assert all(c.passed for c in evaluations.values())


def test_unchanged_etag_is_skipped_unless_forced(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY, rows=5)
    sales = table("sales")
    first = meta(mats(runner.run(sales, DAY), sales)[DAY])
    keys_before = lake.keys(f"lake/sales/data_ref={DAY}/")

    again = runner.run(sales, DAY)
    assert again.success
    skipped = meta(mats(again, sales)[DAY])
    assert skipped["skipped"] is True
    assert "already loaded" in skipped["skip_reason"] and "force" in skipped["skip_reason"]
    assert skipped["load_id"] == first["load_id"] and skipped["dagster/partition_row_count"] == 5
    assert lake.keys(f"lake/sales/data_ref={DAY}/") == keys_before  # nothing written
    assert all(c.passed for c in checks(again).values())
    logs = [r.user_message for r in runner.instance.all_logs(again.run_id)]
    assert any(f"{DAY}: skip: source ETag" in m for m in logs)

    forced = meta(mats(runner.run(sales, DAY, force=True), sales)[DAY])
    assert forced["skipped"] is False and forced["load_id"] != first["load_id"]
    assert forced["previous_location"] == first["partition_location"]

    # a new export for the day is loaded without force, and changes the data version
    lake.put(f"sales/{DAY}/sales_{DAY}_rerun.csv", b"1,A,1.0\n2,B,2.0\n")
    newer = mats(runner.run(sales, DAY), sales)[DAY]
    assert meta(newer)["skipped"] is False and meta(newer)["rows"] == 2
    assert newer.tags["dagster/data_version"] == etag(lake, f"sales/{DAY}/sales_{DAY}_rerun.csv")


def test_a_day_loaded_outside_dagster_is_skipped(lake: Lake, runner: Runner) -> None:
    """The ETag is read from the Glue partition, so a load by the Lambda (or the CLI) counts too."""
    stage_day(lake, DAY)
    done = handle_event(spec("customers").event(DAY), lake.clients)
    assert done["statusCode"] == 200, done
    m = meta(mats(runner.run(table("customers"), DAY), table("customers"))[DAY])
    assert m["skipped"] is True and m["load_id"] == done["result"]["load_id"]


def test_a_range_isolates_a_bad_day(lake: Lake, runner: Runner) -> None:
    good, missing, corrupt = DAYS
    stage_day(lake, good)
    lake.put(f"sales/{missing}/other_{missing}.csv.gz", gz(b"1,A,1\n"))  # no export, only a decoy
    lake.put(f"sales/{corrupt}/sales_{corrupt}.csv.gz", gz(b"1,A,1\n" * 500)[:-20])  # truncated
    sales = table("sales")
    result = runner.run(sales, good, corrupt)
    assert not result.success

    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.error.message
    assert "2 of 3 day(s) failed" in text
    assert f"{missing}: list: no object under s3://{SRC}/sales/{missing}/" in text
    assert f"{corrupt}: read:" in text and good + ":" not in text
    assert (
        failure.step_failure_data.user_failure_data.metadata["failed_days"].value == f"{missing}, {corrupt}"
    )
    assert sorted(mats(result, sales)) == [good]
    assert sorted(mats(result, source("sales"))) == [good, corrupt]  # the corrupt day's export exists
    assert len(read_day(lake, "sales", good)) == 6
    assert lake.keys(f"lake/sales/data_ref={missing}/") == lake.keys(f"lake/sales/data_ref={corrupt}/") == []
    assert {c.partition for c in checks(result).values()} == {good}

    # fixing the day and re-running only it loads it
    lake.put(f"sales/{corrupt}/sales_{corrupt}.csv.gz", gz(b"1,A,1\n" * 50))
    assert runner.run(sales, corrupt).success
    assert len(read_day(lake, "sales", corrupt)) == 50


def test_checks_fail_on_a_tampered_partition(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY, rows=40)
    sales = table("sales")
    loaded = meta(mats(runner.run(sales, DAY), sales)[DAY])
    check_only = AssetSelection.checks_for_assets(sales)

    ok = runner.run(sales, DAY, selection=check_only)
    assert ok.success and not mats(ok, sales) and not mats(ok, source("sales"))
    assert all(c.passed for c in checks(ok).values()) and len(checks(ok)) == len(CHECK_NAMES)

    # overwrite the registered Parquet file with other rows and another schema
    (key,) = [k for k in lake.keys(f"lake/sales/data_ref={DAY}/") if k.endswith(".parquet")]
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "other": ["a", "b", "c"]}), buf)
    lake.put(key, buf.getvalue(), bucket=DST)
    bad = checks(runner.run(sales, DAY, selection=check_only))
    assert not bad[(DAY, "row_count")].passed
    assert "footers hold 3 rows, the source had 40" in bad[(DAY, "row_count")].description
    assert not bad[(DAY, "schema_matches")].passed
    assert "other" in bad[(DAY, "schema_matches")].description
    assert bad[(DAY, "partition_registered")].passed

    # repoint the Glue partition at another folder (good files, but not the ones this load wrote)
    fake = f"lake/sales/data_ref={DAY}/load-manual/part-00000.snappy.parquet"
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["x"] * 40, "customer": ["c"] * 40, "amount": ["1"] * 40}), buf)
    lake.put(fake, buf.getvalue(), bucket=DST)
    glue = lake.clients.glue
    part = glue.get_partition(DatabaseName=DB, TableName="sales", PartitionValues=[DAY])["Partition"]
    sd = dict(part["StorageDescriptor"], Location=f"s3://{DST}/lake/sales/data_ref={DAY}/load-manual/")
    glue.update_partition(
        DatabaseName=DB,
        TableName="sales",
        PartitionValueList=[DAY],
        PartitionInput={"Values": [DAY], "StorageDescriptor": sd, "Parameters": part["Parameters"]},
    )
    moved = checks(runner.run(sales, DAY, selection=check_only))
    reg = moved[(DAY, "partition_registered")]
    assert not reg.passed
    assert loaded["partition_location"] in reg.description and "load-manual" in reg.description
    assert moved[(DAY, "row_count")].passed and moved[(DAY, "schema_matches")].passed

    # a forced reload repairs the day and the checks pass again
    repaired = runner.run(sales, DAY, force=True)
    assert all(c.passed for c in checks(repaired).values())
    assert len(read_day(lake, "sales", DAY)) == 40


def test_typed_schema_checked_against_the_footer(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY)
    result = runner.run(table("stock"), DAY)
    assert result.success
    c = checks(result)[(DAY, "schema_matches")]
    assert c.passed and c.metadata["parquet"].value == "sku:string, qty:int32, price:decimal128(10, 2)"


def test_source_only_selection_touches_no_table(lake: Lake, runner: Runner) -> None:
    stage_day(lake, DAY)
    result = runner.run(table("sales"), DAY, selection=[source("sales")])
    assert result.success
    assert sorted(mats(result, source("sales"))) == [DAY] and not mats(result, table("sales"))
    assert lake.keys() == []


def test_run_on_lambda_without_a_function_fails_the_day(lake: Lake, tmp_path: Path) -> None:
    """run_on: lambda goes through lambda_run (tested in test_lambda_run.py); a table that names no
    function fails its days with the table named, and loads nothing."""
    stage_day(lake, DAY)
    text = TABLES_YAML.replace("    table: sales\n", "    table: sales\n    run_on: lambda\n", 1)
    runner = Runner(component_defs(write_tables_file(tmp_path, text)), DagsterInstance.ephemeral())
    result = runner.run(table("sales"), DAY)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "table sales: run_on 'lambda' needs lambda_function" in failure.step_failure_data.error.message
    assert sorted(mats(result, source("sales"))) == [DAY] and not mats(result, table("sales"))
    assert lake.keys() == []


def test_a_names_only_table_continued_from_a_typed_glue_table_passes_its_checks(
    lake: Lake, tmp_path: Path, instance: DagsterInstance
) -> None:
    """The original Lambda typed the table (bigint/double); the tables file keeps its names-only
    schema: the load reads each column as the table's type, and schema_matches holds."""
    typed = spec("sales").event(
        "20240114",
        {
            "schema": [
                {"name": "id", "type": "bigint"},
                {"name": "customer", "type": "string"},
                {"name": "amount", "type": "double"},
            ]
        },
    )
    stage_day(lake, "20240114")
    assert handle_event(typed, lake.clients)["statusCode"] == 200
    stage_day(lake, DAY)
    runner = Runner(component_defs(write_tables_file(tmp_path)), instance)
    result = runner.run(table("sales"), DAY)
    assert result.success
    assert all(c.passed for c in checks(result).values()), checks(result)
    assert {(DAY, name) for name in CHECK_NAMES} <= set(checks(result))
    rows = lake.read_table_day("sales", DAY)
    assert isinstance(rows[0]["id"], int) and isinstance(rows[0]["amount"], float)


def test_an_added_column_is_reported_and_passes_schema_matches(
    lake: Lake, tmp_path: Path, instance: DagsterInstance
) -> None:
    """customers has a header; its export gains a column `tier` and the table says extra_columns: add."""
    text = TABLES_YAML.replace("    header: true\n", "    header: true\n    extra_columns: add\n")
    assert text != TABLES_YAML
    runner = Runner(component_defs(write_tables_file(tmp_path, text)), instance)
    csv = "Tier;customer_id;name;signup\ngold;1;Ann;2023-01-10\nsilver;2;Bob;2023-02-11\n"
    lake.put(f"crm/customers_{DAY}.zip", zipped({f"customers_{DAY}.csv": csv.encode()}))
    result = runner.run(table("customers"), DAY)
    assert result.success
    m = meta(mats(result, table("customers"))[DAY])
    assert m["file_columns"] == "Tier, customer_id, name, signup"
    assert m["added_columns"] == "tier"
    assert (m["ignored_columns"], m["null_columns"]) == ("-", "-")
    c = checks(result)
    assert all(c[(DAY, name)].passed for name in CHECK_NAMES), c
    rows = lake.read_table_day("customers", DAY)
    assert sorted((r["customer_id"], r["tier"]) for r in rows) == [(1, "gold"), (2, "silver")]
