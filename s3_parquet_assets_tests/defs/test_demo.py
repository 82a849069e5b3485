"""``make demo`` end to end (its own emulator, in a subprocess), shortened to two days."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from s3_parquet_assets.demo_data import NAMES, source_keys


def test_demo_loads_the_three_tables_and_reads_them_back(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3PA_", "DAGSTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "s3_parquet_assets.demo", "demo", "--days", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).strftime("%Y%m%d") for n in (2, 1)]
    ok = "row_count:ok schema_matches:ok partition_registered:ok"
    for name in NAMES:
        for i, day in enumerate(days):
            (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{name} ") and f" {day} " in ln]
            assert source_keys(day)[name] in line and "_partial" not in line
            assert f" {20 + 7 * i} " in line and ok in line
            assert f"s3://s3pa-demo-lake/lake/{name}/data_ref={day}/load-" in line
    back = out.split("Read back through the Glue catalog:", 1)[1]
    for name in NAMES:
        (line,) = [ln for ln in back.splitlines() if ln.startswith(f"demo_analytics.{name} ")]
        assert line.split()[1:4] == ["47", "2", "days"], line  # 20 + 27 rows over the two days
    assert out.rstrip().endswith("OK: the emulator is stopped on exit.")
