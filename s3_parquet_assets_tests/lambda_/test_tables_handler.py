"""The handler in-process with tables: the by-name rule, where the tables file is found and how long
it is kept, the environment's single table, and the zip's tables file at build time."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from s3_parquet_assets import lambda_handler as lh
from s3_parquet_assets.lambda_ import tables as lambda_tables
from s3_parquet_assets.lambda_.events import is_by_name

from ..helpers import DAY, DST, Lake, csv_rows, event
from ..three_tables import TABLES_YAML, source_keys, stage_day, write_tables_file
from .tables_support import day_rows, glue_tables, scheduled_for
from .test_packaged import s3_record

ONE_TABLE_YAML = TABLES_YAML.split("  - name: customers")[0]


@pytest.fixture
def tables_env(monkeypatch: pytest.MonkeyPatch, aws: str) -> pytest.MonkeyPatch:
    """No S3PA_* settings at all, fresh caches; the test sets S3PA_TABLES."""
    for var in [v for v in os.environ if v.startswith("S3PA_")]:
        monkeypatch.delenv(var)
    lh.reset_clients()
    lh.reset_tables()
    yield monkeypatch
    lh.reset_clients()
    lh.reset_tables()


def test_the_by_name_rule() -> None:
    assert is_by_name({"table": "sales", "data_ref": DAY})
    assert is_by_name({"table": "sales", "bucket_src": "other-bucket"})  # an override, still by name
    assert not is_by_name(event())  # every required field: a full event, its table is the Glue table
    assert not is_by_name({"data_ref": DAY})
    assert not is_by_name({"table": 3})
    assert not is_by_name(["table"])


def test_without_a_tables_file_a_table_name_is_not_enough(handler_env: None, lake: Lake) -> None:
    response = lh.handler({"table": "sales", "data_ref": DAY})
    assert response["body"] == "Error: validate: field 'bucket_src': is required"


def test_by_name_event_from_a_tables_file_path(
    tables_env: pytest.MonkeyPatch, lake: Lake, tmp_path: Path
) -> None:
    tables_env.setenv(lh.ENV_TABLES, str(write_tables_file(tmp_path)))
    stage_day(lake, DAY)
    response = lh.handler({"table": "customers", "data_ref": DAY})
    assert response["statusCode"] == 200, response
    assert response["result"]["table"] == "analytics.customers"
    assert len(day_rows(lake, "customers", DAY)) == 6
    # An override that breaks the contract is named like any event field.
    bad = lh.handler({"table": "sales", "data_ref": DAY, "delimiter": ";;"})
    assert (
        bad["body"]
        == "Error: validate: field 'delimiter': ';;' must be exactly one character (not a line break)"
    )
    unknown = lh.handler({"table": "sales", "data_ref": DAY, "catchup_days": 2})
    assert "unknown field(s) ['catchup_days']" in unknown["body"]


def test_table_settings_in_the_environment_beside_a_tables_file_are_refused(
    handler_env: None, monkeypatch: pytest.MonkeyPatch, lake: Lake, tmp_path: Path
) -> None:
    monkeypatch.setenv(lh.ENV_TABLES, str(write_tables_file(tmp_path)))
    stage_day(lake, DAY)
    response = lh.handler({"table": "sales", "data_ref": DAY})
    assert response["statusCode"] == 500
    assert response["body"] == (
        "Error: validate: the environment sets table fields (bucket_dstn, bucket_src, database, pathoutput, "
        "prefix, schema, substr, table; from S3PA_EVENT_DEFAULTS or S3PA_<FIELD>) but the function serves "
        f"the tables file {tmp_path / 'tables.yaml'}: declare them there (its 'defaults' apply to every table)"
    )
    with pytest.raises(lh.LoadFailedError, match="the environment sets table fields"):
        lh.handler(scheduled_for("sales", "2024-01-16T06:00:00Z"))
    assert glue_tables(lake) == []


def test_the_tables_file_is_read_once_per_container(tables_env: pytest.MonkeyPatch, lake: Lake) -> None:
    lake.put("config/tables.yaml", TABLES_YAML.encode(), bucket=DST)
    tables_env.setenv(lh.ENV_TABLES, f"s3://{DST}/config/tables.yaml")
    stage_day(lake, DAY)
    assert lh.handler({"table": "sales", "data_ref": DAY})["statusCode"] == 200
    # A changed file is not seen by a warm container...
    lake.put("config/tables.yaml", b"tables: [", bucket=DST)
    assert lh.handler({"table": "stock", "data_ref": DAY})["statusCode"] == 200
    # ...but by a new one, which refuses it, naming the file and the line.
    lh.reset_tables()
    response = lh.handler({"table": "sales", "data_ref": DAY})
    assert response["body"].startswith(
        "Error: validate: s3://dst-bucket/config/tables.yaml: is not valid YAML: line 1, column 10"
    )
    # A missing object is named too.
    tables_env.setenv(lh.ENV_TABLES, f"s3://{DST}/config/missing.yaml")
    missing = lh.handler({"table": "sales", "data_ref": DAY})
    assert missing["body"].startswith(
        "Error: validate: cannot read the tables file s3://dst-bucket/config/missing.yaml"
    )


def test_s3pa_tables_wins_over_the_bundled_file(tmp_path: Path) -> None:
    bundled = write_tables_file(tmp_path)
    assert lambda_tables.tables_location({}, bundled=bundled) == str(bundled)
    assert lambda_tables.tables_location({lh.ENV_TABLES: "s3://b/k.yaml"}, bundled=bundled) == "s3://b/k.yaml"
    assert lambda_tables.tables_location({lh.ENV_TABLES: "  "}, bundled=bundled) == str(bundled)
    assert lambda_tables.tables_location({}, bundled=tmp_path / "absent.yaml") is None
    # In the package the bundled file sits at the zip's root, next to s3_parquet_assets/.
    assert (
        lambda_tables.bundled_tables_path() == Path(lh.__file__).resolve().parent.parent / "s3pa_tables.yaml"
    )


def test_a_single_table_file_serves_schedules_without_a_name(
    tables_env: pytest.MonkeyPatch, lake: Lake, tmp_path: Path
) -> None:
    tables_env.setenv(lh.ENV_TABLES, str(write_tables_file(tmp_path, ONE_TABLE_YAML)))
    stage_day(lake, "20240116")
    response = lh.handler(scheduled_for(None, "2024-01-17T06:00:00Z"))
    assert response["table"] == "sales"
    assert response["days"] == {"20240114": "no export", "20240115": "no export", "20240116": "loaded"}


def test_environment_table_schedules(handler_env: None, monkeypatch: pytest.MonkeyPatch, lake: Lake) -> None:
    """Without a tables file the environment describes one table, named after its Glue table."""
    lake.put("exports/20240116/sales_1.csv", csv_rows(5))
    named = lh.handler(scheduled_for("sales", "2024-01-17T06:00:00Z"))
    assert named["table"] == "sales"
    assert [r["rows"] for r in named["results"]] == [5]
    with pytest.raises(lh.LoadFailedError) as info:
        lh.handler(scheduled_for("returns", "2024-01-17T06:00:00Z"))
    assert str(info.value) == (
        "Error: validate: table 'returns' is not declared in the environment (S3PA_*) (tables: sales)"
    )
    monkeypatch.setenv("S3PA_SCHEMA", '[{"name": "id", "type": "integer32"}]')
    with pytest.raises(lh.LoadFailedError) as bad:
        lh.handler(scheduled_for(None, "2024-01-17T06:00:00Z"))
    assert str(bad.value).startswith(
        "Error: validate: setting S3PA_SCHEMA: schema[0].type: 'integer32' is not a supported type"
    )
    monkeypatch.delenv("S3PA_BUCKET_SRC")
    with pytest.raises(lh.LoadFailedError, match=r"^Error: validate: setting S3PA_BUCKET_SRC: is required$"):
        lh.handler({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]})


# ---------------------------------------------------------------------------------------------------
# The zip's tables file at build time.


def test_build_bundles_the_validated_tables_file_reproducibly(build_zip: ModuleType, tmp_path: Path) -> None:
    tables = write_tables_file(tmp_path)
    first = build_zip.build(tmp_path / "a.zip", tables=tables)
    # what `make lambda-zip TABLES=...` runs
    assert build_zip.main(["--out", str(tmp_path / "b.zip"), "--tables", str(tables)]) == 0
    assert first.read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        assert zf.read("s3pa_tables.yaml") == tables.read_bytes()
    assert "yaml/__init__.py" in names
    assert "yaml/scanner.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd")) or n.startswith("_yaml")]
    assert "s3_parquet_assets/lambda_/routing.py" in names
    assert first.stat().st_size < 512 * 1024


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            ("{name: qty, type: int}", "{name: qty, type: integer32}"),
            r"tables\[stock\]\.schema\[1\]\.type: 'integer32'",
        ),
        (
            ("    table: customers\n", "    table: sales\n"),
            r"tables\[customers\]\.table: Glue table analytics\.sales",
        ),
        (("    encoding: latin-1\n", "    encodng: latin-1\n"), r"tables\[stock\]\.encodng: unknown field"),
    ],
)
def test_build_refuses_a_bad_tables_file_naming_table_and_field(
    build_zip: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    where: str,
) -> None:
    text = TABLES_YAML.replace(*change)
    assert text != TABLES_YAML
    tables = write_tables_file(tmp_path, text)
    out = tmp_path / "out.zip"
    with pytest.raises(build_zip.BuildError, match=rf"^validate: tables file {tables}: {where}"):
        build_zip.build(out, tables=tables)
    assert build_zip.main(["--out", str(out), "--tables", str(tables)]) == 1
    assert re.search(rf"build_zip: validate: tables file {tables}: {where}", capsys.readouterr().err)
    assert not out.exists()


def test_one_notification_isolates_a_failed_table(
    tables_env: pytest.MonkeyPatch, lake: Lake, tmp_path: Path
) -> None:
    tables_env.setenv(lh.ENV_TABLES, str(write_tables_file(tmp_path)))
    expected = stage_day(lake, DAY)
    lake.put(f"stock/{DAY}/stock.csv", b"SKU-1,not a number,1.00,north\n")
    keys = source_keys(DAY)
    notification = {"Records": [s3_record(keys["stock"]), s3_record(keys["sales"])]}
    with pytest.raises(lh.LoadFailedError) as info:
        lh.handler(notification)
    response = info.value.response
    assert response["statusCode"] == 500
    assert response["body"].startswith(f"stock {DAY}: Error: read: ")
    assert [r["table"] for r in response["results"]] == ["analytics.sales"]
    assert len(day_rows(lake, "sales", DAY)) == len(expected["sales"])
    assert glue_tables(lake) == ["sales"]
