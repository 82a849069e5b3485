"""Switching over from the original Lambda: the same events continue a table it built.

The live table is built by the original's algorithm (``original_lambda.py``: pandas types the columns
of a names-only schema and awswrangler registers ``id bigint, amount double, flag boolean`` in Glue);
then this project's loader, given the very same event, loads the next days, typed as the table says.
Also: ``infer_types`` for a new table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from s3_parquet_assets.core import Tuning, handle_event, parse_event
from s3_parquet_assets.core.reader import arrow_type
from s3_parquet_assets.core.schema import infer_columns

from .. import original_lambda
from ..conftest import ROOT
from ..helpers import DB, DST, PATHOUT, SRC, TABLE, Lake

NAMES = ["id", "ts", "customer", "amount", "flag"]
# The original's event: a literal prefix (it knows no {data_ref}) and partitions_cols (it requires them).
EVENT: dict[str, Any] = {
    "bucket_src": SRC,
    "bucket_dstn": DST,
    "prefix": "exports/",
    "substr": "sales",
    "schema": NAMES,
    "pathoutput": PATHOUT,
    "table": TABLE,
    "database": DB,
    "partitions_cols": ["data_ref"],
}
DAY1, DAY2, DAY3 = "20240115", "20240116", "20240117"
GLUE_TYPES = {"id": "bigint", "ts": "string", "customer": "string", "amount": "double", "flag": "boolean"}


def export(day: str, n: int, start: int = 0) -> bytes:
    return "".join(
        f"{i},{day[:4]}-{day[4:6]}-{day[6:]} {i % 24:02d}:00:00,cust{i % 5},{i * 2.5},{'true' if i % 2 else 'false'}\n"
        for i in range(start, start + n)
    ).encode()


def put_export(lake: Lake, day: str, body: bytes) -> None:
    time.sleep(1.1)  # newer than the previous export by S3's whole-second LastModified
    lake.put(f"exports/{day}/sales.csv", body)


def original(day: str) -> None:
    out = original_lambda.lambda_handler({**EVENT, "data_ref": day}, None)
    assert out == {"statusCode": 200, "body": "Success"}, out


def cli_load(event: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    exe = shutil.which("s3-parquet-assets", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "s3_parquet_assets.cli"]
    proc = subprocess.run(
        [*cmd, "load", "--event", json.dumps(event)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def glue_columns(lake: Lake) -> dict[str, str]:
    table = lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]
    return {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}


def catalog_read(lake: Lake) -> pa.Table:
    """What a catalog reader (Athena) gets for the whole table: every registered partition's files,
    read with the column types the Glue table declares (a file that disagrees fails the read)."""
    schema = pa.schema([(n, arrow_type(t)) for n, t in glue_columns(lake).items()])
    parts = lake.clients.glue.get_partitions(DatabaseName=DB, TableName=TABLE)["Partitions"]
    pieces = []
    for part in sorted(parts, key=lambda p: p["Values"]):
        location = part["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
        table = ds.dataset(
            location, filesystem=lake.fs(), format="parquet", schema=schema, partitioning=None
        ).to_table()
        pieces.append(table.append_column("data_ref", pa.array([part["Values"][0]] * len(table))))
    return pa.concat_tables(pieces)


def file_schemas(lake: Lake, day: str) -> list[pa.Schema]:
    part = lake.partition(day)
    assert part is not None
    prefix = part["StorageDescriptor"]["Location"].removeprefix(f"s3://{DST}/")
    fs = lake.fs()
    return [
        pq.read_schema(f"{DST}/{key}", filesystem=fs) for key in lake.keys(prefix) if key.endswith(".parquet")
    ]


def expected_rows(day: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return [
        {
            "id": i,
            "ts": f"{iso} {i % 24:02d}:00:00",
            "customer": f"cust{i % 5}",
            "amount": i * 2.5,
            "flag": bool(i % 2),
            "data_ref": day,
        }
        for i in range(start, start + n)
    ]


def test_the_same_event_continues_a_table_the_original_built(lake: Lake) -> None:
    lake.put(f"exports/{DAY1}/sales.csv", export(DAY1, 30))
    original(DAY1)
    put_export(lake, DAY2, export(DAY2, 20, start=100))
    original(DAY2)
    assert glue_columns(lake) == GLUE_TYPES  # what pandas + awswrangler registered
    original_day2 = lake.day_keys(DAY2)
    assert original_day2 and all("load-" not in k for k in original_day2)  # uuid-named, flat

    # day 2 again, then day 3: the very same event, through the console script
    code, out, err = cli_load({**EVENT, "data_ref": DAY2})
    assert code == 0, err
    assert out["statusCode"] == 200, out
    put_export(lake, DAY3, export(DAY3, 25, start=200))
    code, out3, err = cli_load({**EVENT, "data_ref": DAY3})
    assert code == 0, err
    assert out3["result"]["rows"] == 25

    assert glue_columns(lake) == GLUE_TYPES  # the table's types are the contract, unchanged
    # the original's files of day 2 are replaced by one load folder; day 1 is still the original's
    assert not set(original_day2) & set(lake.day_keys(DAY2))
    assert {k.split("/")[3] for k in lake.day_keys(DAY2)} == {f"load-{out['result']['load_id']}"}
    for day in (DAY2, DAY3):
        for schema in file_schemas(lake, day):
            assert {f.name: f.type for f in schema} == {n: arrow_type(t) for n, t in GLUE_TYPES.items()}
    # a catalog read of the original's day and ours together: one typed table
    table = catalog_read(lake)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("flag").type == pa.bool_()
    rows = sorted(table.to_pylist(), key=lambda r: (r["data_ref"], r["id"]))
    assert rows == expected_rows(DAY1, 30) + expected_rows(DAY2, 20, 100) + expected_rows(DAY3, 25, 200)


def test_a_value_that_does_not_fit_the_tables_type_names_line_and_column(lake: Lake) -> None:
    lake.put(f"exports/{DAY1}/sales.csv", export(DAY1, 10))
    original(DAY1)
    before = lake.keys()
    bad = export(DAY2, 5) + b"5,2024-01-16 05:00:00,cust0,abc,true\n" + export(DAY2, 3, start=6)
    put_export(lake, DAY2, bad)

    code, out, _err = cli_load({**EVENT, "data_ref": DAY2})

    assert code == 1
    assert out["body"] == (
        f"Error: read: s3://{SRC}/exports/{DAY2}/sales.csv: line 6: column 'amount': value 'abc' does "
        f"not fit type double (its type in Glue table {DB}.{TABLE})"
    )
    assert lake.keys() == before
    assert lake.partition(DAY2) is None


def test_names_the_table_lacks_and_contradicting_types_are_catalog_errors(lake: Lake) -> None:
    lake.put(f"exports/{DAY1}/sales.csv", export(DAY1, 10))
    original(DAY1)
    put_export(lake, DAY2, b"1,x,y,1.0,true,eu,7\n")
    before = lake.keys()

    lacking = handle_event({**EVENT, "data_ref": DAY2, "schema": [*NAMES, "region", "qty"]})
    typed = [{"name": n, "type": "string" if n == "amount" else t} for n, t in GLUE_TYPES.items()]
    contradicting = handle_event({**EVENT, "data_ref": DAY2, "schema": typed})

    assert lacking["stage"] == "catalog"
    assert lacking["body"].startswith(
        f"Error: catalog: Glue table {DB}.{TABLE} has no column(s) ['region', 'qty']; a names-only schema "
        "takes each column's type from the table"
    )
    assert contradicting["body"] == (
        f"Error: catalog: column 'amount' is double in Glue table {DB}.{TABLE}, but the schema declares string"
    )
    assert lake.keys() == before
    assert lake.keys(f"{PATHOUT}/_leases/") == []


SMALL_BLOCKS = Tuning(block_size=64 * 1024, row_group_rows=5_000)


def typed_export(n: int, bad_at: int | None = None) -> bytes:
    lines = []
    for i in range(n):
        amount = "abc" if i == bad_at else f"{i * 0.5}"
        lines.append(
            f"{i},2024-01-15 {i % 24:02d}:{i % 60:02d}:00,c{i % 9},{amount},{'True' if i % 3 else 'False'}\n"
        )
    return "".join(lines).encode()


def test_infer_types_types_a_new_table_from_the_first_block(lake: Lake) -> None:
    n = 20_000  # about 12 blocks of 64 KiB: later blocks are read with the inferred types
    lake.put(f"exports/{DAY1}/sales.csv", typed_export(n))

    out = handle_event({**EVENT, "data_ref": DAY1, "infer_types": True}, tuning=SMALL_BLOCKS)

    assert out["statusCode"] == 200, out
    assert glue_columns(lake) == {
        "id": "bigint",
        "ts": "timestamp",
        "customer": "string",
        "amount": "double",
        "flag": "boolean",
    }
    rows = sorted(lake.read_catalog(DAY1), key=lambda r: r["id"])
    assert len(rows) == n
    assert rows[7] == {
        "id": 7,
        "ts": datetime(2024, 1, 15, 7, 7),
        "customer": "c7",
        "amount": 3.5,
        "flag": True,
    }
    assert rows[-1]["id"] == n - 1


def test_infer_types_fails_a_later_value_naming_line_column_and_inferred_type(lake: Lake) -> None:
    lake.put(f"exports/{DAY1}/sales.csv", typed_export(20_000, bad_at=15_000))

    out = handle_event({**EVENT, "data_ref": DAY1, "infer_types": True}, tuning=SMALL_BLOCKS)

    assert out["body"] == (
        f"Error: read: s3://{SRC}/exports/{DAY1}/sales.csv: line 15001: column 'amount': value 'abc' does "
        "not fit type double (inferred from the export's first block)"
    )
    assert lake.keys() == []  # nothing written, no lease left
    assert lake.clients.glue.get_tables(DatabaseName=DB)["TableList"] == []


def test_a_names_only_schema_for_a_new_table_is_text_without_infer_types(lake: Lake) -> None:
    lake.put(f"exports/{DAY1}/sales.csv", typed_export(10))
    out = handle_event({**EVENT, "data_ref": DAY1})
    assert out["statusCode"] == 200, out
    assert glue_columns(lake) == dict.fromkeys(NAMES, "string")


@pytest.mark.parametrize(
    ("values", "inferred"),
    [
        (["1", "22", "-3"], "bigint"),
        (["1", "", "3"], "double"),  # pandas: a missing whole number makes the column float
        (["1", "NA", "n/a", "null"], "double"),  # missing markers, as pandas and pyarrow read them
        (["1.5", "2", "1e3", ""], "double"),
        (["True", "false", "TRUE"], "boolean"),
        (["True", ""], "string"),  # pandas: a missing boolean makes the column object
        (["2024-01-15 10:00:00", "2024-01-15T11:30:00.5", ""], "timestamp"),
        (["2024-01-15T10:00:00Z"], "string"),  # zoned: not a naive timestamp
        (["", ""], "string"),
        (["NA", "x"], "string"),
        (["1", "x"], "string"),
        (["0", "1"], "bigint"),
    ],
)
def test_inference_rules(values: list[str], inferred: str) -> None:
    ev = parse_event({**EVENT, "schema": ["c"], "infer_types": True})
    plan = infer_columns(ev, pa.record_batch({"c": pa.array(values)}))
    assert [(c.name, c.type) for c in plan.event.schema] == [("c", inferred)]


def test_infer_types_needs_a_names_only_schema() -> None:
    with pytest.raises(Exception, match="infer_types"):
        parse_event({**EVENT, "schema": [{"name": "id", "type": "bigint"}], "infer_types": True})


def test_infer_types_follows_a_reordered_header_by_name(lake: Lake) -> None:
    """The file's header lists the columns in another order (and one more): each declared column is
    typed from its own values, found by name, and the table keeps the schema's order."""
    n = 20_000
    lines = ["flag,amount,note,id,customer,ts\n"]
    for i in range(n):
        lines.append(
            f"{'True' if i % 3 else 'False'},{i * 0.5},n{i},{i},c{i % 9},2024-01-15 {i % 24:02d}:{i % 60:02d}:00\n"
        )
    lake.put(f"exports/{DAY1}/sales.csv", "".join(lines).encode())

    out = handle_event(
        {**EVENT, "data_ref": DAY1, "infer_types": True, "header": True, "extra_columns": "ignore"},
        tuning=SMALL_BLOCKS,
    )

    assert out["statusCode"] == 200, out
    assert list(glue_columns(lake).items()) == [
        ("id", "bigint"),
        ("ts", "timestamp"),
        ("customer", "string"),
        ("amount", "double"),
        ("flag", "boolean"),
    ]
    assert out["result"]["ignored_columns"] == ["note"]
    rows = sorted(lake.read_catalog(DAY1), key=lambda r: r["id"])
    assert len(rows) == n
    assert rows[7] == {
        "id": 7,
        "ts": datetime(2024, 1, 15, 7, 7),
        "customer": "c7",
        "amount": 3.5,
        "flag": True,
    }
