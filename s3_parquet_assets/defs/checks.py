"""Asset checks on each table asset, evaluated per day from what readers actually see.

Every check starts from the Glue catalog (the day's registered partitions), lists the Parquet files at
the registered locations and reads only their footers (ranged GETs of the tail), never the data:

- ``row_count``: the rows in the footers equal the rows the load counted from the source (recorded
  on the partition as ``s3pa.rows`` and in the materialization), and are > 0 unless ``allow_empty``;
- ``schema_matches``: every file's Parquet schema equals the declared schema (names, order, types);
- ``partition_registered``: the day's Glue partition exists and points at the location this load
  wrote (the ``load-<id>`` folder), which holds Parquet files from that same load.

The checks are declared on the load op (``check_specs``) so a multi-day run reports them per day; run
alone (check selection only) they use the location of the day's latest materialization.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from dagster import AssetCheckSpec, AssetKey, PartitionsDefinition, PreviewWarning

from s3_parquet_assets.core import AwsClients, LoadEvent
from s3_parquet_assets.core.pipeline import PARAM_LOAD_ID, PARAM_ROWS
from s3_parquet_assets.core.reader import arrow_type
from s3_parquet_assets.core.s3io import S3SeekableReader

__all__ = [
    "CHECK_NAMES",
    "PARTITION_REGISTERED",
    "ROW_COUNT",
    "SCHEMA_MATCHES",
    "CheckOutcome",
    "DayState",
    "check_specs",
    "evaluate_checks",
    "inspect_day",
]

ROW_COUNT = "row_count"
SCHEMA_MATCHES = "schema_matches"
PARTITION_REGISTERED = "partition_registered"
CHECK_NAMES = (ROW_COUNT, SCHEMA_MATCHES, PARTITION_REGISTERED)

_DESCRIPTIONS = {
    ROW_COUNT: "Rows in the Parquet footers equal the source's data rows (and > 0 unless allow_empty).",
    SCHEMA_MATCHES: "The Parquet schema of every file equals the declared schema.",
    PARTITION_REGISTERED: "The Glue partition is registered and points at the location this load wrote.",
}


def check_specs(asset: AssetKey, partitions_def: PartitionsDefinition[str]) -> list[AssetCheckSpec]:
    """The checks, partitioned like the asset (a "preview" feature of Dagster, hence the filter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            AssetCheckSpec(name, asset=asset, description=_DESCRIPTIONS[name], partitions_def=partitions_def)
            for name in CHECK_NAMES
        ]


@dataclass
class ParquetFile:
    uri: str
    rows: int
    schema: pa.Schema


@dataclass
class Partition:
    values: list[str]
    location: str
    parameters: dict[str, str]
    files: list[ParquetFile] = field(default_factory=list)


@dataclass
class DayState:
    """The day as the catalog shows it, with the footers of the files it points at."""

    day: str
    partitions: list[Partition]
    glue_columns: dict[str, str]
    error: str | None = None

    @property
    def files(self) -> list[ParquetFile]:
        return [f for p in self.partitions for f in p.files]

    @property
    def footer_rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any]


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _extra(ev: LoadEvent) -> dict[str, Any]:
    return {"ExpectedBucketOwner": ev.expected_bucket_owner} if ev.expected_bucket_owner else {}


def inspect_day(clients: AwsClients, ev: LoadEvent) -> DayState:
    """Read the day's registered partitions and the footers of the Parquet files at their locations."""
    parts: list[Partition] = []
    glue_columns: dict[str, str] = {}
    try:
        pages = clients.glue.get_paginator("get_partitions").paginate(
            DatabaseName=ev.database, TableName=ev.table, Expression=f"data_ref = '{ev.data_ref}'"
        )
        for gpage in pages:
            for gpart in gpage.get("Partitions", []):
                values = list(gpart["Values"])
                if not values or values[0] != ev.data_ref:
                    continue
                sd = gpart.get("StorageDescriptor", {})
                glue_columns = {c["Name"]: c.get("Type", "string") for c in sd.get("Columns", [])}
                parts.append(Partition(values, sd.get("Location", ""), dict(gpart.get("Parameters", {}))))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code != "EntityNotFoundException":
            return DayState(ev.data_ref, [], {}, error=f"cannot read the Glue partitions: {code or exc}")
    for part in parts:
        bucket, prefix = _split(part.location)
        if not prefix.endswith("/"):
            prefix += "/"
        try:
            for listing in clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, **_extra(ev)
            ):
                for obj in listing.get("Contents", []):
                    key = obj["Key"]
                    if not key.endswith(".parquet"):
                        continue
                    with S3SeekableReader(
                        clients.s3, bucket, key, size=int(obj["Size"]), extra=_extra(ev)
                    ) as raw:
                        meta = pq.read_metadata(raw)
                    part.files.append(
                        ParquetFile(f"s3://{bucket}/{key}", meta.num_rows, meta.schema.to_arrow_schema())
                    )
        except (ClientError, OSError, pa.ArrowException) as exc:
            return DayState(ev.data_ref, parts, glue_columns, error=f"cannot read {part.location}: {exc}")
    return DayState(ev.data_ref, parts, glue_columns)


def _declared(ev: LoadEvent, state: DayState) -> pa.Schema:
    if ev.transform is None and ev.typed:
        columns = [(c.name, c.type) for c in ev.data_columns]
    elif ev.transform is None:  # names only: the types are the table's (continued, inferred or text)
        columns = [(c.name, state.glue_columns.get(c.name, "string")) for c in ev.data_columns]
    else:  # a transform decides the columns; the table definition records them
        columns = [(n, t) for n, t in state.glue_columns.items() if n not in ev.partitions_cols]
    return pa.schema([pa.field(n, arrow_type(t)) for n, t in columns])


def _with_added(ev: LoadEvent, state: DayState, declared: pa.Schema, found: pa.Schema) -> pa.Schema:
    """``declared``, followed by the columns ``extra_columns: add`` appended to this file: header
    columns the schema does not declare, which the load added to the Glue table as string."""
    if ev.extra_columns != "add":
        return declared
    added = {n for n in state.glue_columns if n not in declared.names and n not in ev.partitions_cols}
    tail = found.names[len(declared) :]
    if not tail or not set(tail) <= added:
        return declared
    return pa.schema([*declared, *(pa.field(n, pa.string()) for n in tail)])


def _normal(t: pa.DataType) -> pa.DataType:
    return pa.string() if pa.types.is_large_string(t) else t


def _schema_diff(expected: pa.Schema, found: pa.Schema) -> list[str]:
    diffs: list[str] = []
    exp = [(f.name, _normal(f.type)) for f in expected]
    got = [(f.name, _normal(f.type)) for f in found]
    if [n for n, _ in exp] != [n for n, _ in got]:
        diffs.append(f"columns {[n for n, _ in got]} != declared {[n for n, _ in exp]}")
    types = dict(got)
    for name, t in exp:
        if name in types and types[name] != t:
            diffs.append(f"{name}: {types[name]} != declared {t}")
    return diffs


def evaluate_checks(
    ev: LoadEvent,
    state: DayState,
    *,
    names: Iterable[str] = CHECK_NAMES,
    expected_location: str | None = None,
    expected_rows: int | None = None,
    expected_load_id: str | None = None,
) -> list[CheckOutcome]:
    """Evaluate the named checks for one day from ``state`` (see :func:`inspect_day`).

    ``expected_*`` come from the load just done (or the day's latest materialization); when absent
    the partition's own record (``s3pa.rows``, ``s3pa.load_id``) is what the files are checked against.
    """
    out: list[CheckOutcome] = []
    locations = sorted({p.location for p in state.partitions})
    base: dict[str, Any] = {"data_ref": ev.data_ref, "registered_locations": ", ".join(locations) or "-"}
    for name in names:
        if state.error:
            out.append(CheckOutcome(name, False, state.error, dict(base)))
        elif name == ROW_COUNT:
            out.append(_row_count(ev, state, expected_rows, base))
        elif name == SCHEMA_MATCHES:
            out.append(_schema(ev, state, base))
        elif name == PARTITION_REGISTERED:
            out.append(_registered(state, expected_location, expected_load_id, base))
    return out


def _row_count(ev: LoadEvent, state: DayState, expected: int | None, base: Mapping[str, Any]) -> CheckOutcome:
    footer = state.footer_rows
    recorded_values = [p.parameters.get(PARAM_ROWS) for p in state.partitions]
    recorded = (
        sum(int(v) for v in recorded_values if v is not None)
        if state.partitions and all(v is not None for v in recorded_values)
        else None
    )
    source_rows = expected if expected is not None else recorded
    meta = {**base, "footer_rows": footer, "source_rows": source_rows if source_rows is not None else -1}
    meta["files"] = len(state.files)
    if not state.partitions:
        return CheckOutcome(ROW_COUNT, False, f"day {ev.data_ref} has no Glue partition", meta)
    problems: list[str] = []
    if source_rows is None:
        problems.append("the partition does not record the source's row count (s3pa.rows)")
    elif footer != source_rows:
        problems.append(f"the Parquet footers hold {footer} rows, the source had {source_rows}")
    if recorded is not None and expected is not None and recorded != expected:
        problems.append(f"the partition records {recorded} rows, the load counted {expected}")
    if footer == 0 and not ev.allow_empty:
        problems.append("the day is empty")
    if problems:
        return CheckOutcome(ROW_COUNT, False, "; ".join(problems), meta)
    return CheckOutcome(ROW_COUNT, True, f"{footer} rows, as in the source", meta)


def _schema(ev: LoadEvent, state: DayState, base: Mapping[str, Any]) -> CheckOutcome:
    declared = _declared(ev, state)
    meta = {**base, "declared": ", ".join(f"{f.name}:{f.type}" for f in declared)}
    if not state.files:
        return CheckOutcome(SCHEMA_MATCHES, False, "no Parquet file at the registered location", meta)
    problems: list[str] = []
    for f in state.files:
        diffs = _schema_diff(_with_added(ev, state, declared, f.schema), f.schema)
        if diffs:
            problems.append(f"{f.uri}: {'; '.join(diffs)}")
    meta["parquet"] = ", ".join(f"{fld.name}:{fld.type}" for fld in state.files[0].schema)
    if problems:
        return CheckOutcome(SCHEMA_MATCHES, False, " | ".join(problems[:5]), meta)
    return CheckOutcome(SCHEMA_MATCHES, True, f"{len(state.files)} file(s) match the declared schema", meta)


def _registered(
    state: DayState, expected_location: str | None, expected_load_id: str | None, base: Mapping[str, Any]
) -> CheckOutcome:
    meta = {**base, "expected_location": expected_location or "-"}
    if not state.partitions:
        return CheckOutcome(PARTITION_REGISTERED, False, f"day {state.day} has no Glue partition", meta)
    problems: list[str] = []
    for p in state.partitions:
        load_id = p.parameters.get(PARAM_LOAD_ID)
        where = "/".join(p.values)
        if expected_location is not None and not p.location.startswith(expected_location):
            problems.append(f"partition {where} points at {p.location}, the load wrote {expected_location}")
        if expected_load_id is not None and load_id != expected_load_id:
            problems.append(f"partition {where} was loaded by {load_id}, expected {expected_load_id}")
        if load_id and f"/load-{load_id}/" not in p.location:
            problems.append(f"partition {where} points at {p.location}, not at its load-{load_id} folder")
        if not p.files:
            problems.append(f"no Parquet file under {p.location}")
    if problems:
        return CheckOutcome(PARTITION_REGISTERED, False, "; ".join(problems[:5]), meta)
    return CheckOutcome(
        PARTITION_REGISTERED,
        True,
        f"registered at {', '.join(sorted({p.location for p in state.partitions}))}",
        meta,
    )
