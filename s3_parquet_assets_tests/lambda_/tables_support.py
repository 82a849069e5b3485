"""Helpers of the Lambda's many-table tests: the events, a fourth table whose source overlaps
``sales``, and the rows a table holds for a day (every partition of the day, typed values as text)."""

from __future__ import annotations

from typing import Any

from ..helpers import DB, SRC, Lake
from ..three_tables import TABLES_YAML

# A fourth table reading the same exports as ``sales`` into a table of its own.
FOUR_TABLES_YAML = (
    TABLES_YAML
    + """\
  - name: sales_copy
    prefix: "sales/{data_ref}/"
    substr: sales_
    schema: [id, customer, amount]
    pathoutput: lake/sales_copy
    table: sales_copy
"""
)


def scheduled_for(table: str | None, time: str) -> dict[str, Any]:
    """The event the SAM template's per-table rule sends (InputTransformer): the EventBridge
    Scheduled Event shape plus a top-level ``table``."""
    out: dict[str, Any] = {"source": "aws.events", "detail-type": "Scheduled Event", "time": time}
    if table is not None:
        out["table"] = table
    return out


def object_created(key: str, bucket: str = SRC) -> dict[str, Any]:
    """An EventBridge "Object Created" event."""
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2024-01-17T00:00:00Z",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}},
    }


def _text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return sorted(({k: str(v) for k, v in r.items()} for r in rows), key=lambda r: sorted(r.items()))


def day_rows(lake: Lake, table: str, day: str) -> list[dict[str, str]]:
    """The rows of every Glue partition of ``day`` (extra partition columns from the partition
    values), values as text, in a fixed order."""
    glue = lake.clients.glue
    keys = [k["Name"] for k in glue.get_table(DatabaseName=DB, Name=table)["Table"]["PartitionKeys"]]
    rows: list[dict[str, Any]] = []
    for part in glue.get_partitions(DatabaseName=DB, TableName=table)["Partitions"]:
        values = dict(zip(keys, part["Values"], strict=True))
        if values.pop("data_ref") == day:
            rows += [{**r, **values} for r in lake.read_location(part["StorageDescriptor"]["Location"])]
    return _text(rows)


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Expected rows (as :func:`three_tables.stage_day` returns them) in :func:`day_rows`' form."""
    return _text(rows)


def glue_tables(lake: Lake) -> list[str]:
    return sorted(t["Name"] for t in lake.clients.glue.get_tables(DatabaseName=DB)["TableList"])


def days_of(response: dict[str, Any]) -> list[str]:
    """The days a response loaded (one per load, in order)."""
    return [str(r["data_ref"]) for r in response["results"]]
