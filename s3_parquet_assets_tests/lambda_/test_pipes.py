"""Dagster Pipes: the packaged handler reports through the 4 KB log tail (the Dagster side, a table with
``run_on: lambda`` invoking it through ``PipesLambdaClient``: ``defs/test_lambda_run.py``)."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from dagster_pipes import encode_param

from s3_parquet_assets.defs import lambda_run
from s3_parquet_assets.lambda_handler import PIPES_TAIL_BUDGET

from ..helpers import DAY, Lake, csv_rows, event
from .packaged import LOG_TAIL_BYTES, Invocation, PackagedLambda


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
# The function as the Dagster side's PipesLambdaClient calls it.


@pytest.fixture
def fake_lambda(packaged: PackagedLambda) -> Iterator[PackagedLambda]:
    previous = lambda_run.set_lambda_client_factory(lambda clients: packaged)
    try:
        yield packaged
    finally:
        lambda_run.set_lambda_client_factory(previous)


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
