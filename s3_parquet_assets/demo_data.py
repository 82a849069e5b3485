"""Three tables of different shapes, declared in one tables file, and their daily exports.

- ``sales``: headerless ``.csv.gz`` under a ``{data_ref}`` folder, names-only schema;
- ``customers``: a ``.zip`` holding a CSV with a header row and ``;`` delimiter, the day in the file
  name (``crm/customers_{data_ref}``), typed schema;
- ``stock``: a plain latin-1 CSV with a typed schema and an extra partition column ``region``.

``make demo`` / ``make dev`` stage a week of these into the emulator (the tables file they load is
``s3_parquet_assets/defs/tables.yaml``, this declaration with the demo's buckets); the tests stage the
same shapes (``s3_parquet_assets_tests/three_tables.py``).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable
from typing import Any

__all__ = ["DEMO_DATABASE", "DEMO_DST", "DEMO_SRC", "NAMES", "source_keys", "stage_day", "tables_yaml"]

NAMES = ("sales", "customers", "stock")
DEMO_SRC = "s3pa-demo-exports"
DEMO_DST = "s3pa-demo-lake"
DEMO_DATABASE = "demo_analytics"

Put = Callable[[str, bytes], None]


def tables_yaml(src: str, dst: str, database: str) -> str:
    """The three tables' declaration with the given source bucket, destination bucket and database."""
    return f"""\
# Three daily exports, one declaration (the Lambda, the CLI and Dagster read the same file).
defaults:
  bucket_src: {src}
  bucket_dstn: {dst}
  database: {database}
  catchup_days: 3
tables:
  - name: sales
    description: Daily sales lines, headerless gzip CSV.
    prefix: "sales/{{data_ref}}/"
    substr: sales_
    schema: [id, customer, amount]
    pathoutput: lake/sales
    table: sales
    start_date: "20240101"
    schedule: "06:00"
    owners: [team:finance]
    tags: {{domain: finance}}
  - name: customers
    description: Customer master, a zip with a header row and ';' delimiter.
    prefix: "crm/customers_{{data_ref}}"
    substr: customers_
    schema:
      - {{name: customer_id, type: bigint}}
      - {{name: name, type: string}}
      - {{name: signup, type: date}}
    delimiter: ";"
    header: true
    pathoutput: lake/customers
    table: customers
    start_date: "20240105"
    schedule: "06:30"
  - name: stock
    description: Stock per warehouse and region, latin-1, partitioned by region too.
    prefix: "stock/{{data_ref}}/"
    substr: stock
    schema:
      - {{name: sku, type: string}}
      - {{name: qty, type: int}}
      - {{name: price, type: "decimal(10,2)"}}
      - {{name: region, type: string}}
    encoding: latin-1
    partitions_cols: [data_ref, region]
    pathoutput: lake/stock
    table: stock
    start_date: "20231201"
    schedule: "07:00"
    catchup_days: 7
"""


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _sales(day: str, n: int) -> tuple[bytes, list[dict[str, Any]]]:
    rows = [{"id": str(i), "customer": f"C{i % 5}", "amount": f"{i * 2.5}"} for i in range(n)]
    text = "".join(f"{r['id']},{r['customer']},{r['amount']}\n" for r in rows)
    return _gz(text.encode()), rows


def _customers(day: str, n: int) -> tuple[bytes, list[dict[str, Any]]]:
    rows = [
        {"customer_id": 100 + i, "name": f"Name {i}", "signup": f"2023-0{1 + i % 9}-1{i % 10}"}
        for i in range(n)
    ]
    text = "customer_id;name;signup\n" + "".join(
        f"{r['customer_id']};{r['name']};{r['signup']}\n" for r in rows
    )
    return _zipped({f"customers_{day}.csv": text.encode()}), rows


def _stock(day: str, n: int) -> tuple[bytes, list[dict[str, Any]]]:
    regions = ("north", "süd")
    rows = [
        {"sku": f"SKU-{i:03d}-ü", "qty": i * 3, "price": f"{i}.{i % 100:02d}", "region": regions[i % 2]}
        for i in range(n)
    ]
    text = "".join(f"{r['sku']},{r['qty']},{r['price']},{r['region']}\n" for r in rows)
    return text.encode("latin-1"), rows


def stage_day(put: Put, day: str, rows: int = 6) -> dict[str, list[dict[str, Any]]]:
    """Put the three exports of ``day`` with ``put(key, body)`` (plus a smaller, older decoy for
    sales and an export without the substring) and return, per table, the rows the day must hold once
    loaded (as written in the export: text for names-only columns)."""
    out: dict[str, list[dict[str, Any]]] = {}
    decoy, _ = _sales(day, 1)
    put(f"sales/{day}/sales_{day}_partial.csv.gz", decoy)
    body, out["sales"] = _sales(day, rows)
    put(f"sales/{day}/sales_{day}.csv.gz", body)
    put(f"sales/{day}/other_{day}.csv.gz", decoy)  # no substring: never picked
    body, out["customers"] = _customers(day, rows)
    put(f"crm/customers_{day}.zip", body)
    body, out["stock"] = _stock(day, rows)
    put(f"stock/{day}/stock.csv", body)
    return out


def source_keys(day: str) -> dict[str, str]:
    """The key each table must pick for ``day``."""
    return {
        "sales": f"sales/{day}/sales_{day}.csv.gz",
        "customers": f"crm/customers_{day}.zip",
        "stock": f"stock/{day}/stock.csv",
    }
