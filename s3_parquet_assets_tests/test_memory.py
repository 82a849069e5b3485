"""Peak memory stays bounded by the block sizes, not the export size (catches a regression to reading
the whole object or the whole table). Measured in a subprocess of its own, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import ROOT
from .helpers import Lake, event, noisy_rows

# Small blocks, row groups and parts, so a streaming load of 64 MiB holds a few MiB at a time while
# any whole-object or whole-table read would hold well over 100 MiB more than a 1 MiB load.
# One encoder: with two (one malloc arena) this load grew +60 to +80 MiB on 2026-12-02, overlapping
# the whole-object read's +81 to +90, so the probe would no longer tell the two apart.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the pytest parent.
PROBE = """
import json, sys
from s3_parquet_assets.core import Tuning, handle_event
tuning = Tuning(block_size=1 << 20, row_group_bytes=8 << 20, part_size=5 << 20, max_in_flight=2, encoders=1)
out = handle_event(json.loads(sys.argv[1]), tuning=tuning)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"status": out["statusCode"], "rows": out.get("result", {}).get("rows"),
                  "body": out["body"], "maxrss_kb": hwm}))
"""


def _peak(ev: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ev)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_peak_rss_is_flat_in_the_export_size(lake: Lake) -> None:
    small = noisy_rows(20_000)  # ~1 MiB
    lake.put("exports/20240115/sales.csv", small)
    lake.put("exports/20240116/sales.csv", noisy_rows(1_300_000))  # ~64 MiB
    base = _peak(event(data_ref="20240115"))
    big = _peak(event(data_ref="20240116"))
    assert base["status"] == 200, base
    assert big["status"] == 200, big
    assert big["rows"] == 1_300_000
    grown_mb = (big["maxrss_kb"] - base["maxrss_kb"]) / 1024
    print(f"base {base['maxrss_kb'] >> 10} MiB, 64 MiB export {big['maxrss_kb'] >> 10} MiB")
    # streaming, one encoder: a few blocks, one row group and two parts in flight (+14 to +35 MiB in an
    # earlier session; on 2026-12-02 +36 to +45 MiB before the issue-14 core merge and +42 to +67 MiB
    # after it, cause not found: see benchmarks/README.md). A whole-object read holds the export's
    # 64 MiB on top (measured with the source read into a BytesIO first: +81 to +90 MiB, which the
    # earlier bound of 96 let through), so the bound stays below that.
    assert grown_mb < 72, f"peak RSS grew by {grown_mb:.0f} MiB from a 1 MiB to a 64 MiB export"
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
