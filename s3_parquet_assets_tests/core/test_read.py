"""Reading: csv / gz / zip, typed schemas, header and delimiter options, bad rows with line numbers,
and the per-batch transform hook. Every test loads through the real pipeline against moto, but for the
read-ahead bound, which reads an in-memory export straight through the reader."""

from __future__ import annotations

import datetime as dt
import io
import time
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from s3_parquet_assets.core import AwsClients, Tuning, handle_event, parse_event, run_load
from s3_parquet_assets.core.reader import MIN_READ_AHEAD_BLOCKS, iter_batches

from ..helpers import DST, Lake, csv_rows, event, gz, zipped

KEY = "exports/20240115/sales"


def _ok(out: dict) -> dict:
    assert out["statusCode"] == 200, out
    return out["result"]


@pytest.mark.parametrize("fmt", ["csv", "gz", "zip"])
def test_formats(lake: Lake, fmt: str) -> None:
    data = csv_rows(1234)
    body = {"csv": data, "gz": gz(data), "zip": zipped({"sales.csv": data})}[fmt]
    lake.put(f"{KEY}.{'csv.gz' if fmt == 'gz' else fmt}", body)
    result = _ok(handle_event(event()))
    assert result["rows"] == 1234
    rows = lake.read_catalog()
    assert len(rows) == 1234
    assert rows[0] == {"id": "0", "customer": "C0", "amount": "0.0"}  # untyped schema: text


def test_zip_member_choice_and_errors(lake: Lake) -> None:
    lake.put(f"{KEY}.zip", zipped({"a.csv": csv_rows(3), "b.csv": csv_rows(5)}))
    out = handle_event(event())
    assert out["statusCode"] == 500
    assert "holds 2 files ['a.csv', 'b.csv'] (2 of them .csv); set zip_member" in out["body"]
    assert out["body"].startswith("Error: read: s3://src-bucket/exports/20240115/sales.zip")
    assert _ok(handle_event(event(zip_member="b.csv")))["rows"] == 5
    out = handle_event(event(zip_member="c.csv"))
    assert "zip_member 'c.csv' is not in the archive" in out["body"]
    time.sleep(1.1)
    lake.put(f"{KEY}.zip", zipped({"README.txt": b"about\n", "export.csv": csv_rows(4), "notes.md": b"x"}))
    assert _ok(handle_event(event()))["rows"] == 4  # the one CSV beside other files
    out = handle_event(event(zip_member="c.csv"))
    assert "zip_member 'c.csv' is not in the archive" in out["body"]


def test_large_zip_is_streamed_in_ranges(lake: Lake, clients: AwsClients) -> None:
    data = csv_rows(200_000)
    lake.put(f"{KEY}.zip", zipped({"sales.csv": data}))
    seen: list[str] = []
    clients.s3.meta.events.register(
        "before-call.s3.GetObject",
        lambda params, **_: seen.append(params.get("headers", {}).get("Range", "")),
    )
    result = run_load(parse_event(event()), clients)
    assert result.rows == 200_000
    assert seen and all(r.startswith("bytes=") for r in seen)  # never one whole-archive GET


def test_typed_schema_is_parsed_and_stored(lake: Lake, clients: AwsClients) -> None:
    lake.put(
        f"{KEY}.csv",
        b"1,alice,12.50,true,2024-01-15 10:11:12,2024-01-15,7\n2,bob,,false,2024-01-15T23:59:59,2024-01-14,\n",
    )
    schema = [
        {"name": "id", "type": "bigint"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "decimal(10,2)"},
        {"name": "flag", "type": "boolean"},
        {"name": "ts", "type": "timestamp"},
        {"name": "day", "type": "date"},
        {"name": "qty", "type": "int"},
    ]
    result = _ok(handle_event(event(schema=schema)))
    rows = lake.read_catalog()
    assert rows[0] == {
        "id": 1,
        "customer": "alice",
        "amount": Decimal("12.50"),
        "flag": True,
        "ts": dt.datetime(2024, 1, 15, 10, 11, 12),
        "day": dt.date(2024, 1, 15),
        "qty": 7,
    }
    assert rows[1]["amount"] is None and rows[1]["qty"] is None
    table = clients.glue.get_table(DatabaseName="analytics", Name="sales")["Table"]
    assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == [
        ("id", "bigint"),
        ("customer", "string"),
        ("amount", "decimal(10,2)"),
        ("flag", "boolean"),
        ("ts", "timestamp"),
        ("day", "date"),
        ("qty", "int"),
    ]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["data_ref"]
    meta = pq.ParquetFile(lake.fs().open_input_file(f"{DST}/{result['file_keys'][0]}")).metadata
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    assert meta.row_group(0).column(0).statistics is not None


def test_header_delimiter_and_encoding(lake: Lake) -> None:
    body = "id;customer;amount\n1;José;2.5\n2;Zoë;3\n".encode("latin-1")
    lake.put(f"{KEY}.csv", body)
    _ok(handle_event(event(header=True, delimiter=";", encoding="latin-1")))
    assert [r["customer"] for r in lake.read_catalog()] == ["José", "Zoë"]


@pytest.mark.parametrize(
    ("body", "schema", "line", "detail"),
    [
        (b"1,a,1.0\n2,b,2.0\n3,c\n4,d,4.0\n", None, 3, "Expected 3 columns, got 2"),
        (b"1,a,1.0\n2,b,2.0,9\n", None, 2, "Expected 3 columns, got 4"),
        (b"1,a,1.0\n2,b,2.0\nx,c,3.0\n", "typed", 3, "column 'id': value 'x' does not fit type bigint"),
        (b"1,a,1.0\n2,b,2.0\n3,c,abc\n", "typed", 3, "column 'amount': value 'abc' does not fit type double"),
        (b"1,a,1.0\n2,\xff\xfe,2.0\n", None, 2, "column 'customer': is not valid UTF-8"),
    ],
)
def test_bad_rows_name_the_line(lake: Lake, body: bytes, schema: str | None, line: int, detail: str) -> None:
    lake.put(f"{KEY}.csv", body)
    typed = [
        {"name": "id", "type": "bigint"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
    ]
    out = handle_event(event(schema=typed if schema else None) if schema else event())
    assert out["statusCode"] == 500
    assert out["body"].startswith("Error: read: s3://src-bucket/exports/20240115/sales.csv: ")
    assert f"line {line}: " in out["body"]
    assert detail in out["body"]
    assert lake.day_keys() == []  # nothing written or left behind


def test_bad_row_deep_in_a_large_gz_names_its_line(lake: Lake, clients: AwsClients) -> None:
    good = csv_rows(300_000)
    lake.put(f"{KEY}.csv.gz", gz(good + b"300000,z,not-a-number\n" + csv_rows(10, start=300_001)))
    typed = [
        {"name": "id", "type": "bigint"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
    ]
    out = handle_event(event(schema=typed), clients, tuning=Tuning(block_size=1 << 20))
    assert "line 300001: column 'amount': value 'not-a-number' does not fit type double" in out["body"]


def test_transform_hook(lake: Lake, clients: AwsClients) -> None:
    lake.put(f"{KEY}.csv", csv_rows(20))  # amount = i * 1.5 -> rows 7..19 have amount >= 10
    result = _ok(handle_event(event(transform="s3_parquet_assets_tests.transforms:big_spenders")))
    rows = lake.read_catalog()
    assert result["rows"] == 13
    assert {r["id"] for r in rows} == {str(i) for i in range(7, 20)}
    assert all(r["customer_uc"] == r["customer"].upper() for r in rows)
    cols = clients.glue.get_table(DatabaseName="analytics", Name="sales")["Table"]["StorageDescriptor"][
        "Columns"
    ]
    assert [c["Name"] for c in cols] == ["id", "customer", "amount", "customer_uc"]


def test_transform_errors_are_clear(lake: Lake) -> None:
    lake.put(f"{KEY}.csv", csv_rows(3))
    out = handle_event(event(transform="s3_parquet_assets_tests.transforms:not_a_frame"))
    assert out["statusCode"] == 500 and "transform returned list, not a pandas DataFrame" in out["body"]
    out = handle_event(event(transform="no_such_module_xyz:fn"))
    assert out["body"].startswith(
        "Error: validate: field 'transform': cannot import module 'no_such_module_xyz'"
    )


def test_extra_partition_columns(lake: Lake, clients: AwsClients) -> None:
    lake.put(f"{KEY}.csv", b"1,north,2.0\n2,south,3.0\n3,north,4.0\n4,a/b=c,5.0\n")
    schema = [
        {"name": "id", "type": "bigint"},
        {"name": "region", "type": "string"},
        {"name": "amount", "type": "double"},
    ]
    result = _ok(handle_event(event(schema=schema, partitions_cols=["data_ref", "region"])))
    assert result["files"] == 3
    parts = clients.glue.get_partitions(DatabaseName="analytics", TableName="sales")["Partitions"]
    got = {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for p in parts}
    assert set(got) == {("20240115", "north"), ("20240115", "south"), ("20240115", "a/b=c")}
    assert got[("20240115", "a/b=c")].endswith("/region=a%2Fb%3Dc/")
    north = lake.read_location(got[("20240115", "north")])
    assert [r["id"] for r in north] == [1, 3]
    assert "region" not in north[0]  # partition columns live in the path, as Hive expects


def test_files_roll_and_all_of_them_are_registered(lake: Lake, clients: AwsClients) -> None:
    lake.put(f"{KEY}.csv", csv_rows(30_000))
    # tiny row groups and files: every row group finishes a file, completed in the background
    tuning = Tuning(block_size=64 * 1024, row_group_rows=5_000, file_bytes=1)
    result = run_load(parse_event(event()), clients, tuning=tuning)
    assert result.rows == 30_000
    assert result.files >= 3
    names = [k.rsplit("/", 1)[1] for k in result.file_keys]
    assert names == [f"part-{i:05d}.snappy.parquet" for i in range(result.files)]
    assert len({k.rsplit("/", 1)[0] for k in result.file_keys}) == 1  # one load folder
    assert sorted(int(r["id"]) for r in lake.read_catalog()) == list(range(30_000))


class _CountingSource(io.RawIOBase):
    """An in-memory export that counts the bytes the reader has pulled from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self.pulled = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.pulled += len(chunk)
        return chunk


@pytest.mark.parametrize("ahead", [MIN_READ_AHEAD_BLOCKS, 4])
def test_reads_stay_within_the_read_ahead_of_the_batches_taken(ahead: int) -> None:
    # a slow consumer (the encoder) gives the parser's reads every chance to run ahead: without the
    # bound they pull the whole 40-block export before the second batch is taken
    block = 64 * 1024
    data = csv_rows(150_000)
    src = _CountingSource(data)
    ev = parse_event(event())
    rows = 0
    for taken, batch in enumerate(
        iter_batches(lambda: src, ev, "mem://sales.csv", block_size=block, read_ahead_blocks=ahead), 1
    ):
        time.sleep(0.005)
        # one read may be under way when the gate opens: ahead blocks past the taken ones, plus that one
        assert src.pulled <= (taken + ahead + 1) * block, (taken, src.pulled // block)
        rows += batch.num_rows
    assert rows == 150_000
    assert src.pulled == len(data) > 40 * block


def test_read_ahead_below_one_block_past_the_parser_is_refused() -> None:
    with pytest.raises(ValueError, match="read_ahead_blocks must be at least 2, not 1"):
        Tuning(read_ahead_blocks=1)
    with pytest.raises(ValueError, match="read_ahead_blocks must be at least 2, not 1"):
        next(
            iter_batches(lambda: io.BytesIO(b"1,a,2\n"), parse_event(event()), "mem://x", read_ahead_blocks=1)
        )
