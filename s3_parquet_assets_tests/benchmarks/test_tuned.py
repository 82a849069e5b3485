"""benchmarks/tuned.py, the loader with Tuning knobs changed (what benchmarks/sweep.py runs): run as a
real subprocess against the moto server, it loads the day with the knobs given, and a knob Tuning
does not have (or a value of the wrong kind) is refused before any AWS call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from s3_parquet_assets_tests.helpers import DAY, DST, Lake, event

ROOT = Path(__file__).resolve().parents[2]
TUNED = ROOT / "benchmarks" / "tuned.py"


def _tuned(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TUNED), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )


def test_loads_the_day_with_the_knobs_given(lake: Lake) -> None:
    rows = b"".join(b"%d,C%d,%d.5\n" % (i, i % 7, i) for i in range(50_000))  # ~0.9 MB
    lake.put(f"exports/{DAY}/sales.csv", rows)
    knobs = ("encoders=1", "block_size=65536", "row_group_rows=1000", "ranges_in_flight=1")
    done = _tuned(*knobs, "load", "--event", json.dumps(event()))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["body"] == "Success"
    got = lake.read_catalog()
    assert len(got) == 50_000
    assert sorted(int(r["id"]) for r in got) == list(range(50_000))
    (key,) = lake.day_keys()  # encoders=1: one file (the defaults give one per core)
    with lake.fs().open_input_file(f"{DST}/{key}") as f:
        groups = pq.ParquetFile(f).metadata.num_row_groups
    # 64 KiB blocks of ~3,600 rows, each over row_group_rows: a row group per block (the defaults
    # would write these 0.9 MB as one row group)
    assert groups >= 10


def test_refuses_an_unknown_knob_before_any_aws_call(lake: Lake) -> None:
    lake.put(f"exports/{DAY}/sales.csv", b"1,C1,2.5\n")
    done = _tuned("range_bytes=4", "load", "--event", json.dumps(event()))
    assert done.returncode != 0
    assert "'range_bytes=4' is not KNOB=VALUE with a Tuning knob" in done.stderr
    assert lake.day_keys() == []


def test_refuses_a_value_of_the_wrong_kind(lake: Lake) -> None:
    done = _tuned("ranges_in_flight=2.5", "load", "--event", json.dumps(event()))
    assert done.returncode != 0
    assert "ranges_in_flight takes a int, not '2.5'" in done.stderr
    assert lake.day_keys() == []
