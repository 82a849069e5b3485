"""A table with ``run_on: lambda``: its days are loaded by the packaged function, invoked through
dagster-aws ``PipesLambdaClient`` with the full contract event (``TableSpec.event``), and the table
asset records what the function reported (the Lambda side: ``lambda_/test_pipes.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, DagsterEventType, DagsterInstance

from s3_parquet_assets.core import LoadResult
from s3_parquet_assets.defs import lambda_run
from s3_parquet_assets.defs.assets import table_metadata

from ..helpers import DAY, DB, DST, PATHOUT, SRC, Lake, csv_rows
from ..lambda_.conftest import build_zip, code_dir, lambda_zip, layer_python, packaged  # noqa: F401 - fixtures
from ..lambda_.packaged import LOG_TAIL_BYTES, Invocation, PackagedLambda
from .conftest import Runner, component_defs

TABLE = AssetKey([DB, "sales"])
# the two names of a day's row count: the function's Pipes report may still use the older one
ROW_COUNT_KEYS = {"dagster/row_count", "dagster/partition_row_count"}


def tables_yaml(concurrency: int = 4) -> str:
    return f"""\
tables:
  - name: sales
    bucket_src: {SRC}
    bucket_dstn: {DST}
    prefix: "exports/{{data_ref}}/"
    substr: sales
    schema: [id, customer, amount]
    pathoutput: {PATHOUT}
    table: sales
    database: {DB}
    run_on: lambda
    lambda_function: s3pa-load
    lambda_concurrency: {concurrency}
"""


@pytest.fixture
def fake_lambda(packaged: PackagedLambda) -> Iterator[PackagedLambda]:  # noqa: F811 - the fixture
    previous = lambda_run.set_lambda_client_factory(lambda clients: packaged)
    try:
        yield packaged
    finally:
        lambda_run.set_lambda_client_factory(previous)


def runner(tmp_path: Path, concurrency: int = 4) -> Runner:
    path = tmp_path / "tables.yaml"
    path.write_text(tables_yaml(concurrency), encoding="utf-8")
    return Runner(component_defs(path), DagsterInstance.ephemeral())


def table_materializations(instance: DagsterInstance) -> dict[str, Any]:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=TABLE), limit=100).records
    out = {}
    for rec in records:
        mat = rec.asset_materialization
        assert mat is not None
        out[str(mat.partition)] = mat
    return out


def tail_reports(inv: Invocation) -> list[dict[str, Any]]:
    tail = inv.log.encode()[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")
    out = []
    for line in tail.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("method") == "report_asset_materialization":
            out.append(dict(msg["params"]))
    return out


def test_the_table_on_lambda_records_the_function_report(
    fake_lambda: PackagedLambda, lake: Lake, tmp_path: Path
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(120))
    run = runner(tmp_path)
    res = run.run(TABLE, DAY)
    assert res.success
    (call,) = fake_lambda.calls
    assert call["FunctionName"] == "s3pa-load" and call["LogType"] == "Tail"
    sent = call["event"]
    assert "DAGSTER_PIPES_CONTEXT" in sent
    assert (
        sent["data_ref"] == DAY
        and sent["table"] == "sales"
        and sent["schema"] == ["id", "customer", "amount"]
    )
    assert not {"name", "run_on", "lambda_function", "start_date"} & set(sent)  # only event fields
    inv: Invocation = call["invocation"]
    assert inv.payload["statusCode"] == 200

    (report,) = tail_reports(inv)
    assert report["asset_key"] == "analytics/sales"  # the one asset in the Pipes session's scope
    mat = table_materializations(run.instance)[DAY]
    for key, value in report["metadata"].items():
        if key in ROW_COUNT_KEYS:
            assert mat.metadata["dagster/partition_row_count"].value == value["raw_value"]
            continue
        assert mat.metadata[key].value == value["raw_value"], key
    local = AssetMaterialization("x", metadata=table_metadata(LoadResult(**inv.payload["result"]))).metadata
    assert set(report["metadata"]) - ROW_COUNT_KEYS == set(local) - ROW_COUNT_KEYS
    assert {k: type(v).__name__ for k, v in mat.metadata.items()} == {
        k: type(v).__name__ for k, v in local.items()
    }
    assert mat.tags["dagster/data_version"] == report["data_version"] == inv.payload["result"]["etag"]
    assert mat.metadata["rows"].value == 120
    assert len(lake.read_catalog()) == 120


def test_a_range_fans_out_one_invocation_per_day_and_isolates_a_bad_day(
    fake_lambda: PackagedLambda, lake: Lake, tmp_path: Path
) -> None:
    days = ["20240115", "20240116", "20240117"]
    lake.put("exports/20240115/sales_1.csv", csv_rows(10))
    lake.put("exports/20240116/sales_1.csv", b"1,only two columns\n")  # the function fails to read it
    lake.put("exports/20240117/sales_1.csv", csv_rows(12))
    run = runner(tmp_path, concurrency=3)
    res = run.run(TABLE, days[0], days[-1])
    assert not res.success
    assert sorted(c["event"]["data_ref"] for c in fake_lambda.calls) == days
    mats = table_materializations(run.instance)
    assert sorted(mats) == ["20240115", "20240117"]
    assert mats["20240115"].metadata["rows"].value == 10
    assert mats["20240117"].metadata["rows"].value == 12
    failure = next(e for e in res.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data)
    assert "20240116" in text and "(Lambda s3pa-load)" in text


def test_a_function_error_fails_the_day_with_its_message(
    fake_lambda: PackagedLambda, lake: Lake, tmp_path: Path
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", b"1,two columns\n")
    fake_lambda.env["S3PA_RAISE_ON_ERROR"] = "always"
    run = runner(tmp_path)
    res = run.run(TABLE, DAY)
    assert not res.success
    failure = next(e for e in res.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data)
    assert "invoking Lambda 's3pa-load' for 20240115 failed: LoadFailedError: Error: read:" in text
    assert table_materializations(run.instance) == {}
