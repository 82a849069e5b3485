"""Each table's automation, evaluated with its build contexts against the moto server: the catch-up
schedule requests exactly the days that need a load (and its run loads them), the source sensor lists
only the recent day prefixes and keeps its cursor across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)
from dagster_aws.s3 import S3Resource

from s3_parquet_assets.core import handle_event
from s3_parquet_assets.defs.sensors import Cursor

from ..helpers import DB, Lake, gz
from ..three_tables import source_keys, stage_day
from .conftest import component_defs, spec

S3 = S3Resource(region_name="us-east-1")


def _tick(defs: Definitions, name: str, at: datetime) -> Any:
    schedule = defs.resolve_schedule_def(f"{name}_daily")
    with build_schedule_context(
        scheduled_execution_time=at, resources={"s3": S3}, repository_def=defs.get_repository_def()
    ) as ctx:
        return schedule.evaluate_tick(ctx)


def _load_id(lake: Lake, name: str, day: str) -> str:
    part = lake.clients.glue.get_partition(DatabaseName=DB, TableName=name, PartitionValues=[day])
    return str(part["Partition"]["Parameters"]["s3pa.load_id"])


def test_the_catch_up_schedule_requests_and_loads_exactly_the_missed_day(
    lake: Lake, defs: Definitions
) -> None:
    days = ["20240113", "20240114", "20240115"]  # sales: catchup_days 3
    for day in days:
        stage_day(lake, day)
    sales = spec("sales")
    for day in (days[0], days[2]):  # loaded before (by the Lambda, say); 14 was missed
        assert handle_event(sales.event(day), lake.clients)["statusCode"] == 200
    before = {d: _load_id(lake, "sales", d) for d in (days[0], days[2])}

    data = _tick(defs, "sales", datetime(2024, 1, 16, 6, 0, tzinfo=UTC))
    assert [r.partition_key for r in data.run_requests] == ["20240114"]

    # the requested run (the schedule's job, that partition) loads that day and nothing else
    job = defs.resolve_job_def("sales_job")
    instance = DagsterInstance.ephemeral()
    (request,) = data.run_requests
    result = job.execute_in_process(instance=instance, partition_key=request.partition_key)
    assert result.success
    assert len(lake.read_table_day("sales", "20240114")) == 6
    assert {d: _load_id(lake, "sales", d) for d in before} == before

    # every day current: the next tick skips
    again = _tick(defs, "sales", datetime(2024, 1, 16, 6, 0, tzinfo=UTC))
    assert not again.run_requests and again.skip_message and "current" in again.skip_message

    # a re-export of an old day inside the window is requested; a day before the window is not
    lake.put_newer("sales/20240113/sales_20240113_v2.csv.gz", gz(b"1,A,1.0\n"))
    lake.put_newer("sales/20240112/sales_20240112_v2.csv.gz", gz(b"1,A,1.0\n"))
    reexport = _tick(defs, "sales", datetime(2024, 1, 16, 6, 0, tzinfo=UTC))
    assert [r.partition_key for r in reexport.run_requests] == ["20240113"]

    # yesterday's export missing is requested (its run fails saying so); older missing days are not
    late = _tick(defs, "sales", datetime(2024, 1, 18, 6, 0, tzinfo=UTC))
    assert [r.partition_key for r in late.run_requests] == ["20240117"]


def test_each_table_has_its_own_schedule_time_and_window(lake: Lake, defs: Definitions) -> None:
    for day in ("20240110", "20240111", "20240112"):
        stage_day(lake, day)
    at = datetime(2024, 1, 13, 7, 0, tzinfo=UTC)
    # stock: catchup_days 7, start 20231201: the window 0106..0112, with exports on 10..12 only
    assert [r.partition_key for r in _tick(defs, "stock", at).run_requests] == [
        "20240110",
        "20240111",
        "20240112",
    ]
    # customers starts on 20240105: its window 0110..0112 (catchup_days 3 from the defaults)
    assert [r.partition_key for r in _tick(defs, "customers", at).run_requests] == [
        "20240110",
        "20240111",
        "20240112",
    ]


@pytest.fixture
def list_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every S3 ListObjectsV2 call, from a botocore event hook on each session."""
    calls: list[dict[str, Any]] = []
    real = boto3.Session

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    def session(*args: Any, **kwargs: Any) -> boto3.Session:
        s = real(*args, **kwargs)
        s.events.register("provide-client-params.s3.ListObjectsV2", record)
        return s

    monkeypatch.setattr(boto3, "Session", session)
    return calls


def _sense(defs: Definitions, name: str, cursor: str | None) -> SensorResult:
    sensor = defs.resolve_sensor_def(f"{name}_new_exports")
    with build_sensor_context(cursor=cursor, resources={"s3": S3}, definitions=defs) as ctx:
        result = sensor(ctx)
    assert isinstance(result, SensorResult)
    return result


def test_the_sensor_lists_only_recent_prefixes_and_its_cursor_survives_restarts(
    lake: Lake, tables_file: Path, list_calls: list[dict[str, Any]]
) -> None:
    today = datetime.now(UTC).date()
    history = [(today - timedelta(days=n)).strftime("%Y%m%d") for n in range(120, 0, -1)]
    for day in history:  # four months of sales exports
        lake.put(f"sales/{day}/sales_{day}.csv.gz", gz(f"1,A,{day}\n".encode()))
    recent = history[-3:]  # sales: catchup_days 3, ending yesterday

    first = _sense(component_defs(tables_file), "sales", None)
    assert [r.partition_key for r in first.run_requests] == recent
    assert [c["Prefix"] for c in list_calls] == [f"sales/{d}/" for d in recent]
    assert all(c["Bucket"] == "src-bucket" for c in list_calls)
    assert {r.tags["s3pa/source_key"] for r in first.run_requests} == {
        f"sales/{d}/sales_{d}.csv.gz" for d in recent
    }
    cursor = first.cursor
    assert cursor is not None and sorted(Cursor.parse(cursor).etags) == recent

    # a restarted daemon loads the definitions again and gets the stored cursor back: nothing again
    list_calls.clear()
    again = _sense(component_defs(tables_file), "sales", cursor)
    assert again.run_requests == [] and isinstance(again.skip_reason, SkipReason)
    assert again.cursor == cursor
    assert len(list_calls) == 3

    # a re-export of yesterday is requested, alone
    lake.put_newer(f"sales/{recent[-1]}/sales_{recent[-1]}_v2.csv.gz", gz(b"2,B,2\n"))
    newer = _sense(component_defs(tables_file), "sales", cursor)
    assert [r.partition_key for r in newer.run_requests] == [recent[-1]]
    assert newer.run_requests[0].tags["s3pa/source_key"] == f"sales/{recent[-1]}/sales_{recent[-1]}_v2.csv.gz"
    assert Cursor.parse(newer.cursor).etags[recent[0]] == Cursor.parse(cursor).etags[recent[0]]


def test_sensors_are_per_table(lake: Lake, defs: Definitions) -> None:
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).strftime("%Y%m%d")
    stage_day(lake, yesterday)
    for name in ("sales", "customers", "stock"):
        result = _sense(defs, name, None)
        assert [r.partition_key for r in result.run_requests] == [yesterday], name
        assert [r.tags["s3pa/source_key"] for r in result.run_requests] == [source_keys(yesterday)[name]]


def test_a_prefix_without_data_ref_is_listed_after_the_newest_key_seen(
    lake: Lake, tmp_path: Path, list_calls: list[dict[str, Any]]
) -> None:
    text = f"""\
tables:
  - name: orders
    bucket_src: src-bucket
    bucket_dstn: dst-bucket
    database: {DB}
    prefix: inbox/
    substr: orders_
    schema: [id, amount]
    pathoutput: lake/orders
    table: orders
"""
    path = tmp_path / "orders.yaml"
    path.write_text(text, encoding="utf-8")
    lake.put("inbox/orders_0001.csv", b"1,2\n")
    lake.put("inbox/orders_0002.csv", b"3,4\n")
    lake.put("inbox/returns_0002.csv", b"5,6\n")  # no substring
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).strftime("%Y%m%d")

    first = _sense(component_defs(path), "orders", None)
    assert [r.partition_key for r in first.run_requests] == [yesterday]  # the day before LastModified
    assert first.run_requests[0].tags["s3pa/source_key"] == "inbox/orders_0002.csv"
    assert [(c["Prefix"], c.get("StartAfter")) for c in list_calls] == [("inbox/", None)]
    assert Cursor.parse(first.cursor).after == "inbox/orders_0002.csv"  # the newest export key

    list_calls.clear()
    again = _sense(component_defs(path), "orders", first.cursor)
    assert again.run_requests == []
    assert [(c["Prefix"], c.get("StartAfter")) for c in list_calls] == [("inbox/", "inbox/orders_0002.csv")]

    lake.put("inbox/orders_0003.csv", b"7,8\n")
    newer = _sense(component_defs(path), "orders", first.cursor)
    assert [r.tags["s3pa/source_key"] for r in newer.run_requests] == ["inbox/orders_0003.csv"]
