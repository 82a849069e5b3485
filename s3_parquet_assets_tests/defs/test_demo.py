"""``make demo`` end to end (its own emulator, in a subprocess), shortened to two days."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_the_loaded_days_and_the_read_back(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3PA_", "DAGSTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "s3_parquet_assets.demo", "demo", "--days", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = [line for line in out.splitlines() if "daily_sales_" in line and "row_count:ok" in line]
    assert len(lines) == 2, out
    for line in lines:
        assert "_partial" not in line  # the older partial export never wins
        assert "schema_matches:ok partition_registered:ok" in line
        assert "s3://s3pa-demo-lake/warehouse/daily_sales/data_ref=" in line
    assert "Read back through the Glue catalog:" in out and "2 days" in out
    assert "Revenue by store over the week" in out
    assert out.rstrip().endswith("OK: the emulator is stopped on exit.")
