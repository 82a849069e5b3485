"""Peak memory stays bounded by the block sizes, not the export size (catches a regression to reading
the whole object or the whole table). Measured in a subprocess of its own, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from s3_parquet_assets.core import handle_event

from .conftest import ROOT
from .helpers import SRC, Lake, event, noisy_rows

# Small blocks, row groups and parts, so a streaming load of 64 MiB holds a few MiB at a time while
# any whole-object or whole-table read holds the export's 64 MiB on top. With ``hold``, the probe first
# reads the whole export and keeps it, as a loader that read whole objects would: the control that
# shows the bound tells the two apart.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the pytest parent.
PROBE = """
import json, sys
import boto3
from s3_parquet_assets.core import Tuning, handle_event
ev, encoders, hold = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = []
if hold:
    bucket, key = hold.split("/", 1)
    held.append(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
tuning = Tuning(block_size=1 << 20, row_group_bytes=8 << 20, part_size=5 << 20, max_in_flight=2,
                encoders=encoders)
out = handle_event(ev, tuning=tuning)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"status": out["statusCode"], "rows": out.get("result", {}).get("rows"),
                  "body": out["body"], "maxrss_kb": hwm}))
"""


def _peak(ev: dict, encoders: int, hold: str = "") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ev), str(encoders), hold],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The bound on the growth from a 1 MiB to a 64 MiB export, per encoder count. Measured 2026-12-03,
# eight runs of this test: streaming grew +64 to +71 MiB with one encoder and +64 to +89 with two (each
# encoder holds its own row group's pages, part buffer and writer state); holding the whole export
# grew +119 to +132 and +133 to +149 MiB. Each bound lies between the two.
BOUNDS_MB = {1: 92, 2: 110}


@pytest.mark.parametrize("encoders", sorted(BOUNDS_MB))
def test_peak_rss_is_flat_in_the_export_size(lake: Lake, encoders: int) -> None:
    small = noisy_rows(20_000)  # ~1 MiB
    lake.put("exports/20240115/sales.csv", small)
    lake.put("exports/20240116/sales.csv", noisy_rows(1_300_000))  # ~64 MiB
    # the table's first load registers it (awswrangler and pandas imported after the stream, ~+30
    # MiB): load once here so every measured load finds the table and differs only in the export
    assert handle_event(event(data_ref="20240115"))["statusCode"] == 200
    base = _peak(event(data_ref="20240115"), encoders)
    big = _peak(event(data_ref="20240116"), encoders)
    whole = _peak(event(data_ref="20240116"), encoders, hold=f"{SRC}/exports/20240116/sales.csv")
    for out in (base, big, whole):
        assert out["status"] == 200, out
    assert big["rows"] == 1_300_000
    grown_mb = (big["maxrss_kb"] - base["maxrss_kb"]) / 1024
    whole_mb = (whole["maxrss_kb"] - base["maxrss_kb"]) / 1024
    print(
        f"{encoders} encoder(s): base {base['maxrss_kb'] >> 10} MiB, 64 MiB export +{grown_mb:.0f}, whole +{whole_mb:.0f}"
    )
    bound = BOUNDS_MB[encoders]
    assert grown_mb < bound, f"peak RSS grew by {grown_mb:.0f} MiB from a 1 MiB to a 64 MiB export"
    assert whole_mb > bound, (
        f"a whole-object read grew the peak by only {whole_mb:.0f} MiB: the probe misses it"
    )
    assert big["maxrss_kb"] / 1024 < 400, big


POOL_PROBE = """
import pyarrow as pa
from s3_parquet_assets.core.memory import configure_memory
configure_memory()
configure_memory()  # once per process: a second call changes nothing
print(pa.default_memory_pool().backend_name)
"""


def _pool_after_configure(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    proc = subprocess.run(
        [sys.executable, "-c", POOL_PROBE],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.strip()


def test_arrow_buffers_come_from_mimalloc_unless_the_operator_chose_a_pool() -> None:
    # mimalloc reuses freed pages (no page fault per reuse); trim() returns them after each row group
    assert _pool_after_configure() == "mimalloc"
    assert _pool_after_configure(ARROW_DEFAULT_MEMORY_POOL="system") == "system"
    assert _pool_after_configure(ARROW_DEFAULT_MEMORY_POOL="jemalloc") == "jemalloc"


TRIM_PROBE = """
import pyarrow as pa, pyarrow.compute as pc
from s3_parquet_assets.core.memory import configure_memory, trim
configure_memory()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
base = rss()
ones = pa.array([1] * 131072, pa.int64())
arrays = [pc.add(ones, i) for i in range(300)]  # 300 MiB of Arrow buffers, all touched
held = rss()
del arrays
trim()
print(base, held, rss())
"""


def test_trim_gives_freed_arrow_memory_back() -> None:
    # the pool keeps freed pages for reuse; after a row group, trim() hands them back to the OS
    proc = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    base, held, after = (int(x) for x in proc.stdout.split())
    assert held - base >= 250, proc.stdout
    assert after - base < 60, proc.stdout
