"""Dagster Pipes: the packaged handler reports through the 4 KB log tail, and the Dagster asset with
``run_on: lambda`` invokes it through dagster-aws ``PipesLambdaClient`` and records its metadata."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    materialize,
)
from dagster_pipes import encode_param

from s3_parquet_assets.core import LoadResult
from s3_parquet_assets.defs import lambda_run
from s3_parquet_assets.defs.assets import build_load_assets, table_metadata
from s3_parquet_assets.defs.partitions import daily_partitions
from s3_parquet_assets.defs.resources import LoadSettings, S3Resource
from s3_parquet_assets.lambda_handler import PIPES_TAIL_BUDGET

from ..helpers import DAY, Lake, csv_rows, event
from .packaged import LOG_TAIL_BYTES, Invocation, PackagedLambda

TABLE = AssetKey("parquet_table")


def pipes_params(partition_key: str | None = DAY, asset_keys: list[str] | None = None) -> dict[str, str]:
    """Bootstrap parameters as PipesLambdaClient puts them into the event (context inline, messages
    buffered to stderr for the log tail)."""
    context = {
        "asset_keys": asset_keys or ["latest_source_object", "parquet_table"],
        "code_version_by_asset_key": None,
        "provenance_by_asset_key": None,
        "partition_key": partition_key,
        "partition_key_range": {"start": partition_key, "end": partition_key} if partition_key else None,
        "partition_time_window": None,
        "run_id": "0b5f3e4c-1111-2222-3333-444455556666",
        "job_name": "__ASSET_JOB",
        "retry_number": 0,
        "extras": {},
    }
    return {
        "DAGSTER_PIPES_CONTEXT": encode_param({"data": context}),
        "DAGSTER_PIPES_MESSAGES": encode_param({"buffered_stdio": "stderr"}),
    }


def tail_messages(inv: Invocation) -> list[dict[str, Any]]:
    """The Pipes messages in the last 4 KB of the invocation's log, as the Dagster side reads them."""
    tail = inv.log.encode()[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")
    out = []
    for line in tail.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and "__dagster_pipes_version" in msg:
            out.append(msg)
    return out


def all_messages(inv: Invocation) -> list[str]:
    return [line for line in inv.log.splitlines() if line.startswith('{"__dagster_pipes_version"')]


def test_packaged_handler_reports_the_materialization_in_the_log_tail(
    packaged: PackagedLambda, lake: Lake
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(64))
    lake.put("exports/20240116/sales_1.csv", csv_rows(8))
    run = packaged.run([{**event(), **pipes_params()}, {**event(data_ref=None), **pipes_params("20240116")}])
    assert run.dagster_visible is False
    assert run.dagster_loaded_after == ["dagster_pipes", "dagster_pipes.version"] or all(
        m.startswith("dagster_pipes") for m in run.dagster_loaded_after
    )
    for inv, day, rows in zip(run.invocations, (DAY, "20240116"), (64, 8), strict=True):
        assert inv.function_error is None, inv.payload
        assert inv.payload["statusCode"] == 200, inv.payload
        result = inv.payload["result"]
        assert result["data_ref"] == day  # the second one from the Pipes partition key
        messages = tail_messages(inv)
        assert [m["method"] for m in messages] == ["opened", "report_asset_materialization", "closed"]
        report = messages[1]["params"]
        assert report["asset_key"] == "parquet_table"
        assert report["data_version"] == result["etag"]
        meta = report["metadata"]
        assert meta["rows"] == {"raw_value": rows, "type": "int"}
        assert meta["load_id"] == {"raw_value": result["load_id"], "type": "text"}
        assert meta["output_location"]["type"] == "path"
        assert meta["glue_table"]["raw_value"] == "analytics.sales"
        # Nothing is logged after the flush but the runtime's END/REPORT lines.
        after = inv.log.split(all_messages(inv)[-1], 1)[1].strip().splitlines()
        assert [line.split(" ", 1)[0] for line in after] == ["END", "REPORT"]
        assert sum(len(m) + 1 for m in all_messages(inv)) < PIPES_TAIL_BUDGET
    assert len(lake.read_catalog("20240116")) == 8


def test_long_names_still_fit_the_log_tail(packaged: PackagedLambda, lake: Lake) -> None:
    long_key = f"exports/{DAY}/sales_" + "x" * 900 + ".csv"
    pathoutput = "tables/" + "/".join(["deeply_nested_folder_name"] * 12)
    lake.put(long_key, csv_rows(3))
    inv = packaged.invoke_one({**event(pathoutput=pathoutput), **pipes_params()})
    assert inv.payload["statusCode"] == 200, inv.payload
    messages = tail_messages(inv)
    assert [m["method"] for m in messages] == ["opened", "report_asset_materialization", "closed"]
    meta = messages[1]["params"]["metadata"]
    assert meta["rows"]["raw_value"] == 3
    assert "..." in meta["source_key"]["raw_value"]  # shortened, not dropped
    assert sum(len(m) + 1 for m in all_messages(inv)) < PIPES_TAIL_BUDGET


def test_a_failed_load_closes_pipes_with_the_error(packaged: PackagedLambda, lake: Lake) -> None:
    inv = packaged.invoke_one({**event(), **pipes_params()})
    assert inv.function_error is None
    assert inv.payload["statusCode"] == 500
    messages = tail_messages(inv)
    assert [m["method"] for m in messages] == ["opened", "closed"]
    exc = messages[-1]["params"]["exception"]
    assert exc["name"] == "LoadError"
    assert exc["message"].startswith("Error: list: no object under s3://src-bucket/exports/20240115/")


# ---------------------------------------------------------------------------------------------------
# The Dagster side: parquet_table with run_on: lambda, through PipesLambdaClient.


@pytest.fixture
def fake_lambda(packaged: PackagedLambda) -> Iterator[PackagedLambda]:
    previous = lambda_run.set_lambda_client_factory(lambda clients: packaged)
    try:
        yield packaged
    finally:
        lambda_run.set_lambda_client_factory(previous)


def settings(**extra: Any) -> LoadSettings:
    return LoadSettings.from_event(event(), run_on="lambda", lambda_function="s3pa-load", **extra)


def table_materializations(instance: DagsterInstance) -> dict[str, Any]:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=TABLE), limit=100).records
    out = {}
    for rec in records:
        mat = rec.asset_materialization
        assert mat is not None
        out[str(mat.partition)] = mat
    return out


def reported(inv: Invocation) -> dict[str, Any]:
    (report,) = [m for m in tail_messages(inv) if m["method"] == "report_asset_materialization"]
    return dict(report["params"])


def test_parquet_table_on_lambda_records_the_handler_metadata(
    fake_lambda: PackagedLambda, lake: Lake
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(120))
    instance = DagsterInstance.ephemeral()
    assets = build_load_assets(daily_partitions())
    res = materialize(
        [assets],
        partition_key=DAY,
        resources={"s3": S3Resource(region_name="us-east-1"), "load_settings": settings()},
        instance=instance,
    )
    assert res.success
    (call,) = fake_lambda.calls
    assert call["FunctionName"] == "s3pa-load"
    assert call["LogType"] == "Tail"
    sent = call["event"]
    assert "DAGSTER_PIPES_CONTEXT" in sent
    assert sent["data_ref"] == DAY
    inv: Invocation = call["invocation"]
    assert inv.payload["statusCode"] == 200

    mat = table_materializations(instance)[DAY]
    pipes_report = reported(inv)
    # The asset's materialization carries what the handler reported through Pipes...
    for key, value in pipes_report["metadata"].items():
        assert key in mat.metadata, key
        recorded = mat.metadata[key].value
        assert recorded == value["raw_value"], (key, recorded, value)
    # ...with exactly the keys and metadata types a local load records...
    local = AssetMaterialization("x", metadata=table_metadata(LoadResult(**inv.payload["result"]))).metadata
    assert set(pipes_report["metadata"]) == set(local)
    assert {k: type(v).__name__ for k, v in mat.metadata.items()} == {
        k: type(v).__name__ for k, v in local.items()
    }
    # ...and the data version is the source ETag.
    assert mat.tags["dagster/data_version"] == pipes_report["data_version"] == inv.payload["result"]["etag"]
    assert mat.metadata["rows"].value == 120
    assert len(lake.read_catalog()) == 120


def test_backfill_range_fans_out_one_invocation_per_day_and_isolates_a_bad_day(
    fake_lambda: PackagedLambda, lake: Lake
) -> None:
    days = ["20240115", "20240116", "20240117"]
    lake.put("exports/20240115/sales_1.csv", csv_rows(10))
    lake.put("exports/20240116/sales_1.csv", b"1,only two columns\n")  # the function fails to read it
    lake.put("exports/20240117/sales_1.csv", csv_rows(12))
    instance = DagsterInstance.ephemeral()
    assets = build_load_assets(daily_partitions())
    res = materialize(
        [assets],
        resources={
            "s3": S3Resource(region_name="us-east-1"),
            "load_settings": settings(lambda_concurrency=3),
        },
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
        raise_on_error=False,
    )
    assert not res.success
    assert sorted(c["event"]["data_ref"] for c in fake_lambda.calls) == days
    mats = table_materializations(instance)
    assert sorted(mats) == ["20240115", "20240117"]
    assert mats["20240115"].metadata["rows"].value == 10
    assert mats["20240117"].metadata["rows"].value == 12
    failure = next(e for e in res.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data)
    assert "20240116" in text
    assert "(Lambda s3pa-load)" in text


def test_function_errors_fail_the_day_with_the_function_message(
    fake_lambda: PackagedLambda, lake: Lake
) -> None:
    """A function that raises (FunctionError) fails the day with its message."""
    lake.put(f"exports/{DAY}/sales_1.csv", b"1,two columns\n")
    fake_lambda.env["S3PA_RAISE_ON_ERROR"] = "always"
    instance = DagsterInstance.ephemeral()
    res = materialize(
        [build_load_assets(daily_partitions())],
        partition_key=DAY,
        resources={"s3": S3Resource(region_name="us-east-1"), "load_settings": settings()},
        instance=instance,
        raise_on_error=False,
    )
    assert not res.success
    failure = next(e for e in res.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data)
    assert "invoking Lambda 's3pa-load' for 20240115 failed: LoadFailedError: Error: read:" in text
    assert table_materializations(instance) == {}


def test_log_result_is_a_4kb_tail(fake_lambda: PackagedLambda, lake: Lake) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(2))
    resp = fake_lambda.invoke(FunctionName="f", Payload=json.dumps(event()), LogType="Tail")
    assert len(base64.b64decode(resp["LogResult"])) <= LOG_TAIL_BYTES
    assert json.loads(resp["Payload"].read())["statusCode"] == 200


def test_s3_message_channel(packaged: PackagedLambda, lake: Lake) -> None:
    """With PipesS3ContextInjector / PipesS3MessageReader on the Dagster side, the context is read from
    and the messages are written to S3 (no 4 KB limit)."""
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(9))
    context = json.loads(zlib.decompress(base64.b64decode(pipes_params()["DAGSTER_PIPES_CONTEXT"])))["data"]
    lake.put("pipes/ctx/context.json", json.dumps(context).encode(), bucket="dst-bucket")
    params = {
        "DAGSTER_PIPES_CONTEXT": encode_param({"bucket": "dst-bucket", "key": "pipes/ctx/context.json"}),
        "DAGSTER_PIPES_MESSAGES": encode_param({"bucket": "dst-bucket", "key_prefix": "pipes/msgs"}),
    }
    inv = packaged.invoke_one({**event(), **params})
    assert inv.payload["statusCode"] == 200, inv.payload
    assert tail_messages(inv) == []  # nothing in the log
    chunks = [
        lake.clients.s3.get_object(Bucket="dst-bucket", Key=k)["Body"].read().decode()
        for k in lake.keys("pipes/msgs/")
    ]
    messages = [json.loads(line) for chunk in chunks for line in chunk.splitlines() if line.strip()]
    assert [m["method"] for m in messages] == ["opened", "report_asset_materialization", "closed"]
    assert messages[1]["params"]["data_version"] == inv.payload["result"]["etag"]
    assert messages[1]["params"]["metadata"]["rows"]["raw_value"] == 9
