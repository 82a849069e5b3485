"""What type each column of a load is read as.

A typed schema says it. A names-only schema (the original Lambda's events) means:

- the Glue table exists: the table's column types are the contract (each column is read as the
  table's type, so a load continues a table the original Lambda built); a name the table lacks is a
  ``catalog`` error naming it;
- no table yet and ``infer_types``: the types are inferred from the export's first block, as pandas
  would type it (:func:`infer_columns`), and a later value that does not fit fails the load;
- no table yet otherwise: every column is text.

Each resolved type carries where it came from (``origin``), so an error about a value names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .contract import Column
from .errors import LoadError
from .event import LoadEvent
from .reader import arrow_type

__all__ = ["INFERRED", "ColumnPlan", "infer_columns", "plan_columns", "table_types"]

INFERRED = "inferred from the export's first block"

# pandas reads these as booleans (and a column of only these as bool).
_TRUE = ("True", "TRUE", "true")
_FALSE = ("False", "FALSE", "false")


# What both pandas and pyarrow's CSV reader take as a missing value in a typed column ("", "NA", "n/a",
# "null", "NaN"...): a missing value, not text, when inferring. Built on first use: ``pa.array`` of a
# list imports pandas (its cost: ``benchmarks/README.md``, "Memory"), which a load needs only for a transform
# or a new table's registration.
def _missing() -> pa.Array:
    return pa.array(pacsv.ConvertOptions().null_values, pa.string())


@dataclass(frozen=True)
class ColumnPlan:
    """How a load types its columns: ``event`` (its schema typed when the table or the event says so),
    ``infer`` (types still to be inferred from the first block) and ``origin`` (column -> where its
    type came from, for error messages; empty for a typed schema)."""

    event: LoadEvent
    infer: bool = False
    origin: Mapping[str, str] = field(default_factory=dict)


def table_types(found: Mapping[str, Any]) -> dict[str, str]:
    """A Glue table's columns and partition keys: name -> type (lowercase, no spaces)."""
    sd = found.get("StorageDescriptor", {})
    cols = [*sd.get("Columns", []), *found.get("PartitionKeys", [])]
    return {str(c["Name"]): str(c.get("Type", "")).replace(" ", "").lower() for c in cols}


def plan_columns(ev: LoadEvent, found: Mapping[str, Any] | None) -> ColumnPlan:
    """Resolve the column types of a load from the event and the Glue table (``None``: no table).

    Raises
    ------
    LoadError
        Stage ``catalog``: the schema names columns the existing table lacks, or the table holds a
        type the loader cannot read.
    """
    if ev.typed or ev.transform is not None:
        return ColumnPlan(ev, infer=ev.infer_types and not ev.typed)
    if found is None:
        return ColumnPlan(ev, infer=ev.infer_types)
    where = f"Glue table {ev.database}.{ev.table}"
    types = table_types(found)
    lacking = [c.name for c in ev.schema if c.name not in types]
    if lacking:
        raise LoadError(
            "catalog",
            f"{where} has no column(s) {lacking}; a names-only schema takes each column's type from the "
            f"table (its columns: {sorted(types)}): add them to the table, or give the schema types",
        )
    columns: list[Column] = []
    for c in ev.schema:
        try:
            arrow_type(types[c.name])
        except ValueError:
            raise LoadError(
                "catalog", f"column {c.name!r} of {where} is {types[c.name]}, a type the loader cannot read"
            ) from None
        columns.append(Column(c.name, types[c.name]))
    origin = {c.name: f"its type in {where}" for c in columns}
    return ColumnPlan(replace(ev, schema=tuple(columns)), origin=origin)


def infer_columns(ev: LoadEvent, first: pa.RecordBatch | None) -> ColumnPlan:
    """Type a names-only schema from the first block of the export (read as text), as pandas would:
    whole numbers are ``bigint`` (``double`` if a value is missing), numbers ``double``, True/False
    ``boolean`` (``string`` if a value is missing), ISO 8601 dates and times ``timestamp``, anything
    else ``string``. Missing means empty or one of pandas' and pyarrow's null markers (``NA``,
    ``n/a``, ``null``...). A column missing throughout the block is ``string`` (pandas: double)."""
    columns = tuple(
        Column(c.name, "string" if first is None else _infer(first.column(c.name))) for c in ev.schema
    )
    return ColumnPlan(
        replace(ev, schema=columns, infer_types=False), origin={c.name: INFERRED for c in ev.schema}
    )


def _fits(values: pa.Array, target: pa.DataType) -> bool:
    try:
        pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _infer(values: pa.Array) -> str:
    text = pc.cast(values, pa.string())
    given = pc.filter(text, pc.invert(pc.is_in(text, _missing())))
    missing = len(text) - len(given) > 0
    if len(given) == 0:
        return "string"
    if _fits(given, arrow_type("bigint")):
        return "double" if missing else "bigint"
    if _fits(given, arrow_type("double")):
        return "double"
    if pc.all(pc.is_in(given, pa.array(_TRUE + _FALSE))).as_py():
        return "string" if missing else "boolean"
    if _fits(given, arrow_type("timestamp")):
        return "timestamp"
    return "string"
