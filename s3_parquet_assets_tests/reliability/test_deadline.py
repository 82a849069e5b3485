"""A caller's deadline (a Lambda's remaining time): the load stops cleanly before it, and its lease never
outlives it.

A load stopped by its deadline aborts its multipart uploads, removes its folder and releases its
lease, and says where it stopped; the destination is exactly as before, and the next load runs at once
(no lease to wait out). A load killed anyway at its deadline leaves a lease that expires then.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.response import StreamingBody

from s3_parquet_assets.core import Tuning, handle_event, make_clients
from s3_parquet_assets.core.deadline import deadline_from_remaining_ms

from ..conftest import ROOT
from ..helpers import DAY, DST, PATHOUT, Lake, csv_rows, event
from .support import BIG_ROWS, TUNE, Recorder, assert_clean_day, by_id, noisy_csv, rows_of, session, snapshot

KEY = f"exports/{DAY}/sales.csv"
LEASE = f"{PATHOUT}/_leases/data_ref={DAY}.json"
MARGIN = 2.0
TIGHT = Tuning(
    part_size=TUNE.part_size,
    row_group_rows=TUNE.row_group_rows,
    block_size=TUNE.block_size,
    stop_margin_seconds=MARGIN,
)


def previous_day(lake: Lake) -> dict[str, Any]:
    lake.put(KEY, csv_rows(50))
    out = handle_event(event(), lake.clients, tuning=TUNE)
    assert out["statusCode"] == 200, out
    return out["result"]


def stall_until(moment: float) -> None:
    time.sleep(max(moment - time.monotonic(), 0))


class _StallingRaw:
    """A source body that serves ``after`` bytes, then stalls until ``until`` (a slow connection), then
    goes on."""

    def __init__(self, raw: Any, after: int, until: float) -> None:
        self._raw = raw
        self._left = after
        self._until = until

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            stall_until(self._until)
            return bytes(self._raw.read(amt))
        want = self._left if amt is None or amt < 0 else min(amt, self._left)
        data: bytes = self._raw.read(want)
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


def source_stalls(sess: Any, after: int, until: float, stalled: list[int]) -> None:
    def hook(http_response: Any, parsed: dict[str, Any], **_kw: Any) -> None:
        if not stalled and http_response.url.endswith(KEY) and http_response.status_code == 200:
            stalled.append(1)
            body = parsed["Body"]
            parsed["Body"] = StreamingBody(
                _StallingRaw(body._raw_stream, after, until), parsed["ContentLength"]
            )

    sess.events.register("after-call.s3.GetObject", hook)


def swap_stalls(sess: Any, until: float, stalled: list[int]) -> None:
    verified = threading.Event()

    def hook(**_kw: Any) -> None:
        if not stalled and verified.is_set():  # the look at the partitions just before the swap
            stalled.append(1)
            stall_until(until)

    sess.events.register("after-call.s3.HeadObject", lambda **_kw: verified.set())
    sess.events.register("before-call.glue.GetPartitions", hook)


@pytest.mark.parametrize(
    ("where", "stage", "step", "rows"),
    [
        # mid-stream: the source slows down after 6 MiB, with Parquet parts uploaded or in flight
        ("read", "read", "stopped while reading", BIG_ROWS),
        # written and verified, just before the swap
        ("swap", "swap", "stopped before the swap", 2_000),
    ],
)
def test_a_load_stopped_by_its_deadline_leaves_nothing_and_the_next_runs_at_once(
    lake: Lake, where: str, stage: str, step: str, rows: int
) -> None:
    previous_day(lake)
    lake.put(KEY, noisy_csv(rows))
    before = snapshot(lake)
    sess = session()
    deadline = time.monotonic() + MARGIN + 3.0
    stalled: list[int] = []
    until = deadline - MARGIN + 0.2  # the load is slow; its time runs out meanwhile
    if where == "read":
        source_stalls(sess, 6 * 1024 * 1024, until, stalled)
    else:
        swap_stalls(sess, until, stalled)

    out = handle_event(event(), make_clients(sess), tuning=TIGHT, deadline=deadline)

    assert stalled
    assert out["statusCode"] == 500, out
    assert out["stage"] == stage
    assert out["deadline"] is True
    assert f"Error: {stage}: {step}" in out["body"]
    assert "before the caller's deadline" in out["body"]
    assert time.monotonic() < deadline  # it stopped before the deadline, cleanup included
    assert lake.multipart_uploads() == []
    assert lake.keys(f"{PATHOUT}/_leases/") == []
    assert snapshot(lake) == before  # no new files, the same partition, the same table

    started = time.monotonic()
    again = handle_event(event(), lake.clients, tuning=TUNE)
    assert again["statusCode"] == 200, again  # no lease to wait out
    assert time.monotonic() - started < 30
    assert len(lake.read_catalog()) == rows
    assert_clean_day(lake, DAY, again["result"])


def test_too_little_time_left_stops_before_taking_the_lease(lake: Lake) -> None:
    previous_day(lake)
    before = snapshot(lake)
    sess = session()
    calls = Recorder().install(sess)

    out = handle_event(event(), make_clients(sess), tuning=TIGHT, deadline=deadline_from_remaining_ms(1500))

    assert out["stage"] == "lock"
    assert out["body"].startswith("Error: lock: stopped before taking the lease with ")
    assert "PutObject" not in calls.ops()  # no lease was ever written
    assert snapshot(lake) == before


def test_the_lease_never_outlives_the_deadline(lake: Lake) -> None:
    """With 60 s left and a 300 s lease, the lease (and each renewal) expires at the deadline: a load
    killed at its deadline leaves a lease that a retry a minute later does not meet."""
    lake.put(KEY, csv_rows(40))
    sess = session()
    seen: list[datetime] = []

    def look(**_kw: Any) -> None:
        if not seen:
            body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
            seen.append(datetime.fromisoformat(body["expires_at"]))

    sess.events.register("before-call.glue.GetPartitions", look)
    clients = make_clients(sess)
    deadline = deadline_from_remaining_ms(60_000)
    wall_deadline = datetime.now(UTC) + timedelta(seconds=60)
    out = handle_event(event(), clients, tuning=TUNE, deadline=deadline)

    assert out["statusCode"] == 200, out
    assert seen
    assert abs((seen[0] - wall_deadline).total_seconds()) < 0.5  # the deadline, not now + 300 s
    assert lake.read_catalog() == by_id(rows_of(40))
    assert_clean_day(lake, DAY, out["result"])


def test_a_load_killed_before_its_deadline_leaves_a_lease_that_ends_with_it(lake: Lake) -> None:
    """The Lambda case: killed (timeout, out of memory) with its 5-minute lease held. The lease ends
    at the invocation's deadline, so a retry soon after it is not refused for minutes."""
    previous_day(lake)
    lake.put(KEY, noisy_csv(BIG_ROWS))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "s3_parquet_assets_tests.reliability.killer",
            "read-bytes",
            str(3 * 1024 * 1024),
            json.dumps(event()),
            "12",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    killed_at = datetime.now(UTC)
    assert proc.returncode == -9, proc.stderr[-2000:]
    body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires - killed_at < timedelta(seconds=12)  # the deadline, not the 300 s lease
    refused = handle_event(event(), lake.clients, tuning=TUNE)
    assert refused["stage"] == "lock", refused  # the dead load's lease still holds the day ...

    time.sleep(max((expires - datetime.now(UTC)).total_seconds() + 0.3, 0))
    out = handle_event(event(), lake.clients, tuning=TUNE)  # ... until its deadline, not minutes later
    assert out["statusCode"] == 200, out
    assert len(lake.read_catalog()) == BIG_ROWS
    assert_clean_day(lake, DAY, out["result"])
