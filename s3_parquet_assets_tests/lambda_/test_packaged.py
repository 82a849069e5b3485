"""The packaged handler (built zip, unpacked, layer-only Python, subprocess) against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

from ..helpers import DAY, DST, SRC, Lake, csv_rows, event
from .conftest import SETTINGS_ENV
from .packaged import PackagedLambda

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "deploy" / "events"


def scheduled(time: str) -> dict[str, object]:
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/s3-parquet-assets-daily"],
        "detail": {},
    }


def s3_record(key: str, bucket: str = SRC, name: str = "ObjectCreated:Put") -> dict[str, object]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-01-16T00:05:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": 10, "eTag": "x", "sequencer": "0"},
        },
    }


def test_direct_event_runs_a_real_load_with_only_the_package_and_the_layer(
    packaged: PackagedLambda, lake: Lake, layer_python: Path, code_dir: Path
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(250))
    run = packaged.run([event()])
    inv = run.invocations[0]
    assert inv.function_error is None, inv.payload
    assert inv.payload["statusCode"] == 200, inv.payload
    assert inv.payload["body"] == "Success"
    result = inv.payload["result"]
    assert result["rows"] == 250
    assert result["data_ref"] == DAY
    assert result["source_key"] == f"exports/{DAY}/sales_1.csv"
    assert result["table"] == "analytics.sales"
    rows = lake.read_catalog()
    assert len(rows) == 250
    assert rows[0] == {"id": "0", "customer": "C0", "amount": "0.0"}

    # What the process could see: the package directory, the layer venv and the standard library.
    venv = layer_python.parent.parent
    assert run.handler_file == str(code_dir / "s3_parquet_assets" / "lambda_handler.py")
    assert run.prefix == str(venv)
    for entry in run.sys_path:
        assert entry == str(code_dir) or entry.startswith((str(venv), run.base_prefix)), entry
    assert not any(".venv" in entry for entry in run.sys_path)
    assert not list(venv.glob("lib/python*/site-packages/dagster*"))  # the layer has no dagster
    assert run.dagster_visible is False
    assert run.dagster_loaded_after == []  # not even dagster_pipes without a Pipes event


def test_scheduled_event_catches_up_to_the_day_before_the_event_time(
    packaged: PackagedLambda, lake: Lake
) -> None:
    """Without a tables file the schedule serves the environment's table, catching up
    S3PA_CATCHUP_DAYS days (default 7): days without an export are skipped, a missed day loads."""
    lake.put("exports/20240229/sales_a.csv", csv_rows(40))
    lake.put("exports/20240226/sales_a.csv", csv_rows(3))
    inv = packaged.invoke_one(scheduled("2024-03-01T02:30:00Z"))
    assert inv.function_error is None, inv.payload
    assert inv.payload["statusCode"] == 200, inv.payload
    assert inv.payload["table"] == "sales"
    assert list(inv.payload["days"]) == [f"202402{d}" for d in range(23, 30)]
    assert inv.payload["days"]["20240226"] == inv.payload["days"]["20240229"] == "loaded"
    assert inv.payload["days"]["20240227"] == "no export"
    assert [r["data_ref"] for r in inv.payload["results"]] == ["20240226", "20240229"]
    assert len(lake.read_catalog("20240229")) == 40
    # S3PA_CATCHUP_DAYS=1: yesterday only (current now, so no load).
    again = packaged.invoke_one(scheduled("2024-03-01T02:30:00Z"), env={"S3PA_CATCHUP_DAYS": "1"})
    assert again.payload["days"] == {"20240229": "current"}
    assert again.payload["results"] == []


def test_scheduled_settings_come_from_the_environment_at_call_time(
    packaged: PackagedLambda, lake: Lake
) -> None:
    """S3PA_EVENT_DEFAULTS as the base, individual S3PA_* on top (empty ones count as unset)."""
    lake.put("exports/20240115/sales_h.csv", b"id,customer,amount\n" + csv_rows(7))
    defaults = {
        "bucket_src": SRC,
        "bucket_dstn": DST,
        "prefix": "exports/{data_ref}/",
        "substr": "sales",
        "schema": [
            {"name": "id", "type": "bigint"},
            {"name": "customer", "type": "string"},
            {"name": "amount", "type": "double"},
        ],
        "pathoutput": "tables/other",
        "table": "wrong",
        "database": "analytics",
    }
    env = dict.fromkeys(SETTINGS_ENV, "")
    env.update({"S3PA_EVENT_DEFAULTS": json.dumps(defaults), "S3PA_TABLE": "other", "S3PA_HEADER": "true"})
    inv = packaged.invoke_one(scheduled("2024-01-16T00:00:01Z"), env=env)
    assert inv.payload["statusCode"] == 200, inv.payload
    (result,) = inv.payload["results"]
    assert result["table"] == "analytics.other"
    assert result["rows"] == 7
    part = lake.clients.glue.get_partition(DatabaseName="analytics", TableName="other", PartitionValues=[DAY])
    rows = lake.read_location(part["Partition"]["StorageDescriptor"]["Location"])
    assert rows[0] == {"id": 0, "customer": "C0", "amount": 0.0}


def test_s3_notifications_load_the_day_of_the_key_in_a_warm_container(
    packaged: PackagedLambda, lake: Lake
) -> None:
    lake.put("exports/20240115/sales new.csv", csv_rows(30))
    lake.put("exports/20240116/sales_b.csv", csv_rows(12, start=100))
    lake.put("exports/20240116/manifest.json", b"{}")
    classic = {"Records": [s3_record("exports/20240115/sales new.csv")]}
    eventbridge = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2024-01-17T00:00:00Z",
        "detail": {"bucket": {"name": SRC}, "object": {"key": "exports/20240116/sales_b.csv", "size": 1}},
    }
    not_an_export = {"Records": [s3_record("exports/20240116/manifest.json")]}
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": SRC}
    run = packaged.run([classic, eventbridge, not_an_export, test_event])
    first, second, ignored, test = (inv.payload for inv in run.invocations)
    assert [inv.function_error for inv in run.invocations] == [None] * 4, run.output[-3000:]
    assert first["statusCode"] == 200, first
    assert first["result"]["data_ref"] == "20240115"
    assert first["result"]["source_key"] == "exports/20240115/sales new.csv"
    assert second["statusCode"] == 200, second
    assert second["result"]["data_ref"] == "20240116"
    assert ignored["statusCode"] == 200
    assert ignored["body"].startswith("Ignored: ")
    assert "does not contain 'sales'" in ignored["body"]
    assert test["body"].startswith("Ignored: s3:TestEvent")
    assert len(lake.read_catalog("20240115")) == 30
    assert [r["id"] for r in lake.read_catalog("20240116")][:2] == ["100", "101"]


def test_bad_events_get_500_and_a_clear_body_or_raise_when_asynchronous(
    packaged: PackagedLambda, lake: Lake
) -> None:
    missing = event(bucket_src=None)
    typo = {**event(), "tabel": "x"}
    not_an_object = ["not", "an", "object"]
    no_source = event(data_ref="20240120")
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {}}]}
    not_there = {"Records": [s3_record("exports/20240116/sales_gone.csv")]}
    run = packaged.run(
        [missing, typo, not_an_object, no_source, sns, not_there, scheduled("2024-01-16T00:00:00Z")]
    )
    payloads = [inv.payload for inv in run.invocations]
    errors = [inv.function_error for inv in run.invocations]

    # Direct (synchronous) events: the response says what is wrong.
    assert errors[:5] == [None] * 5
    assert payloads[0] == {
        "statusCode": 500,
        "body": "Error: validate: field 'bucket_src': is required",
        "stage": "validate",
    }
    assert payloads[1]["statusCode"] == 500
    assert "unknown field(s) ['tabel']" in payloads[1]["body"]
    assert payloads[2]["body"] == "Error: validate: the event must be a JSON object, got list"
    assert payloads[3]["statusCode"] == 500
    assert payloads[3]["stage"] == "list"
    assert "no object under s3://src-bucket/exports/20240120/" in payloads[3]["body"]
    assert payloads[4]["statusCode"] == 500
    assert "unsupported notification" in payloads[4]["body"]

    # Asynchronous events (S3, schedule): raised, so Lambda counts an error, retries, then DLQ.
    assert errors[5:] == ["Unhandled", "Unhandled"]
    assert payloads[5]["errorType"] == "LoadFailedError"
    assert payloads[5]["errorMessage"].startswith(
        "Error: list: no object under s3://src-bucket/exports/20240116/"
    )
    assert payloads[6]["errorType"] == "LoadFailedError"
    assert payloads[6]["errorMessage"].startswith(
        "20240115: Error: list: no object under s3://src-bucket/exports/20240115/"
    )
    # ...and logged, not swallowed.
    assert "[ERROR]" in run.invocations[6].log
    assert lake.keys() == []


def test_example_events_in_deploy_are_served(packaged: PackagedLambda, lake: Lake) -> None:
    """deploy/events/*.json, as a person would send them with `sam remote invoke`."""
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert names == ["direct.json", "s3.json", "scheduled.json"]
    direct = json.loads((EVENTS / "direct.json").read_text())
    sched = json.loads((EVENTS / "scheduled.json").read_text())
    s3 = json.loads((EVENTS / "s3.json").read_text())
    env = {
        "S3PA_BUCKET_SRC": direct["bucket_src"],
        "S3PA_BUCKET_DSTN": direct["bucket_dstn"],
        "S3PA_PREFIX": direct["prefix"],
        "S3PA_SUBSTR": direct["substr"],
        "S3PA_SCHEMA": json.dumps(direct["schema"]),
        "S3PA_PATHOUTPUT": direct["pathoutput"],
        "S3PA_TABLE": direct["table"],
        "S3PA_DATABASE": direct["database"],
        "S3PA_HEADER": "true" if direct.get("header") else "false",
    }
    for bucket in {direct["bucket_src"], direct["bucket_dstn"]} - {SRC, DST}:
        lake.clients.s3.create_bucket(Bucket=bucket)
    if direct["database"] != "analytics":
        lake.clients.glue.create_database(DatabaseInput={"Name": direct["database"]})
    key = unquote_plus(s3["Records"][0]["s3"]["object"]["key"])
    header = b"id,customer,amount\n" if direct.get("header") else b""
    for day in {direct["data_ref"], "20240115"}:
        lake.put(
            direct["prefix"].replace("{data_ref}", day) + "sales_export.csv",
            header + csv_rows(5),
            bucket=direct["bucket_src"],
        )
    lake.put(key, header + csv_rows(6), bucket=direct["bucket_src"])
    run = packaged.run([direct, sched, s3], env=env)
    for inv in run.invocations:
        assert inv.function_error is None, inv.payload
        assert inv.payload["statusCode"] == 200, inv.payload
    assert run.invocations[2].payload["result"]["source_key"] == "exports/20240113/sales_2024-01-13 final.csv"
    # The schedule catches up the week ending 20240115: 14 is current (the direct event loaded it),
    # 13 (the S3 example's export) and 15 load.
    days = run.invocations[1].payload["days"]
    assert {d: v for d, v in days.items() if v != "no export"} == {
        "20240113": "loaded",
        "20240114": "current",
        "20240115": "loaded",
    }
    assert run.invocations[0].payload["result"]["data_ref"] == direct["data_ref"]


def test_s3_day_pattern_is_configurable(packaged: PackagedLambda, lake: Lake) -> None:
    """A source prefix without {data_ref} does not spell the day: S3PA_DATA_REF_PATTERN reads it from
    the key, here from year/month/day groups in the name."""
    key = "exports/20240115/sales_2024-01-15.csv"
    lake.put(key, csv_rows(3))
    env = {
        "S3PA_PREFIX": "exports/",
        "S3PA_DATA_REF_PATTERN": r"sales_(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})",
    }
    undated = {"Records": [s3_record("exports/latest/sales.csv")]}
    inv, bad = packaged.run([{"Records": [s3_record(key)]}, undated], env=env).invocations
    assert inv.function_error is None, inv.payload
    assert inv.payload["statusCode"] == 200, inv.payload
    assert inv.payload["result"]["data_ref"] == DAY
    # A key of the source whose day the pattern cannot tell: an error, raised (asynchronous).
    assert bad.function_error == "Unhandled"
    assert bad.payload["errorType"] == "LoadFailedError"
    assert (
        "S3 key 'exports/latest/sales.csv' does not match S3PA_DATA_REF_PATTERN"
        in bad.payload["errorMessage"]
    )
