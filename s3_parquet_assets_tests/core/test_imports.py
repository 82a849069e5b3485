"""The core is plain Python: importing all of it (and the CLI) never imports dagster."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import s3_parquet_assets.core as core

from ..conftest import ROOT


def test_core_imports_no_dagster() -> None:
    modules = [f"s3_parquet_assets.core.{m.name}" for m in pkgutil.iter_modules(core.__path__)]
    assert "s3_parquet_assets.core.pipeline" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {[*modules, 's3_parquet_assets.cli']!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"


def test_no_environment_reads_at_import() -> None:
    # importing with an empty environment must work: settings are read when a load runs
    code = "import s3_parquet_assets.core, s3_parquet_assets.cli; print('ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_core_imports_no_pandas() -> None:
    # pandas (~40 MB of the streaming peak) comes in only with a transform or awswrangler, after the stream
    code = (
        "import sys, s3_parquet_assets.core, s3_parquet_assets.cli\n"
        "print(sorted(m for m in sys.modules if m == 'pandas' or m == 'awswrangler'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
