"""The local default: everything on a laptop, no AWS account.

``make demo`` (``s3-parquet-assets demo``): starts a moto server (S3 + Glue) on a free loopback port,
creates the buckets and the Glue database, stages a week of realistic daily exports (with decoys and
an older partial export per day), materializes the seven partitions as one backfill run through
Dagster (checks included), prints what was loaded, reads the table back through the catalog and
prints an aggregate. The emulator is stopped on exit, Ctrl-C included.

``make dev`` (``python -m s3_parquet_assets.demo dev``): the same emulator and exports, then
``dagster dev`` on http://127.0.0.1:3000 with a temporary DAGSTER_HOME.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import random
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

__all__ = ["DEMO_EVENT", "Emulator", "main", "run_demo", "run_dev", "stage_exports"]

log = logging.getLogger("s3_parquet_assets.demo")

DEFS_MODULE = "s3_parquet_assets.defs.definitions"

DEMO_EVENT: dict[str, Any] = {
    "bucket_src": "s3pa-demo-exports",
    "bucket_dstn": "s3pa-demo-lake",
    "prefix": "exports/{data_ref}/",
    "substr": "daily_sales",
    "schema": [
        {"name": "order_id", "type": "bigint"},
        {"name": "sold_at", "type": "timestamp"},
        {"name": "store", "type": "string"},
        {"name": "sku", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "unit_price", "type": "decimal(10,2)"},
    ],
    "pathoutput": "warehouse/daily_sales",
    "table": "daily_sales",
    "database": "demo_analytics",
    "partitions_cols": ["data_ref"],
    "header": True,
}

STORES = ["lisbon-01", "lisbon-02", "porto-01", "braga-01", "faro-01", "coimbra-01"]
SKUS = [f"SKU-{n:05d}" for n in range(1, 240)]


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


def _export(day: str, rows: int, seed: int) -> bytes:
    rnd = random.Random(seed)  # noqa: S311 - sample data
    start = datetime.strptime(day, "%Y%m%d")
    lines = ["order_id,sold_at,store,sku,quantity,unit_price"]
    base = int(day) * 10_000
    for i in range(rows):
        sold = start + timedelta(seconds=rnd.randrange(8 * 3600, 22 * 3600))
        price = rnd.choice([1.99, 4.5, 9.99, 12.0, 24.9, 49.0, 129.99])
        lines.append(
            f"{base + i},{sold:%Y-%m-%d %H:%M:%S},{rnd.choice(STORES)},{rnd.choice(SKUS)},"
            f"{rnd.choices([1, 2, 3, 6], weights=[70, 18, 8, 4])[0]},{price:.2f}"
        )
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def stage_exports(
    s3: Any, glue: Any, days: list[str], event: Mapping[str, Any] = DEMO_EVENT
) -> dict[str, int]:
    """Create the buckets and database and stage the exports; returns day -> rows of the final export.

    Per day: ``returns_*`` and ``_SUCCESS`` decoys (no substring match), an older partial export,
    and one second later the final export (newest, so it is the one picked).
    """
    for bucket in (event["bucket_src"], event["bucket_dstn"]):
        s3.create_bucket(Bucket=bucket)
    glue.create_database(DatabaseInput={"Name": event["database"], "Description": "s3_parquet_assets demo"})
    src = event["bucket_src"]
    rows: dict[str, int] = {}
    for day in days:
        prefix = event["prefix"].replace("{data_ref}", day)
        s3.put_object(Bucket=src, Key=f"{prefix}returns_{day}.csv.gz", Body=_export(day, 40, seed=-int(day)))
        s3.put_object(Bucket=src, Key=f"{prefix}_SUCCESS", Body=b"")
        s3.put_object(Bucket=src, Key=f"{prefix}daily_sales_{day}_partial.csv.gz", Body=_export(day, 25, 1))
    time.sleep(1.1)  # S3 keeps whole seconds: the final exports are strictly newer than the partials
    for day in days:
        prefix = event["prefix"].replace("{data_ref}", day)
        n = random.Random(int(day)).randrange(700, 1500)  # noqa: S311 - sample data
        s3.put_object(Bucket=src, Key=f"{prefix}daily_sales_{day}.csv.gz", Body=_export(day, n, int(day)))
        rows[day] = n
    return rows


def _settings_env(event: Mapping[str, Any], start_date: str) -> dict[str, str]:
    """The S3PA_* environment ``definitions.py`` reads (the same settings as the demo run)."""
    options = {
        k: v
        for k, v in event.items()
        if k
        not in ("bucket_src", "bucket_dstn", "prefix", "substr", "schema", "pathoutput", "table", "database")
    }
    return {
        "S3PA_BUCKET_SRC": event["bucket_src"],
        "S3PA_BUCKET_DSTN": event["bucket_dstn"],
        "S3PA_PREFIX": event["prefix"],
        "S3PA_SUBSTR": event["substr"],
        "S3PA_SCHEMA": json.dumps(event["schema"]),
        "S3PA_PATHOUTPUT": event["pathoutput"],
        "S3PA_TABLE": event["table"],
        "S3PA_DATABASE": event["database"],
        "S3PA_OPTIONS": json.dumps(options),
        "S3PA_START_DATE": start_date,
    }


def _on_sigterm() -> None:
    """SIGTERM stops the demo like Ctrl-C. SIGINT gets Python's handler even when this process was
    started with SIGINT ignored (a background job): children then start with the default action,
    and ``dagster dev``, which maps SIGTERM to its SIGINT handler, can be stopped."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _materialize(days: list[str]) -> Any:
    from dagster import DagsterInstance, materialize
    from dagster_aws.s3 import S3Resource

    from .defs.assets import build_load_assets
    from .defs.partitions import daily_partitions
    from .defs.resources import LoadSettings

    assets = build_load_assets(daily_partitions(days[0]), days_per_run=len(days))
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            [assets],
            instance=instance,
            resources={
                "s3": S3Resource(region_name=os.environ["AWS_REGION"]),
                "load_settings": LoadSettings.from_event(DEMO_EVENT),
            },
            # one run for the whole range: what a backfill with BackfillPolicy.multi_run does
            tags={
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[-1],
            },
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )


def _report(result: Any, expected: Mapping[str, int]) -> tuple[list[list[str]], bool]:
    from .defs.assets import SOURCE, TABLE
    from .defs.checks import CHECK_NAMES

    mats: dict[tuple[str, str], dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        mats[(mat.asset_key.to_user_string(), mat.partition)] = {k: v.value for k, v in mat.metadata.items()}
    checks: dict[str, dict[str, bool]] = {}
    for ev in result.get_asset_check_evaluations():
        checks.setdefault(ev.partition, {})[ev.check_name] = ev.passed
    rows: list[list[str]] = []
    ok = bool(result.success)
    for day in sorted(expected):
        src = mats.get((SOURCE.to_user_string(), day), {})
        table = mats.get((TABLE.to_user_string(), day), {})
        day_checks = checks.get(day, {})
        marks = " ".join(f"{name}:{'ok' if day_checks.get(name) else 'FAIL'}" for name in CHECK_NAMES)
        loaded = table.get("rows")
        ok = ok and loaded == expected[day] and all(day_checks.get(n) for n in CHECK_NAMES)
        rows.append(
            [
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
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def _read_back(endpoint: str) -> Any:
    """The table as a catalog reader sees it: the files at each registered Glue partition location."""
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
    tables = []
    pages = glue.get_paginator("get_partitions").paginate(
        DatabaseName=DEMO_EVENT["database"], TableName=DEMO_EVENT["table"]
    )
    for page in pages:
        for part in page["Partitions"]:
            location = part["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
            t = ds.dataset(location, filesystem=fs, format="parquet").to_table()
            tables.append(t.append_column("data_ref", pa.array([part["Values"][0]] * t.num_rows)))
    return pa.concat_tables(tables).to_pandas()


def _print_aggregate(df: Any) -> None:
    df["revenue"] = df["quantity"].astype("float64") * df["unit_price"].astype("float64")
    print(f"\nRead back through the Glue catalog: {len(df)} rows, {df['data_ref'].nunique()} days.")
    by_store = (
        df.groupby("store")
        .agg(orders=("order_id", "count"), units=("quantity", "sum"), revenue=("revenue", "sum"))
        .sort_values("revenue", ascending=False)
    )
    rows = [[r.Index, str(r.orders), str(int(r.units)), f"{r.revenue:,.2f}"] for r in by_store.itertuples()]
    print("Revenue by store over the week:\n")
    _print_table(["store", "orders", "units", "revenue"], rows)


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
        with Emulator.running(workdir) as emu, _environ(emu.env(), drop=_AWS_DROP):
            print(f"moto server (S3 + Glue) on {emu.endpoint}")
            day_list = demo_days(days)
            session = boto3.Session()
            expected = stage_exports(session.client("s3"), session.client("glue"), day_list)
            print(
                f"staged {len(day_list)} daily exports {day_list[0]}..{day_list[-1]} in "
                f"s3://{DEMO_EVENT['bucket_src']}/exports/ (plus decoys and an older partial per day)"
            )
            print(f"materializing {len(day_list)} partitions as one backfill run through Dagster ...\n")
            result = _materialize(day_list)
            table, ok = _report(result, expected)
            _print_table(["day", "source key", "rows", "checks", "parquet location"], table)
            if not result.success:
                for event in result.all_events:
                    if event.event_type_value == "STEP_FAILURE":
                        print(f"\nFAILED: {event.step_failure_data.error.message}", file=sys.stderr)
            _print_aggregate(_read_back(emu.endpoint))
            print(f"\n{'OK' if ok else 'FAILED'}: the emulator is stopped on exit.")
            return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted; emulator stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_dev(port: int = 3000, days: int = 7) -> int:
    """The emulator with the sample exports, then ``dagster dev`` on 127.0.0.1:``port``."""
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
            env = {k: v for k, v in os.environ.items() if k not in _AWS_DROP}
            env.update(emu.env())
            env.update(_settings_env(DEMO_EVENT, day_list[0]))
            env["DAGSTER_HOME"] = str(home)
            print(f"moto server on {emu.endpoint}; exports for {day_list[0]}..{day_list[-1]} staged")
            print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it and the emulator)")
            dagster = str(Path(sys.executable).parent / "dagster")
            # its own process group, so that stopping it reaches the webserver, daemon and code server
            proc = subprocess.Popen(
                [dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-m", DEFS_MODULE],
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
    dev = sub.add_parser("dev", help="emulator + sample data + dagster dev")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--days", type=int, default=7)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.days)
    return run_dev(args.port, args.days)


if __name__ == "__main__":
    sys.exit(main())
