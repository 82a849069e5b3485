"""SIGKILL of a loader subprocess at every step of a load: listing, mid-read, mid-upload, before
completion, verification, between write and swap, the flip itself, cleanup and lease release.

After each kill the catalog serves a complete day (the previous one, or the new one once the flip
happened), a load started right away is refused by the dead load's lease (naming it) instead of
interleaving with its leftovers, and once that lease expires a rerun ends with exactly the new rows
and nothing left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from ..conftest import ROOT
from ..helpers import DAY, DST, PATHOUT, Lake, csv_rows, event
from .support import BIG_ROWS, TALLY, assert_clean_day, by_id, day_versions, load, noisy_csv, rows_of

KEY = f"exports/{DAY}/sales.csv"
LEASE = f"{PATHOUT}/_leases/data_ref={DAY}.json"


def run_killed(point: str, nth: int, ev: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3_parquet_assets_tests.reliability.killer", point, str(nth), json.dumps(ev)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def big_rows() -> list[dict[str, str]]:
    lines = noisy_csv(BIG_ROWS).decode().splitlines()
    return by_id([dict(zip(("id", "customer", "amount"), ln.split(","), strict=True)) for ln in lines])


# (point, nth, big source?, what the catalog serves right after the kill)
POINTS = [
    ("before-call.s3.ListObjectsV2", 1, False, "old"),  # listing
    ("read-bytes", 2 * 1024 * 1024, True, "old"),  # mid-read of the source body
    ("before-call.s3.UploadPart", 2, True, "old"),  # mid-upload, a multipart upload open
    ("before-call.s3.CompleteMultipartUpload", 1, True, "old"),  # all parts up, not completed
    ("before-call.s3.HeadObject", 1, False, "old"),  # written, verifying
    # between write and swap: the catalog's look at the day once the new files are verified
    ("before-call.glue.GetPartitions@after=after-call.s3.HeadObject", 1, False, "old"),
    ("before-call.glue.UpdatePartition", 1, False, "old"),  # the flip itself, not sent
    ("after-call.glue.UpdatePartition", 1, False, "new"),  # flipped, old version still on S3
    ("before-call.s3.DeleteObjects", 1, False, "new"),  # mid-cleanup
    ("before-call.s3.ListMultipartUploads", 1, False, "new"),  # cleanup, old files gone
    ("before-call.s3.DeleteObject", 1, False, "new"),  # done, releasing the lease
]


def wait_for_lease_expiry(lake: Lake) -> None:
    body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
    expires = datetime.fromisoformat(body["expires_at"])
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)


@pytest.mark.parametrize(("point", "nth", "big", "serves"), POINTS, ids=[f"{p[0]}#{p[1]}" for p in POINTS])
def test_kill_then_rerun(lake: Lake, point: str, nth: int, big: bool, serves: str) -> None:
    lake.put(KEY, csv_rows(50))
    first = load(lake)
    assert first["statusCode"] == 200, first
    old_rows = lake.read_catalog()
    assert old_rows == by_id(rows_of(50))

    new_body = noisy_csv(BIG_ROWS) if big else csv_rows(120, start=500)
    new_rows = big_rows() if big else by_id(rows_of(120, start=500))
    lake.put(KEY, new_body)

    proc = run_killed(point, nth, event())
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    TALLY["SIGKILL survived"] += 1

    # 1. the catalog serves one complete version of the day, whatever the dead load left behind
    assert lake.read_catalog() == (old_rows if serves == "old" else new_rows)
    if point.endswith(("UploadPart", "CompleteMultipartUpload")):
        assert lake.multipart_uploads() != []  # killed with an upload open
    if point in ("after-call.glue.UpdatePartition", "before-call.s3.DeleteObjects"):
        assert len(day_versions(lake, DAY)) == 2  # flipped, the old version not yet removed

    # 2. the dead load still holds the day: a load started now fails fast, naming it
    dead = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())["load_id"]
    refused = load(lake)
    assert refused["statusCode"] == 500
    assert refused["stage"] == "lock"
    assert dead in refused["body"]
    assert lake.read_catalog() == (old_rows if serves == "old" else new_rows)

    # 3. once the lease expires, a rerun takes over and ends exactly right, with no leftovers
    wait_for_lease_expiry(lake)
    rerun = load(lake)
    assert rerun["statusCode"] == 200, rerun
    assert rerun["result"]["rows"] == len(new_rows)
    assert lake.read_catalog() == new_rows
    assert lake.read_day_folder() == new_rows
    assert_clean_day(lake, DAY, rerun["result"])


def test_kill_before_the_first_partition_exists(lake: Lake) -> None:
    """First load of a day killed just before its partition is created: nothing is registered, and the
    rerun registers exactly the new rows and removes the dead load's folder."""
    lake.put(KEY, csv_rows(30))
    proc = run_killed("before-call.glue.BatchCreatePartition", 1, event())
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    TALLY["SIGKILL survived"] += 1
    assert lake.partition() is None
    assert lake.day_keys() != []  # the dead load's complete but unregistered folder

    wait_for_lease_expiry(lake)
    rerun = load(lake)
    assert rerun["statusCode"] == 200, rerun
    assert lake.read_catalog() == by_id(rows_of(30))
    assert_clean_day(lake, DAY, rerun["result"])
