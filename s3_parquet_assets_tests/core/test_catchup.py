"""Catch-up: a scheduled run loads the window's missed or re-exported days and skips current ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from s3_parquet_assets.core import AwsClients, catch_up, handle_event, parse_tables, window

from ..helpers import Lake, gz
from ..three_tables import TABLES_YAML, stage_day


def test_window_is_oldest_first_and_never_before_the_start() -> None:
    assert window("20240103", 3) == ["20240101", "20240102", "20240103"]
    assert window("20240301", 2) == ["20240229", "20240301"]
    assert window("20240103", 5, "20240102") == ["20240102", "20240103"]


def test_catch_up_loads_missed_and_reexported_days_only(lake: Lake, clients: AwsClients) -> None:
    import yaml

    sales = parse_tables(yaml.safe_load(TABLES_YAML)).get("sales")  # catchup_days: 3
    for day in ("20240113", "20240114", "20240115"):
        stage_day(lake, day)
    loads: list[str] = []

    def counting(event: Mapping[str, Any]) -> dict[str, Any]:
        loads.append(str(event["data_ref"]))
        return handle_event(event, clients)

    # 13 was loaded before; 14 was missed; 15 is new.
    assert handle_event(sales.event("20240113"), clients)["statusCode"] == 200
    first = catch_up(sales, "20240115", clients, load=counting)
    assert first["statusCode"] == 200, first
    assert loads == ["20240114", "20240115"]
    assert first["days"] == {"20240113": "current", "20240114": "loaded", "20240115": "loaded"}
    assert len(lake.read_table_day("sales", "20240114")) == 6

    # Nothing changed: every day costs a listing and a catalog read, no load.
    loads.clear()
    again = catch_up(sales, "20240115", clients, load=counting)
    assert loads == [] and set(again["days"].values()) == {"current"}

    # A re-export of an old day inside the window is picked up.
    lake.put_newer("sales/20240113/sales_20240113_v2.csv.gz", gz(b"1,A,1.0\n"))
    third = catch_up(sales, "20240115", clients, load=counting)
    assert loads == ["20240113"] and third["days"]["20240113"] == "loaded"
    assert [r["id"] for r in lake.read_table_day("sales", "20240113")] == ["1"]


def test_catch_up_isolates_a_bad_day_and_skips_days_without_export(lake: Lake, clients: AwsClients) -> None:
    import yaml

    sales = parse_tables(yaml.safe_load(TABLES_YAML)).get("sales")
    stage_day(lake, "20240115")
    lake.put("sales/20240114/sales_20240114.csv.gz", b"not gzip at all")
    out = catch_up(sales, "20240115", clients)
    assert out["statusCode"] == 500
    assert out["days"]["20240113"] == "no export"
    assert out["days"]["20240115"] == "loaded"
    assert out["days"]["20240114"].startswith("Error: read: ")
    assert "20240114: Error: read:" in out["body"]
    assert lake.read_table_day("sales", "20240115")


def test_catch_up_reports_a_missing_newest_export(lake: Lake, clients: AwsClients) -> None:
    import yaml

    sales = parse_tables(yaml.safe_load(TABLES_YAML)).get("sales")
    out = catch_up(sales, "20240115", clients)
    assert out["statusCode"] == 500
    assert out["days"]["20240115"].startswith("Error: list: no object under s3://src-bucket/sales/20240115/")


def test_a_day_fanned_out_to_several_partitions_is_current_once_loaded(
    lake: Lake, clients: AwsClients
) -> None:
    import yaml

    stock = parse_tables(yaml.safe_load(TABLES_YAML)).get("stock")  # partitions_cols: data_ref, region
    stage_day(lake, "20240115")
    first = catch_up(stock, "20240115", clients)
    assert first["days"]["20240115"] == "loaded", first
    again = catch_up(stock, "20240115", clients)
    assert again["days"]["20240115"] == "current"
    assert again["results"] == []
