"""Source selection against the moto server: pagination, ties, decoys, exact keys, clear errors."""

from __future__ import annotations

import time

import pytest

from s3_parquet_assets.core import AwsClients, LoadError, find_latest, handle_event

from ..helpers import SRC, Lake, csv_rows, event, gz


def test_more_than_one_page(lake: Lake, clients: AwsClients) -> None:
    for i in range(1050):
        lake.put(f"exports/20240115/other_{i:04d}.csv", b"x")
    time.sleep(1.1)  # S3 LastModified has whole seconds
    lake.put("exports/20240115/zz_sales.csv", csv_rows(3))
    picked = find_latest(clients.s3, SRC, "exports/20240115/", "sales")
    assert picked.key == "exports/20240115/zz_sales.csv"
    # and the newest non-matching object is never picked even when it is on a later page
    picked_all = find_latest(clients.s3, SRC, "exports/20240115/", "other_")
    assert picked_all.key.startswith("exports/20240115/other_")


def test_latest_wins_and_ties_are_deterministic(lake: Lake, clients: AwsClients) -> None:
    lake.put("exports/20240115/sales_b.csv", csv_rows(1))
    lake.put("exports/20240115/sales_a.csv", csv_rows(1))
    first = find_latest(clients.s3, SRC, "exports/20240115/", "sales")
    # same second: the key that sorts first wins, whatever the listing order
    objs = clients.s3.list_objects_v2(Bucket=SRC)["Contents"]
    if objs[0]["LastModified"] == objs[1]["LastModified"]:
        assert first.key == "exports/20240115/sales_a.csv"
    time.sleep(1.1)
    lake.put("exports/20240115/sales_c.csv", csv_rows(1))
    assert find_latest(clients.s3, SRC, "exports/20240115/", "sales").key == "exports/20240115/sales_c.csv"
    assert find_latest(clients.s3, SRC, "exports/20240115/", "sales") == find_latest(
        clients.s3, SRC, "exports/20240115/", "sales"
    )


def test_substring_filter_skips_decoys(lake: Lake, clients: AwsClients) -> None:
    lake.put("exports/20240115/sales.csv", csv_rows(2))
    time.sleep(1.1)
    lake.put("exports/20240115/returns.csv", csv_rows(9))  # newer, but not matching
    lake.put("exports/20240115/folder_sales/", b"")  # a folder marker is never a source
    assert find_latest(clients.s3, SRC, "exports/20240115/", "sales").key == "exports/20240115/sales.csv"


def test_prefix_template_picks_the_day(lake: Lake) -> None:
    lake.put("exports/20240114/sales.csv", csv_rows(4))
    lake.put("exports/20240115/sales.csv", csv_rows(6))
    lake.put("exports/20240116/sales.csv", csv_rows(8))
    out = handle_event(event(data_ref="20240115"))
    assert out["statusCode"] == 200, out
    assert out["result"]["source_key"] == "exports/20240115/sales.csv"
    assert len(lake.read_catalog("20240115")) == 6


def test_reads_exactly_the_picked_key(lake: Lake) -> None:
    # x.csv beside x.csv.gz: the key is read as an exact key, never as a prefix of another
    lake.put("exports/20240115/sales.csv.gz", gz(csv_rows(50)))
    time.sleep(1.1)
    lake.put("exports/20240115/sales.csv", csv_rows(5))
    out = handle_event(event())
    assert out["statusCode"] == 200, out
    assert out["result"]["source_key"] == "exports/20240115/sales.csv"
    assert out["result"]["rows"] == 5
    assert len(lake.read_catalog()) == 5


def test_nothing_matches_names_bucket_prefix_and_substring(lake: Lake) -> None:
    lake.put("exports/20240115/returns.csv", csv_rows(1))
    out = handle_event(event())
    assert out["statusCode"] == 500
    assert out["body"].startswith("Error: list: ")
    assert "s3://src-bucket/exports/20240115/" in out["body"]
    assert "'sales'" in out["body"]


def test_missing_source_bucket(lake: Lake, clients: AwsClients) -> None:
    with pytest.raises(LoadError, match="source bucket 'no-such-bucket' does not exist") as info:
        find_latest(clients.s3, "no-such-bucket", "", "x")
    assert info.value.stage == "list"
