"""The local default: everything on a laptop, no AWS account.

``make demo`` (``s3-parquet-assets demo``): starts a moto server (S3 + Glue) on a free loopback port,
creates the buckets and the Glue database of the bundled tables file
(``s3_parquet_assets/defs/tables.yaml``: three tables of different shapes), stages a week of their
daily exports (with decoys), builds the Dagster definitions through the component exactly as ``dg``
loads them, and materializes each table's week as one run (what a backfill does with the assets'
backfill policy), checks included. It prints the per-table, per-day result, reads every table back
through the Glue catalog and prints what it found. The emulator is stopped on exit, Ctrl-C included.

``make dev`` (``python -m s3_parquet_assets.demo dev``): the same emulator and exports, then
``dg dev`` on http://127.0.0.1:3000 with a temporary DAGSTER_HOME: the UI shows the three tables,
their partitions, checks, schedules and sensors.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import demo_data

__all__ = ["Emulator", "main", "run_demo", "run_dev", "stage_exports"]

log = logging.getLogger("s3_parquet_assets.demo")

DEFS_FOLDER = Path(__file__).resolve().parent / "defs"
CHECK_NAMES = ("row_count", "schema_matches", "partition_registered")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Emulator:
    """A moto server (``python -m moto.server``) on a free loopback port."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, workdir: Path) -> Iterator[Emulator]:
        port = _free_port()
        log_path = workdir / "moto.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        emu = cls(proc, f"http://127.0.0.1:{port}", log_path)
        try:
            emu._wait()
            yield emu
        finally:
            emu.stop()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the moto server exited:\n{self.log_path.read_text(errors='replace')}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()  # noqa: S310 - loopback
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the moto server did not answer on {self.endpoint}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def env(self) -> dict[str, str]:
        """The AWS environment that points boto3 (and so the core and Dagster) at the emulator."""
        return {
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }


@contextlib.contextmanager
def _environ(values: Mapping[str, str], drop: tuple[str, ...] = ()) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*values, *drop)}
    for k in drop:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_AWS_DROP = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE")


def demo_days(days: int, now: datetime | None = None) -> list[str]:
    """The last ``days`` complete days (UTC), oldest first."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return [(today - timedelta(days=n)).strftime("%Y%m%d") for n in range(days, 0, -1)]


def _tables() -> Any:
    from .core import read_tables

    return read_tables(DEFS_FOLDER / "tables.yaml")


def stage_exports(s3: Any, glue: Any, days: list[str]) -> dict[str, dict[str, int]]:
    """Create the tables' buckets and databases and stage the three exports per day; returns
    table -> day -> rows of the day's export."""
    tables = _tables()
    events = [spec.probe for spec in tables]
    for bucket in sorted({e.bucket_src for e in events} | {e.bucket_dstn for e in events}):
        s3.create_bucket(Bucket=bucket)
    for database in sorted({e.database for e in events}):
        glue.create_database(DatabaseInput={"Name": database, "Description": "s3_parquet_assets demo"})
    (src,) = {e.bucket_src for e in events}

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=src, Key=key, Body=body)

    rows: dict[str, dict[str, int]] = {name: {} for name in tables.names}
    for i, day in enumerate(days):
        for name, day_rows in demo_data.stage_day(put, day, rows=20 + 7 * i).items():
            rows[name][day] = len(day_rows)
    return rows


def _on_sigterm() -> None:
    """SIGTERM stops the demo like Ctrl-C. SIGINT gets Python's handler even when this process was
    started with SIGINT ignored (a background job): children then start with the default action,
    and ``dg dev``, which maps SIGTERM to its SIGINT handler, can be stopped."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _quiet_dagster_warnings() -> None:
    """The demo prints a table: Dagster's beta/preview notices (code references, partitioned
    checks) would bury it."""
    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.simplefilter("ignore", BetaWarning)
    warnings.simplefilter("ignore", PreviewWarning)


def _definitions() -> Any:
    """The definitions as ``dg`` builds them: the defs folder's component on the bundled tables file."""
    from dagster import ComponentTree

    _quiet_dagster_warnings()
    return ComponentTree.for_project(DEFS_FOLDER).build_defs()


def _materialize(defs: Any, table_key: Any, days: list[str], instance: Any) -> Any:
    """One run for the table's whole range: what a backfill does (BackfillPolicy.multi_run)."""
    from dagster import materialize

    return materialize(
        [defs.resolve_assets_def(table_key)],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )


def _report(name: str, result: Any, expected: Mapping[str, int]) -> tuple[list[list[str]], bool]:
    mats: dict[tuple[str, str], dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        mats[(mat.asset_key.path[0], mat.partition)] = {k: v.value for k, v in mat.metadata.items()}
    checks: dict[str, dict[str, bool]] = {}
    for ev in result.get_asset_check_evaluations():
        checks.setdefault(ev.partition, {})[ev.check_name] = ev.passed
    rows: list[list[str]] = []
    ok = bool(result.success)
    for day in sorted(expected):
        src = mats.get(("s3_source", day), {})
        table = next((m for (first, d), m in mats.items() if d == day and first != "s3_source"), {})
        day_checks = checks.get(day, {})
        marks = " ".join(f"{c}:{'ok' if day_checks.get(c) else 'FAIL'}" for c in CHECK_NAMES)
        loaded = table.get("rows")
        ok = ok and loaded == expected[day] and all(day_checks.get(c) for c in CHECK_NAMES)
        rows.append(
            [
                name,
                day,
                str(src.get("key", "-")),
                str(loaded if loaded is not None else "-"),
                marks,
                str(table.get("partition_location", "-")),
            ]
        )
    return rows, ok


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def _read_back(endpoint: str, database: str, table: str) -> Any:
    """The table as a catalog reader sees it: the files at each registered Glue partition location,
    with the partition values as columns."""
    import boto3
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    glue = boto3.client("glue")
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[1],
        scheme="http",
        region=os.environ["AWS_REGION"],
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    keys = [k["Name"] for k in glue.get_table(DatabaseName=database, Name=table)["Table"]["PartitionKeys"]]
    parts = []
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        for part in page["Partitions"]:
            location = part["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
            t = ds.dataset(location, filesystem=fs, format="parquet").to_table()
            for key, value in zip(keys, part["Values"], strict=True):
                t = t.append_column(key, pa.array([value] * t.num_rows))
            parts.append(t)
    return pa.concat_tables(parts)


def _load_all(defs: Any, days: list[str], expected: Mapping[str, Mapping[str, int]]) -> bool:
    from dagster import AssetKey, DagsterInstance

    table_rows: list[list[str]] = []
    ok = True
    with DagsterInstance.ephemeral() as instance:
        for spec in _tables():
            ev = spec.probe
            result = _materialize(defs, AssetKey([ev.database, ev.table]), days, instance)
            rows, table_ok = _report(spec.name, result, expected[spec.name])
            table_rows += rows
            ok = ok and table_ok
            if not result.success:
                for event in result.all_events:
                    if event.event_type_value == "STEP_FAILURE":
                        print(
                            f"\nFAILED ({spec.name}): {event.step_failure_data.error.message}",
                            file=sys.stderr,
                        )
    _print_table(["table", "day", "source key", "rows", "checks", "parquet location"], table_rows)
    return ok


def _print_read_back(endpoint: str, expected: Mapping[str, Mapping[str, int]]) -> bool:
    print("\nRead back through the Glue catalog:\n")
    rows: list[list[str]] = []
    ok = True
    for spec in _tables():
        ev = spec.probe
        data = _read_back(endpoint, ev.database, ev.table)
        days = sorted(set(data.column("data_ref").to_pylist()))
        want = sum(expected[spec.name].values())
        ok = ok and data.num_rows == want and days == sorted(expected[spec.name])
        columns = ", ".join(data.schema.names)
        rows.append([f"{ev.database}.{ev.table}", str(data.num_rows), f"{len(days)} days", columns])
    _print_table(["glue table", "rows", "days", "columns"], rows)
    return ok


def run_demo(days: int = 7) -> int:
    """The one-command demo (see the module docstring). Returns the process exit code."""
    import boto3

    if days < 1:
        print("--days must be >= 1", file=sys.stderr)
        return 2
    _on_sigterm()
    for name in ("s3_parquet_assets", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="s3pa-demo-"))
    try:
        # the bundled tables file: S3PA_TABLES (another file) is not the demo's
        with Emulator.running(workdir) as emu, _environ(emu.env(), drop=(*_AWS_DROP, "S3PA_TABLES")):
            print(f"moto server (S3 + Glue) on {emu.endpoint}")
            day_list = demo_days(days)
            session = boto3.Session()
            expected = stage_exports(session.client("s3"), session.client("glue"), day_list)
            print(
                f"staged {len(day_list)} days {day_list[0]}..{day_list[-1]} of exports for "
                f"{', '.join(expected)} (tables file {DEFS_FOLDER / 'tables.yaml'})"
            )
            print("loading each table's days as one run through the component's assets ...\n")
            ok = _load_all(_definitions(), day_list, expected)
            ok = _print_read_back(emu.endpoint, expected) and ok
            print(f"\n{'OK' if ok else 'FAILED'}: the emulator is stopped on exit.")
            return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted; emulator stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _project_root() -> Path:
    """The folder whose pyproject.toml has ``[tool.dg]`` (``dg dev`` runs there)."""
    for folder in DEFS_FOLDER.parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.dg]" in pyproject.read_text(encoding="utf-8"):
            return folder
    raise RuntimeError(f"no pyproject.toml with [tool.dg] above {DEFS_FOLDER}: run make dev from a checkout")


def run_dev(port: int = 3000, days: int = 7) -> int:
    """The emulator with the sample exports, then ``dg dev`` on 127.0.0.1:``port``."""
    import boto3

    _on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="s3pa-dev-"))
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    try:
        with Emulator.running(workdir) as emu, _environ(emu.env(), drop=_AWS_DROP):
            day_list = demo_days(days)
            session = boto3.Session()
            stage_exports(session.client("s3"), session.client("glue"), day_list)
            env = {k: v for k, v in os.environ.items() if k not in _AWS_DROP and k != "S3PA_TABLES"}
            env.update(emu.env())
            env["DAGSTER_HOME"] = str(home)
            env["VIRTUAL_ENV"] = sys.prefix
            print(f"moto server on {emu.endpoint}; exports for {day_list[0]}..{day_list[-1]} staged")
            print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it and the emulator)")
            dg = str(Path(sys.executable).parent / "dg")
            # its own process group, so that stopping it reaches the webserver, daemon and code server
            proc = subprocess.Popen(
                [dg, "dev", "--host", "127.0.0.1", "--port", str(port)],
                cwd=_project_root(),
                env=env,
                start_new_session=True,
            )
            try:
                return proc.wait()
            finally:
                _stop_group(proc)
    except KeyboardInterrupt:
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group ``proc`` leads (dagster dev shuts its children down), then
    SIGKILL to whatever of the group is left."""
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(1)  # let the children finish their own shutdown
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m s3_parquet_assets.demo", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the one-command demo")
    demo.add_argument("--days", type=int, default=7)
    dev = sub.add_parser("dev", help="emulator + sample data + dg dev")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--days", type=int, default=7)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.days)
    return run_dev(args.port, args.days)


if __name__ == "__main__":
    sys.exit(main())
