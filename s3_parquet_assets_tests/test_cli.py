"""The console script: the single-event load, a declared table's load for a day or a range, and the
``tables`` listing. Run in-process (``cli.main``) and as a real subprocess, against the moto server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from s3_parquet_assets import cli
from s3_parquet_assets.core import yesterday

from .conftest import ROOT
from .helpers import DB, DST, Lake, csv_rows, event, stage_env
from .three_tables import NAMES, TABLES_YAML, stage_day, write_tables_file


def _exe() -> list[str]:
    exe = shutil.which("s3-parquet-assets", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "s3_parquet_assets.cli"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_exe(), *args],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """``cli.main`` in-process: exit status, stdout lines, stderr."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


# Typed columns as the Parquet files must give them back (names-only columns stay text).
_TYPED: dict[str, dict[str, Callable[[Any], Any]]] = {
    "sales": {},
    "customers": {"signup": date.fromisoformat},
    "stock": {"price": Decimal},
}
_GLUE_TYPES = {
    "sales": {"id": "string", "customer": "string", "amount": "string"},
    "customers": {"customer_id": "bigint", "name": "string", "signup": "date"},
    "stock": {"sku": "string", "qty": "int", "price": "decimal(10,2)"},
}


def _expected(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    convert = _TYPED[table]
    return _sorted([{k: convert.get(k, lambda v: v)(v) for k, v in row.items()} for row in rows])


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))


def _catalog_day(lake: Lake, table: str, day: str) -> list[dict[str, Any]]:
    """The day's rows as a catalog reader sees them: every Glue partition of the day (one per
    region for ``stock``) read at its location, with the partition columns below data_ref added."""
    glue = lake.clients.glue
    keys = [k["Name"] for k in glue.get_table(DatabaseName=DB, Name=table)["Table"]["PartitionKeys"]]
    parts = [
        p
        for p in glue.get_partitions(DatabaseName=DB, TableName=table)["Partitions"]
        if p["Values"][0] == day
    ]
    assert parts, f"no Glue partition of {table} for {day}"
    rows: list[dict[str, Any]] = []
    for part in parts:
        extra = dict(zip(keys[1:], part["Values"][1:], strict=True))
        rows += [{**row, **extra} for row in lake.read_location(part["StorageDescriptor"]["Location"])]
    return _sorted(rows)


def _assert_day(lake: Lake, table: str, day: str, staged: list[dict[str, Any]]) -> None:
    got, want = _catalog_day(lake, table, day), _expected(table, staged)
    assert got == want
    assert [{k: type(v) for k, v in r.items()} for r in got] == [
        {k: type(v) for k, v in r.items()} for r in want
    ]
    columns = lake.clients.glue.get_table(DatabaseName=DB, Name=table)["Table"]["StorageDescriptor"][
        "Columns"
    ]
    assert {c["Name"]: c["Type"] for c in columns} == _GLUE_TYPES[table]


def _dst_keys(lake: Lake) -> list[str]:
    return lake.keys(bucket=DST)


# --------------------------------------------------------------------------------------------------
# load --tables


def test_load_each_table_for_a_day(lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = str(write_tables_file(tmp_path))
    staged = stage_day(lake, "20240115")
    for name in NAMES:
        code, out, err = _main(capsys, "load", "--tables", tables, "--table", name, "--day", "20240115")
        assert code == 0, err
        assert len(out) == 1
        response = json.loads(out[0])
        assert (response["table"], response["data_ref"], response["statusCode"]) == (name, "20240115", 200)
        assert response["result"]["rows"] == 6
        assert response["result"]["table"] == f"{DB}.{name}"
        _assert_day(lake, name, "20240115", staged[name])


def test_load_each_table_for_a_range(lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = str(write_tables_file(tmp_path))
    days = ["20240229", "20240301"]  # across a month end of a leap year
    staged = {day: stage_day(lake, day, rows=4 + n) for n, day in enumerate(days)}
    for name in NAMES:
        code, out, err = _main(
            capsys, "load", "--tables", tables, "--table", name, "--from", days[0], "--to", days[1]
        )
        assert code == 0, err
        responses = [json.loads(line) for line in out]
        assert [(r["table"], r["data_ref"], r["statusCode"]) for r in responses] == [
            (name, d, 200) for d in days
        ]
        assert [r["result"]["rows"] for r in responses] == [4, 5]
        for day in days:
            _assert_day(lake, name, day, staged[day][name])


def test_load_defaults_to_yesterday(lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = str(write_tables_file(tmp_path))
    day = yesterday()
    staged = stage_day(lake, day)
    code, out, err = _main(capsys, "load", "--tables", tables, "--table", "customers")
    assert code == 0, err
    assert [json.loads(line)["data_ref"] for line in out] == [day]
    _assert_day(lake, "customers", day, staged["customers"])


def test_console_script_loads_a_range_with_progress_on_stderr(lake: Lake, aws: str, tmp_path: Path) -> None:
    tables = str(write_tables_file(tmp_path))
    staged = {day: stage_day(lake, day) for day in ("20240114", "20240115")}
    assert _exe() == [str(ROOT / ".venv" / "bin" / "s3-parquet-assets")], "installed by make install"
    env = {"PATH": os.environ.get("PATH", ""), **stage_env(aws)}  # only the emulator's settings
    proc = _cli(
        "load", "--tables", tables, "--table", "stock", "--from", "20240114", "--to", "20240115", env=env
    )
    assert proc.returncode == 0, proc.stderr
    responses = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["table"], r["data_ref"], r["statusCode"]) for r in responses] == [
        ("stock", "20240114", 200),
        ("stock", "20240115", 200),
    ]
    assert "stock 20240114 (1/2): loading" in proc.stderr
    assert "stock 20240115: loaded 6 rows" in proc.stderr
    assert "stock: 2 of 2 day(s) loaded" in proc.stderr
    for day, rows in staged.items():
        _assert_day(lake, "stock", day, rows["stock"])


def test_a_bad_day_fails_alone_and_leaves_its_partition(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    tables = str(write_tables_file(tmp_path))
    staged = {day: stage_day(lake, day) for day in ("20240114", "20240115", "20240116")}
    code, _, err = _main(capsys, "load", "--tables", tables, "--table", "sales", "--day", "20240115")
    assert code == 0, err
    glue = lake.clients.glue
    before = glue.get_partition(DatabaseName=DB, TableName="sales", PartitionValues=["20240115"])["Partition"]
    keys_before = lake.keys("lake/sales/data_ref=20240115/", bucket=DST)
    # The day is re-exported, corrupt: the newest object of the day is no gzip.
    lake.put("sales/20240115/sales_20240115.csv.gz", b"\x1f\x8b\x08\x00 truncated, not gzip")

    code, out, err = _main(
        capsys, "load", "--tables", tables, "--table", "sales", "--from", "20240114", "--to", "20240116"
    )
    assert code == 1
    responses = [json.loads(line) for line in out]
    assert [(r["data_ref"], r["statusCode"]) for r in responses] == [
        ("20240114", 200),
        ("20240115", 500),
        ("20240116", 200),
    ]
    assert responses[1]["table"] == "sales"
    assert responses[1]["body"].startswith("Error: read: ")
    assert "s3://src-bucket/sales/20240115/sales_20240115.csv.gz" in responses[1]["body"]
    assert "sales: 2 of 3 day(s) loaded; failed: 20240115" in caplog.text  # stderr, in a real run
    after = glue.get_partition(DatabaseName=DB, TableName="sales", PartitionValues=["20240115"])["Partition"]
    assert after["StorageDescriptor"]["Location"] == before["StorageDescriptor"]["Location"]
    assert after["Parameters"] == before["Parameters"]
    assert lake.keys("lake/sales/data_ref=20240115/", bucket=DST) == keys_before
    for day in ("20240114", "20240115", "20240116"):
        _assert_day(lake, "sales", day, staged[day]["sales"])


def test_unknown_table_lists_the_declared_ones(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = str(write_tables_file(tmp_path))
    stage_day(lake, "20240115")
    code, out, err = _main(capsys, "load", "--tables", tables, "--table", "salez", "--day", "20240115")
    assert (code, out) == (1, [])
    assert (
        f"error: validate: table 'salez' is not declared in {tables} (tables: sales, customers, stock)" in err
    )
    assert _dst_keys(lake) == []


def test_load_refuses_a_bad_tables_file_before_any_day(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = TABLES_YAML.replace("{name: signup, type: date}", "{name: signup, type: datum}")
    tables = str(write_tables_file(tmp_path, bad))
    stage_day(lake, "20240115")
    code, out, err = _main(capsys, "load", "--tables", tables, "--table", "sales", "--day", "20240115")
    assert (code, out) == (1, [])
    assert f"tables file {tables}: tables[customers].schema[2].type: 'datum' is not a supported type" in err
    assert _dst_keys(lake) == []
    assert lake.clients.glue.get_tables(DatabaseName=DB)["TableList"] == []


def test_load_refuses_days_before_the_start_date(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = str(write_tables_file(tmp_path))  # sales: start_date "20240101"
    for day in ("20231231", "20240101", "20240102"):
        stage_day(lake, day)
    code, out, err = _main(
        capsys, "load", "--tables", tables, "--table", "sales", "--from", "20231231", "--to", "20240102"
    )
    assert (code, out) == (1, [])
    assert (
        f"table sales: day 20231231 is before its start_date 20240101 (tables file {tables}); "
        "no day was loaded" in err
    )
    assert _dst_keys(lake) == []
    code, out, err = _main(capsys, "load", "--tables", tables, "--table", "sales", "--day", "20240101")
    assert code == 0, err
    assert [json.loads(line)["data_ref"] for line in out] == ["20240101"]


# --------------------------------------------------------------------------------------------------
# Usage errors (exit 2, nothing run)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--day", "20240230"], "argument --day: '20240230' is not a real calendar date"),
        (["--day", "2024-01-15"], "argument --day: '2024-01-15' must be a day as YYYYMMDD"),
        (["--from", "20240110", "--to", "20240101"], "--from 20240110 is after --to 20240101"),
        (
            ["--from", "20230101", "--to", "20240102"],
            "--from 20230101 --to 20240102 is 367 days; one run loads at most 366 (split the range",
        ),
        (
            ["--day", "20240115", "--from", "20240101", "--to", "20240102"],
            "give --day or --from/--to, not both",
        ),
        (["--from", "20240101"], "a range needs both --from and --to"),
        (["--to", "20240101"], "a range needs both --from and --to"),
        (["--event", "{}"], "argument --event: not allowed with argument --tables"),
    ],
)
def test_range_and_flag_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    tables = str(write_tables_file(tmp_path))
    err = _usage_error(capsys, "load", "--tables", tables, "--table", "sales", *args)
    assert message in err, err
    assert "usage: s3-parquet-assets load" in err


def test_a_year_is_the_longest_range() -> None:
    assert len(cli.day_range("20230102", "20240101")) == 365
    assert cli.day_range("20240101", "20241231")[-1] == "20241231"
    assert len(cli.day_range("20240101", "20241231")) == 366
    with pytest.raises(ValueError, match="is 367 days"):
        cli.day_range("20240101", "20250101")
    assert cli.day_range("20240228", "20240301") == ["20240228", "20240229", "20240301"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load"], "give --event JSON (or @file), or --tables FILE --table NAME"),
        (["load", "--tables", "t.yaml"], "--tables needs --table NAME"),
        (["load", "--event", "{}", "--day", "20240101"], "--day goes with --tables"),
        (["load", "--event", "{}", "--table", "sales"], "--table goes with --tables"),
        (["load", "--tables", "t.yaml", "--table", "sales", "{}"], "unrecognized arguments: {}"),
        (["tables"], "the following arguments are required: file"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert message in _usage_error(capsys, *args)


# --------------------------------------------------------------------------------------------------
# tables FILE


def test_tables_lists_the_three_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = str(write_tables_file(tmp_path))
    code, out, err = _main(capsys, "tables", tables)
    assert code == 0, err
    assert f"{tables}: 3 table(s), valid" in err
    header, *rows = out
    assert re.split(r"\s{2,}", header) == [
        "NAME",
        "SOURCE",
        "SUBSTR",
        "DESTINATION",
        "GLUE TABLE",
        "SCHEDULE",
        "START DATE",
        "CATCHUP DAYS",
    ]
    assert [re.split(r"\s{2,}", row) for row in rows] == [
        [
            "sales",
            "s3://src-bucket/sales/{data_ref}/",
            "sales_",
            "s3://dst-bucket/lake/sales",
            "analytics.sales",
            "06:00",
            "20240101",
            "3",
        ],
        [
            "customers",
            "s3://src-bucket/crm/customers_{data_ref}",
            "customers_",
            "s3://dst-bucket/lake/customers",
            "analytics.customers",
            "06:30",
            "20240105",
            "3",
        ],
        [
            "stock",
            "s3://src-bucket/stock/{data_ref}/",
            "stock",
            "s3://dst-bucket/lake/stock",
            "analytics.stock",
            "07:00",
            "20231201",
            "7",
        ],
    ]
    for column in ("SOURCE", "GLUE TABLE", "CATCHUP DAYS"):  # aligned: each column starts at one offset
        start = header.index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows)


def test_tables_json_has_every_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from s3_parquet_assets.core.contract import FIELDS

    code, out, err = _main(capsys, "tables", str(write_tables_file(tmp_path)), "--json")
    assert code == 0, err
    listed = json.loads("\n".join(out))
    assert [t["name"] for t in listed] == list(NAMES)
    stock = listed[2]
    assert stock["destination"] == "s3://dst-bucket/lake/stock"
    assert stock["glue_table"] == "analytics.stock"
    assert stock["catchup_days"] == 7 and listed[0]["catchup_days"] == 3
    assert listed[0]["owners"] == ["team:finance"] and listed[0]["tags"] == {"domain": "finance"}
    assert stock["run_on"] == "local" and stock["lambda_concurrency"] == 4
    assert stock["settings"]["encoding"] == "latin-1"
    assert stock["settings"]["partitions_cols"] == ["data_ref", "region"]
    assert stock["settings"]["schema"][2] == {"name": "price", "type": "decimal(10,2)"}
    assert listed[1]["settings"]["delimiter"] == ";" and listed[1]["settings"]["header"] is True
    # Every contract field is shown, as a hint or a setting with its default filled in, but the day
    # and the optional fields the file leaves unset (no default: zip_member, transform, ...).
    shown = set(stock) | set(stock["settings"])
    unset = {f.name for f in FIELDS if f.default is None and not f.required and f.name != "name"}
    assert "data_ref" in unset and "zip_member" in unset
    assert {f.name for f in FIELDS} - shown == unset


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (
            "{name: signup, type: date}",
            "{name: signup, type: datum}",
            "tables[customers].schema[2].type: 'datum'",
        ),
        ('schedule: "07:00"', 'schedule: "7 am"', "tables[stock].schedule: '7 am' must be a time of day"),
        (
            "    table: stock\n",
            "    table: sales\n",
            "tables[stock].table: Glue table analytics.sales is also",
        ),
        ("  catchup_days: 3\n", "  catchup_dayz: 3\n", "defaults.catchup_dayz: unknown field"),
    ],
)
def test_tables_refuses_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, where: str
) -> None:
    assert old in TABLES_YAML
    tables = str(write_tables_file(tmp_path, TABLES_YAML.replace(old, new, 1)))
    code, out, err = _main(capsys, "tables", tables)
    assert (code, out) == (1, [])
    assert f"s3-parquet-assets: error: validate: tables file {tables}: {where}" in err


def test_tables_file_read_from_s3(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    lake.put("config/tables.yaml", TABLES_YAML.encode())
    staged = stage_day(lake, "20240115")
    code, out, err = _main(capsys, "tables", "s3://src-bucket/config/tables.yaml")
    assert code == 0, err
    assert [line.split()[0] for line in out[1:]] == list(NAMES)
    code, out, err = _main(
        capsys,
        "load",
        "--tables",
        "s3://src-bucket/config/tables.yaml",
        "--table",
        "sales",
        "--day",
        "20240115",
    )
    assert code == 0, err
    _assert_day(lake, "sales", "20240115", staged["sales"])
    code, out, err = _main(capsys, "tables", "s3://src-bucket/config/missing.yaml")
    assert (code, out) == (1, [])
    assert "error: validate: cannot read the tables file s3://src-bucket/config/missing.yaml: " in err


def test_console_script_tables_of_a_bad_file(tmp_path: Path) -> None:
    tables = str(write_tables_file(tmp_path, TABLES_YAML.replace("substr: stock", "substr: 7")))
    proc = _cli("tables", tables)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"tables file {tables}: tables[stock].substr: must be a string" in proc.stderr


def test_tables_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(capsys, "tables", str(tmp_path / "nope.yaml"))
    assert (code, out) == (1, [])
    assert f"error: validate: cannot read the tables file {tmp_path / 'nope.yaml'}" in err


# --------------------------------------------------------------------------------------------------
# load --event (unchanged)


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


def test_load_event_as_trailing_argument(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    lake.put("exports/20240115/sales.csv", csv_rows(7))
    code, out, err = _main(capsys, "load", json.dumps(event()))
    assert code == 0, err
    assert [json.loads(line)["result"]["rows"] for line in out] == [7]
    assert len(lake.read_catalog()) == 7


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
