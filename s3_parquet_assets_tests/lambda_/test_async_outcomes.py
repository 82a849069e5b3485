"""The packaged handler's asynchronous outcomes: work already done or under way is a success, and a
load stopped by the invocation's remaining time leaves nothing behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ..helpers import DAY, DST, PATHOUT, SRC, Lake, csv_rows
from .packaged import PackagedLambda
from .test_packaged import s3_record

KEY = f"exports/{DAY}/sales_1.csv"
LEASE = f"{PATHOUT}/_leases/data_ref={DAY}.json"


def notification(key: str = KEY) -> dict[str, object]:
    return {"Records": [s3_record(key)]}


def test_an_s3_event_for_a_day_already_loaded_from_that_export_is_a_success(
    packaged: PackagedLambda, lake: Lake
) -> None:
    lake.put(KEY, csv_rows(40))
    first, again = packaged.run([notification(), notification()]).invocations
    assert first.payload["statusCode"] == 200 and first.payload["body"] == "Success", first.payload
    etag = first.payload["result"]["etag"]
    assert again.function_error is None
    assert again.payload == {
        "statusCode": 200,
        "body": f"Already loaded: day {DAY} was loaded from s3://{SRC}/{KEY} (ETag {etag})",
    }
    # Nothing was loaded a second time: the partition still points at the first load's folder.
    assert lake.partition()["StorageDescriptor"]["Location"] == first.payload["result"]["partition_location"]


def _hold_lease(lake: Lake, etag: str | None) -> dict[str, object]:
    now = datetime.now(UTC)
    body: dict[str, object] = {
        "load_id": "20240116T000000Z-holder",
        "host": "another-container",
        "pid": 7,
        "acquired_at": now.isoformat(),
        "expires_at": (now + timedelta(minutes=5)).isoformat(),
    }
    if etag is not None:
        body |= {"source_uri": f"s3://{SRC}/{KEY}", "source_etag": etag}
    lake.put(LEASE, json.dumps(body).encode(), bucket=DST)
    return body


def test_an_s3_event_meeting_a_load_of_the_same_export_is_a_success(
    packaged: PackagedLambda, lake: Lake
) -> None:
    lake.put(KEY, csv_rows(40))
    etag = lake.clients.s3.head_object(Bucket=SRC, Key=KEY)["ETag"].strip('"')
    holder = _hold_lease(lake, etag)
    inv = packaged.invoke_one(notification())
    assert inv.function_error is None, inv.payload
    assert inv.payload["statusCode"] == 200
    assert inv.payload["body"] == (
        f"Already being loaded: load {holder['load_id']} holds the day and reads the same export (ETag {etag})"
    )
    assert lake.day_keys() == []  # this invocation wrote nothing


def test_an_s3_event_meeting_a_load_of_another_export_still_fails_for_a_retry(
    packaged: PackagedLambda, lake: Lake
) -> None:
    lake.put(KEY, csv_rows(40))
    _hold_lease(lake, "0123456789abcdef0123456789abcdef")
    inv = packaged.invoke_one(notification())
    assert inv.function_error == "Unhandled"
    assert inv.payload["errorType"] == "LoadFailedError"
    assert inv.payload["errorMessage"].startswith("Error: lock: day is being loaded by load ")


def test_a_load_out_of_time_stops_cleanly_and_the_next_invocation_loads_at_once(
    packaged: PackagedLambda, lake: Lake
) -> None:
    lake.put(KEY, csv_rows(40))
    # 5 s left: less than the margin a load keeps to stop cleanly, so it stops before taking the lease.
    stopped, retried = packaged.run(
        [notification(), notification()], timeouts_ms=[5_000, 900_000]
    ).invocations
    assert stopped.function_error == "Unhandled", stopped.payload
    assert "before the caller's deadline" in stopped.payload["errorMessage"]
    assert retried.function_error is None, retried.payload
    assert retried.payload["statusCode"] == 200 and retried.payload["body"] == "Success"
    assert retried.payload["result"]["rows"] == 40
    assert lake.keys(f"{PATHOUT}/_leases/") == []
    assert lake.multipart_uploads() == []


def test_a_direct_event_gets_the_invocations_deadline_too(packaged: PackagedLambda, lake: Lake) -> None:
    from ..helpers import event

    lake.put(KEY, csv_rows(10))
    inv = packaged.run([event()], timeouts_ms=[3_000]).invocations[0]
    assert inv.payload["statusCode"] == 500
    assert inv.payload["deadline"] is True
    assert lake.keys() == []
