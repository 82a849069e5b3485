"""The console script, run as a real subprocess against the moto server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT
from .helpers import Lake, csv_rows, event


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("s3-parquet-assets", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "s3_parquet_assets.cli"]
    return subprocess.run(
        [*cmd, *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_load_success_prints_response_and_logs_progress(lake: Lake) -> None:
    lake.put("exports/20240115/sales.csv", csv_rows(42))
    proc = _cli("load", "--event", json.dumps(event()))
    assert proc.returncode == 0, proc.stderr
    response = json.loads(proc.stdout)
    assert response["statusCode"] == 200
    assert response["body"] == "Success"
    assert response["result"]["rows"] == 42
    assert "listed 1 object(s)" in proc.stderr
    assert "wrote 42 rows" in proc.stderr
    assert len(lake.read_catalog()) == 42


def test_load_from_file_and_failure_exit_code(lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event(substr="nothing-like-this")))
    proc = _cli("load", "--event", f"@{path}")
    assert proc.returncode == 1
    response = json.loads(proc.stdout)
    assert response["statusCode"] == 500
    assert response["body"].startswith("Error: list: no object under s3://src-bucket/exports/20240115/")


def test_invalid_json_and_invalid_event(aws: str) -> None:
    proc = _cli("load", "--event", "{not json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["body"].startswith("Error: validate: cannot read the event")
    proc = _cli("load", "--event", json.dumps(event(table="../x")))
    assert proc.returncode == 1
    assert "field 'table'" in json.loads(proc.stdout)["body"]
