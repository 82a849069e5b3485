"""The handler in-process: event kinds, settings, failure policy, client reuse, Pipes details."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from s3_parquet_assets import lambda_handler as lh
from s3_parquet_assets.core import AwsClients, LoadError, make_clients
from s3_parquet_assets.lambda_ import clients as lambda_clients
from s3_parquet_assets.lambda_ import dispatch
from s3_parquet_assets.lambda_.routing import day_from_key
from s3_parquet_assets.lambda_.settings import data_ref_pattern

from ..helpers import DAY, Lake, csv_rows, event
from .test_packaged import s3_record, scheduled


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, handler_env: None) -> list[AwsClients]:
    """Every client set the handler makes."""
    made: list[AwsClients] = []

    def make() -> AwsClients:
        clients = make_clients()
        made.append(clients)
        return clients

    monkeypatch.setattr(lambda_clients, "make_clients", make)
    return made


def test_classify() -> None:
    assert lh.classify(event()) == "direct"
    assert lh.classify([1]) == "direct"
    assert lh.classify(scheduled("2024-01-16T00:00:00Z")) == "scheduled"
    assert lh.classify({"Records": [s3_record("k")]}) == "s3"
    assert lh.classify({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}) == "s3"
    assert lh.classify({"Event": "s3:TestEvent"}) == "s3"
    with pytest.raises(LoadError, match="unsupported notification"):
        lh.classify({"Records": [{"eventSource": "aws:sqs"}]})
    with pytest.raises(LoadError, match=r"unsupported EventBridge event 'aws\.ec2'"):
        lh.classify({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"})


def test_settings_from_env() -> None:
    env = {
        "S3PA_EVENT_DEFAULTS": json.dumps({"bucket_src": "a-bucket", "table": "t1", "header": False}),
        "S3PA_TABLE": "t2",
        "S3PA_SCHEMA": "id, name ,amount",
        "S3PA_PARTITIONS_COLS": '["data_ref", "name"]',
        "S3PA_HEADER": "TRUE",
        "S3PA_ALLOW_EMPTY": "0",
        "S3PA_TRANSFORM": "",
        "S3PA_LOG_LEVEL": "DEBUG",
        "OTHER": "x",
    }
    assert lh.settings_from_env(env) == {
        "bucket_src": "a-bucket",
        "table": "t2",
        "schema": ["id", "name", "amount"],
        "partitions_cols": ["data_ref", "name"],
        "header": True,
        "allow_empty": False,
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S3PA_TABEL": "x"}, "setting S3PA_TABEL: is not a known setting; known: "),
        ({"S3PA_DATA_REF": "20240101"}, "setting S3PA_DATA_REF: is not a known setting"),
        ({"S3PA_EVENT_DEFAULTS": "{not json"}, "setting S3PA_EVENT_DEFAULTS: is not valid JSON"),
        ({"S3PA_EVENT_DEFAULTS": "[]"}, "must be a JSON object of event fields"),
        ({"S3PA_EVENT_DEFAULTS": '{"data_ref": "20240101"}'}, "must not set data_ref"),
        ({"S3PA_HEADER": "maybe"}, "setting S3PA_HEADER: 'maybe' must be true or false"),
        ({"S3PA_SCHEMA": "[1,"}, "setting S3PA_SCHEMA: is not valid JSON"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(LoadError, match=r"^validate: ") as info:
        lh.settings_from_env(env)
    assert message in str(info.value)


def test_data_ref_pattern() -> None:
    default = data_ref_pattern({})
    assert day_from_key("exports/20240115/sales_20240115123000.csv", default) == "20240115"
    ymd = data_ref_pattern({lh.ENV_DATA_REF_PATTERN: r"(?P<year>\d{4})/(?P<month>\d{1,2})/(?P<day>\d{1,2})/"})
    assert day_from_key("exports/2024/1/5/sales.csv", ymd) == "20240105"
    dashed = data_ref_pattern({lh.ENV_DATA_REF_PATTERN: r"dt=(?P<data_ref>\d{4}-\d{2}-\d{2})"})
    assert day_from_key("exports/dt=2024-01-15/x.csv", dashed) == "20240115"
    with pytest.raises(LoadError, match="needs a named group"):
        data_ref_pattern({lh.ENV_DATA_REF_PATTERN: r"\d{8}"})
    with pytest.raises(LoadError, match="is not a valid regular expression"):
        data_ref_pattern({lh.ENV_DATA_REF_PATTERN: r"(?P<data_ref>"})
    with pytest.raises(LoadError, match="does not match S3PA_DATA_REF_PATTERN"):
        day_from_key("exports/latest/sales.csv", default)


def test_clients_are_made_once_per_container_and_never_for_a_bad_event(
    counted: list[AwsClients], lake: Lake
) -> None:
    assert lh.handler({"bucket_src": "x"})["statusCode"] == 500
    with pytest.raises(lh.LoadFailedError):
        lh.handler(scheduled("not a time"))
    assert counted == []  # validation happens before any client is made
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(5))
    lake.put("exports/20240116/sales_1.csv", csv_rows(6))
    assert lh.handler(event())["statusCode"] == 200
    # The schedule catches up the week ending 20240116: 20240115 is current, 20240116 loads.
    caught_up = lh.handler(scheduled("2024-01-17T01:00:00Z"))
    assert caught_up["days"]["20240115"] == "current"
    assert [r["rows"] for r in caught_up["results"]] == [6]
    assert lh.handler({"Records": [s3_record(f"exports/{DAY}/sales_1.csv")]})["statusCode"] == 200
    assert len(counted) == 1


def test_settings_are_read_at_call_time(
    monkeypatch: pytest.MonkeyPatch, handler_env: None, lake: Lake
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(5))
    first = lh.handler(scheduled("2024-01-16T01:00:00Z"))
    assert [r["table"] for r in first["results"]] == ["analytics.sales"]
    monkeypatch.setenv("S3PA_TABLE", "sales_copy")
    monkeypatch.setenv("S3PA_PATHOUTPUT", "tables/sales_copy")
    second = lh.handler(scheduled("2024-01-16T01:00:00Z"))
    assert [r["table"] for r in second["results"]] == ["analytics.sales_copy"]


def test_failure_policy(monkeypatch: pytest.MonkeyPatch, handler_env: None, lake: Lake) -> None:
    # auto: asynchronous kinds raise LoadFailedError carrying the response, direct ones return it.
    with pytest.raises(lh.LoadFailedError) as info:
        lh.handler(scheduled("2024-01-16T01:00:00Z"))
    assert info.value.response["statusCode"] == 500
    assert str(info.value).startswith("20240115: Error: list: no object under")
    assert lh.handler(event())["statusCode"] == 500
    # never: always return the response
    monkeypatch.setenv(lh.ENV_RAISE_ON_ERROR, "never")
    returned = lh.handler(scheduled("2024-01-16T01:00:00Z"))
    assert returned["statusCode"] == 500
    assert returned["days"]["20240115"].startswith("Error: list: no object under")
    # always: even direct invocations raise
    monkeypatch.setenv(lh.ENV_RAISE_ON_ERROR, "always")
    with pytest.raises(lh.LoadFailedError):
        lh.handler(event())
    # a bad policy value is itself a clear validation error (and async events still raise)
    monkeypatch.setenv(lh.ENV_RAISE_ON_ERROR, "sometimes")
    assert "must be auto, always or never" in lh.handler(event())["body"]
    with pytest.raises(lh.LoadFailedError, match="S3PA_RAISE_ON_ERROR"):
        lh.handler(scheduled("2024-01-16T01:00:00Z"))


def test_scheduled_event_needs_a_time(handler_env: None) -> None:
    with pytest.raises(lh.LoadFailedError, match="scheduled event without a 'time'"):
        lh.handler({k: v for k, v in scheduled("x").items() if k != "time"})
    with pytest.raises(lh.LoadFailedError, match="is not an ISO 8601 timestamp"):
        lh.handler(scheduled("yesterday"))


def test_notification_for_another_bucket_is_ignored_saying_why(handler_env: None, lake: Lake) -> None:
    response = lh.handler({"Records": [s3_record(f"exports/{DAY}/sales.csv", bucket="other-bucket")]})
    assert response["statusCode"] == 200
    assert response["body"] == (
        f"Ignored: s3://other-bucket/exports/{DAY}/sales.csv: not in the source bucket 'src-bucket' of table sales"
    )
    assert lake.keys() == []


def test_deleted_objects_and_folders_are_ignored(handler_env: None) -> None:
    removed = {"Records": [s3_record(f"exports/{DAY}/sales.csv", name="ObjectRemoved:Delete")]}
    assert lh.handler(removed)["body"] == "Ignored: no ObjectCreated record"
    folder = {"Records": [s3_record(f"exports/{DAY}/")]}
    assert "a folder marker" in lh.handler(folder)["body"]
    outside = {"Records": [s3_record(f"incoming/{DAY}/sales.csv")]}
    assert (
        "outside the source prefix 'exports/{data_ref}/' (a YYYYMMDD day for {data_ref}) of table sales"
        in lh.handler(outside)["body"]
    )


def test_several_days_in_one_notification(handler_env: None, lake: Lake) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(2))
    lake.put("exports/20240116/sales_1.csv", csv_rows(3))
    records = [s3_record(k) for k in (f"exports/{DAY}/sales_1.csv", "exports/20240116/sales_1.csv")]
    response = lh.handler({"Records": [*records, records[0]]})
    assert response["statusCode"] == 200
    assert [r["rows"] for r in response["results"]] == [2, 3]


def test_unexpected_exceptions_are_logged_and_reraised(
    monkeypatch: pytest.MonkeyPatch, handler_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(dispatch, "handle_event", boom)
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="a bug"):
        lh.handler(event(), type("Ctx", (), {"aws_request_id": "req-1"})())
    assert "invocation req-1: unexpected failure (re-raised)" in caplog.text
    assert "RuntimeError: a bug" in caplog.text  # with the traceback


def test_pipes_metadata_is_shortened_to_the_budget() -> None:
    result = {
        "rows": 1,
        "bytes": 2,
        "files": 1,
        "output_location": "s3://b/" + "p" * 2000,
        "partition_location": "s3://b/" + "q" * 2000,
        "table": "db.t",
        "source_key": "k" * 1000,
        "etag": "e",
        "seconds": 1,
        "load_id": "id",
        "previous_location": None,
        "removed_objects": 0,
    }
    meta = lh.pipes_metadata(result)
    assert len(json.dumps(meta)) <= lh.PIPES_TAIL_BUDGET - 800
    assert meta["rows"] == {"raw_value": 1, "type": "int"}
    assert meta["seconds"] == {"raw_value": 1.0, "type": "float"}
    assert meta["previous_location"]["raw_value"] == "-"
    assert meta["skipped"] == {"raw_value": False, "type": "bool"}
    assert meta["source_key"]["raw_value"].startswith("kkk")
    assert "..." in meta["source_key"]["raw_value"]
