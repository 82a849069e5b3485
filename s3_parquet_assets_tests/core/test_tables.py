"""The tables file: three tables validated, routed and named in every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from s3_parquet_assets.core import LoadError, parse_tables, read_tables

from ..helpers import DST, SRC
from ..three_tables import TABLES_YAML, write_tables_file


def doc() -> dict[str, Any]:
    return yaml.safe_load(TABLES_YAML)


def test_three_tables_with_defaults_and_hints(tmp_path: Path) -> None:
    tables = read_tables(write_tables_file(tmp_path))
    assert tables.names == ("sales", "customers", "stock")
    sales, customers, stock = tables
    assert sales.settings["bucket_src"] == SRC and sales.settings["bucket_dstn"] == DST
    assert (sales.start_date, sales.schedule, sales.catchup_days) == ("20240101", "06:00", 3)
    assert (stock.catchup_days, stock.schedule, stock.hhmm) == (7, "07:00", (7, 0))
    assert sales.owners == ("team:finance",) and sales.tags == {"domain": "finance"}
    assert customers.probe.header and customers.probe.delimiter == ";"
    assert stock.probe.partitions_cols == ("data_ref", "region")
    assert stock.event("20240110")["data_ref"] == "20240110"
    assert stock.event("20240110", {"allow_empty": True})["allow_empty"] is True
    assert "start_date" not in stock.event("20240110")


def test_s3_keys_route_to_their_tables() -> None:
    tables = parse_tables(doc())
    assert [(t.name, d) for t, d in tables.match(SRC, "sales/20240115/sales_20240115.csv.gz")] == [
        ("sales", "20240115")
    ]
    assert [(t.name, d) for t, d in tables.match(SRC, "crm/customers_20240116.zip")] == [
        ("customers", "20240116")
    ]
    assert tables.match(SRC, "sales/20240115/other.csv") == []  # no substring
    assert tables.match(SRC, "sales/20241315/sales_x.csv") == []  # not a real day
    assert tables.match("other-bucket", "sales/20240115/sales_1.csv") == []
    assert tables.match(SRC, "sales/20240115/") == []  # folder marker


def _with(path: list[Any], value: Any, *, delete: bool = False) -> dict[str, Any]:
    d = doc()
    target: Any = d
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            _with(["tables", 2, "schema", 2, "type"], "money"),
            "tables[stock].schema[2].type: 'money' is not a supported type",
        ),
        (_with(["tables", 0, "colour"], "red"), "tables[sales].colour: unknown field; allowed: "),
        (_with(["tables", 0, "data_ref"], "20240101"), "tables[sales].data_ref: unknown field"),
        (_with(["defaults", "nme"], "x"), "defaults.nme: unknown field"),
        (
            _with(["defaults", "bucket_src"], "Bad_Bucket"),
            "defaults.bucket_src (used by tables[sales]): 'Bad_Bucket' is not a valid S3 bucket name",
        ),
        (_with(["tables", 1, "name"], "sales"), "tables[sales].name: is declared more than once"),
        (
            _with(["tables", 1, "table"], "sales"),
            "tables[customers].table: Glue table analytics.sales is also written by tables[sales]",
        ),
        (
            _with(["tables", 1, "pathoutput"], "lake/sales/customers"),
            "tables[customers].pathoutput: s3://dst-bucket/lake/sales/customers overlaps",
        ),
        (
            _with(["tables", 2, "pathoutput"], "lake/sales"),
            "tables[stock].pathoutput: s3://dst-bucket/lake/sales overlaps",
        ),
        (_with(["tables", 0, "substr"], None, delete=True), "tables[sales].substr: is required"),
        (_with(["tables", 0, "name"], None, delete=True), "tables[0].name: is required"),
        (
            _with(["tables", 0, "schedule"], "6am"),
            "tables[sales].schedule: '6am' must be a time of day as HH:MM",
        ),
        (
            _with(["tables", 0, "start_date"], "20240231"),
            "tables[sales].start_date: '20240231' is not a real calendar date",
        ),
        (
            _with(["tables", 0, "catchup_days"], 0),
            "tables[sales].catchup_days: 0 must be a whole number from 1 to 366",
        ),
        (
            _with(["tables", 2, "partitions_cols"], ["data_ref", "zone"]),
            "tables[stock].partitions_cols: 'zone' is not a column of the schema",
        ),
        (_with(["tables"], []), "tables: must be a non-empty list of tables"),
        (_with(["version"], 2), "version: unknown key; allowed: defaults, tables"),
    ],
)
def test_bad_tables_files_name_the_table_and_field(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadError, match=r"^validate: tables file t\.yaml: ") as info:
        parse_tables(bad, "t.yaml")
    assert message in str(info.value)


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tables:\n  - name: a\n    schema: [id\n", encoding="utf-8")
    with pytest.raises(LoadError, match=r"is not valid YAML: line \d+, column \d+"):
        read_tables(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"cannot read the tables file .*nope\.yaml"):
        read_tables(tmp_path / "nope.yaml")
