"""Permanent failures at each stage, and Glue's own errors (table missing, partition already there,
throttling): the previous day stays readable through the catalog, nothing is left half-written, no
multipart upload is orphaned, and the error names the stage."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ..faults import client_error, fail_on
from ..helpers import DAY, DB, DST, PATHOUT, TABLE, Lake, csv_rows
from .support import (
    BIG_ROWS,
    TALLY,
    Flaky,
    Recorder,
    assert_clean_day,
    by_id,
    day_versions,
    load,
    noisy_csv,
    rows_of,
    session,
    snapshot,
)

KEY = f"exports/{DAY}/sales.csv"


def fail_after(sess: boto3.Session, event_name: str, after: str, code: str) -> None:
    """Fail ``event_name`` the first time it fires once ``after`` has fired (a phase of the load)."""
    armed: list[int] = []
    done: list[int] = []

    def hook(**_kw: Any) -> None:
        if armed and not done:
            done.append(1)
            raise client_error(code, event_name.rsplit(".", 1)[-1])

    sess.events.register(after, lambda **_kw: armed.append(1))
    sess.events.register(event_name, hook)


def fail_for_key(sess: boto3.Session, event_name: str, part: str, code: str) -> None:
    """Fail ``event_name`` the first time it fires for a key holding ``part``."""
    done: list[int] = []

    def hook(params: Any, **_kw: Any) -> None:
        if part in str(params.get("url_path", "")) and not done:
            done.append(1)
            raise client_error(code, event_name.rsplit(".", 1)[-1])

    sess.events.register(event_name, hook)


def previous_day(lake: Lake) -> dict[str, Any]:
    lake.put(KEY, csv_rows(50))
    out = load(lake)
    assert out["statusCode"] == 200, out
    return out["result"]


# (event, nth, big source?, stage named, what the error message must mention)
PERMANENT = [
    ("before-call.s3.GetObject", 1, False, "read", "AccessDenied"),
    ("before-call.s3.CreateMultipartUpload", 1, True, "write", "AccessDenied"),
    ("before-call.s3.UploadPart", 2, True, "write", "AccessDenied"),
    ("before-call.s3.CompleteMultipartUpload", 1, True, "write", "AccessDenied"),
    # the Parquet PUT (the lease's PUTs are others: its creation, the record of the source, renewals)
    ("before-call.s3.PutObject@key=/load-", 1, False, "write", "AccessDenied"),
    ("before-call.s3.HeadObject", 1, False, "write", "AccessDenied"),  # verification
    # the catalog's look at the day once the new files are verified (between write and swap)
    ("before-call.glue.GetPartitions@after=after-call.s3.HeadObject", 1, False, "catalog", "AccessDenied"),
    ("before-call.glue.UpdatePartition", 1, False, "swap", "AccessDenied"),
]


@pytest.mark.parametrize(
    ("point", "nth", "big", "stage", "mention"), PERMANENT, ids=[f"{p[0]}#{p[1]}" for p in PERMANENT]
)
def test_permanent_error_keeps_the_previous_day(
    lake: Lake, point: str, nth: int, big: bool, stage: str, mention: str
) -> None:
    prev = previous_day(lake)
    lake.put(KEY, noisy_csv(BIG_ROWS) if big else csv_rows(90, start=300))
    before = snapshot(lake)
    sess = session()
    if "@after=" in point:
        event_name, after = point.split("@after=", 1)
        fail_after(sess, event_name, after, "AccessDenied")
    elif "@key=" in point:
        event_name, part = point.split("@key=", 1)
        fail_for_key(sess, event_name, part, "AccessDenied")
    else:
        fail_on(sess, point, nth, "AccessDenied")

    out = load(lake, sess)

    assert out["statusCode"] == 500, out
    TALLY["permanent fault"] += 1
    assert out["stage"] == stage
    assert out["body"].startswith(f"Error: {stage}: ")
    assert mention in out["body"]
    assert lake.read_catalog() == by_id(rows_of(50))
    assert lake.multipart_uploads() == []
    assert day_versions(lake, DAY) == {f"load-{prev['load_id']}"}
    after = snapshot(lake)
    assert after["objects"] == before["objects"]
    assert after["partitions"] == before["partitions"]
    assert after["uploads"] == before["uploads"] == []


def test_permanent_error_during_cleanup_leaves_the_new_day_served(lake: Lake) -> None:
    """The flip happened; removing the old version fails. The catalog serves the complete new day, the
    error names the swap stage, and the next load removes what was left."""
    previous_day(lake)
    lake.put(KEY, csv_rows(90, start=300))
    sess = session()
    fail_on(sess, "before-call.s3.DeleteObjects", 1, "AccessDenied")

    out = load(lake, sess)

    assert out["statusCode"] == 500, out
    assert out["stage"] == "swap"
    assert lake.read_catalog() == by_id(rows_of(90, start=300))
    assert len(day_versions(lake, DAY)) == 2
    assert lake.keys(f"{PATHOUT}/_leases/") == []  # the lease is released on failure too

    rerun = load(lake)
    assert rerun["statusCode"] == 200, rerun
    assert lake.read_catalog() == by_id(rows_of(90, start=300))
    assert_clean_day(lake, DAY, rerun["result"])


def test_first_load_creates_the_missing_table(lake: Lake) -> None:
    lake.put(KEY, csv_rows(20))
    with pytest.raises(lake.clients.glue.exceptions.EntityNotFoundException):
        lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)
    out = load(lake)
    assert out["statusCode"] == 200, out
    table = lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["id", "customer", "amount"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["data_ref"]
    assert lake.read_catalog() == by_id(rows_of(20))
    assert_clean_day(lake, DAY, out["result"])


def test_table_dropped_between_loads_is_recreated(lake: Lake) -> None:
    previous_day(lake)
    lake.clients.glue.delete_table(DatabaseName=DB, Name=TABLE)
    lake.put(KEY, csv_rows(70, start=100))
    out = load(lake)
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(70, start=100))
    assert_clean_day(lake, DAY, out["result"])


def test_missing_database_is_a_clear_error_and_touches_nothing(lake: Lake) -> None:
    lake.put(KEY, csv_rows(20))
    before = snapshot(lake)
    out = load(lake, database="nowhere")
    assert out["statusCode"] == 500
    assert out["stage"] == "catalog"
    assert "'nowhere' does not exist" in out["body"]
    assert snapshot(lake) == before


def legacy_day(lake: Lake) -> None:
    """The layout the old Lambda left: Parquet straight under the day folder, partition registered on
    the day folder itself."""
    import awswrangler as wr

    wr.catalog.create_parquet_table(
        database=DB,
        table=TABLE,
        path=f"s3://{DST}/{PATHOUT}/",
        columns_types={"id": "string", "customer": "string", "amount": "string"},
        partitions_types={"data_ref": "string"},
        boto3_session=lake.clients.session,
    )
    rows = rows_of(40, start=9000)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    lake.put(f"{PATHOUT}/data_ref={DAY}/legacy-0001.snappy.parquet", buf.getvalue(), bucket=DST)
    wr.catalog.add_parquet_partitions(
        database=DB,
        table=TABLE,
        partitions_values={f"s3://{DST}/{PATHOUT}/data_ref={DAY}/": [DAY]},
        boto3_session=lake.clients.session,
    )
    assert lake.read_catalog() == by_id(rows)


def test_partition_already_registered_by_the_old_layout(lake: Lake) -> None:
    legacy_day(lake)
    lake.put(KEY, csv_rows(60))
    out = load(lake)
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(60))
    assert lake.read_day_folder() == by_id(rows_of(60))  # the legacy file is gone
    assert_clean_day(lake, DAY, out["result"])


def test_partition_created_by_someone_else_just_before_the_flip(lake: Lake) -> None:
    """A crawler (or MSCK REPAIR) registers the day between the loader's look at the partitions and its
    create: Glue answers AlreadyExists inside BatchCreatePartition. The load must still leave the
    partition on its new version (or fail loudly), never report success with the catalog elsewhere."""
    lake.put(KEY, csv_rows(60))
    sess = session()
    other = boto3.Session(region_name="us-east-1").client("glue")
    fired = []

    def crawler(**_kw: Any) -> None:
        if fired:
            return
        fired.append(1)
        part = {
            "Values": [DAY],
            "StorageDescriptor": {
                "Location": f"s3://{DST}/{PATHOUT}/data_ref={DAY}/",
                "Columns": [{"Name": n, "Type": "string"} for n in ("id", "customer", "amount")],
            },
        }
        other.create_partition(DatabaseName=DB, TableName=TABLE, PartitionInput=part)  # type: ignore[typeddict-item]

    sess.events.register("before-call.glue.BatchCreatePartition", crawler)

    out = load(lake, sess)

    assert fired
    if out["statusCode"] == 200:
        assert lake.read_catalog() == by_id(rows_of(60))
        assert_clean_day(lake, DAY, out["result"])
    else:
        assert out["stage"] == "swap", out
        assert "already" in out["body"].lower()


@pytest.mark.parametrize("first", [False, True], ids=["replace", "first-load"])
def test_glue_throttling_is_retried(lake: Lake, first: bool) -> None:
    """ThrottlingException on the first call of every Glue operation, from the loader's own client and
    from awswrangler's (CreateTable, BatchCreatePartition on a first load)."""
    if not first:
        previous_day(lake)
    lake.put(KEY, csv_rows(90, start=300))
    sess = session()
    ops = (
        "GetDatabase",
        "GetTable",
        "GetPartitions",
        "GetPartition",
        "UpdatePartition",
        "UpdateTable",
        "CreateTable",
        "BatchCreatePartition",
    )
    flaky = Flaky(dict.fromkeys(ops, ("throttle",)), rate=0.0, service="glue", seed=3).install(sess)

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    must = {"GetDatabase", "GetTable", "GetPartitions"}
    must |= {"CreateTable", "BatchCreatePartition"} if first else {"UpdatePartition"}
    assert {op for op, _ in flaky.injected} >= must
    assert lake.read_catalog() == by_id(rows_of(90, start=300))
    assert_clean_day(lake, DAY, out["result"])


def test_every_client_of_a_load_uses_the_one_retry_policy(lake: Lake) -> None:
    """The loader's S3 and Glue clients and the ones awswrangler makes for the catalog (a first load:
    CreateTable, BatchCreatePartition) all retry the same way: botocore reports the mode in its
    User-Agent (``cfg/retry-mode#...``)."""
    lake.put(KEY, csv_rows(20))
    sess = session()
    rec = Recorder().install(sess)
    rec.install(sess, "glue")

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    assert {"CreateTable", "BatchCreatePartition", "PutObject", "GetObject"} <= rec.ops()
    modes = [(op, h.get("user-agent", "").split("cfg/retry-mode#")[-1].split(" ")[0]) for op, h in rec.calls]
    assert [(op, mode) for op, mode in modes if mode != "adaptive"] == []
    assert len(modes) > 10
