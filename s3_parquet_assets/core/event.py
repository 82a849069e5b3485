"""The event contract: the JSON object a load is started with, parsed and validated.

The fields, their defaults and their rules are the contract's (:data:`.contract.FIELDS`); this module
applies them to one event and adds the rules that tie fields together. Every field is checked here,
before any AWS call, and a bad one raises ``LoadError("validate", ...)`` naming the field and the rule
it breaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .contract import (
    GLUE_TYPES,
    PARTITION_KEY,
    Column,
    FieldError,
    event_fields,
    validate_bucket,
    validate_glue_name,
)
from .errors import LoadError

__all__ = [
    "GLUE_TYPES",
    "PARTITION_KEY",
    "Column",
    "LoadEvent",
    "parse_event",
    "validate_bucket",
    "validate_glue_name",
    "yesterday",
]


@dataclass(frozen=True)
class LoadEvent:
    """A validated load request. Build it with :func:`parse_event`."""

    bucket_src: str
    bucket_dstn: str
    substr: str
    schema: tuple[Column, ...]
    infer_types: bool
    pathoutput: str
    table: str
    database: str
    data_ref: str
    partitions_cols: tuple[str, ...]
    prefix: str
    delimiter: str
    quotechar: str
    encoding: str
    header: bool
    extra_columns: str
    missing_columns: str
    zip_member: str | None
    transform: str | None
    allow_empty: bool
    sse: str
    kms_key_id: str | None
    expected_bucket_owner: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def typed(self) -> bool:
        return any(c.type is not None for c in self.schema)

    @property
    def source_prefix(self) -> str:
        """The listing prefix with ``{data_ref}`` replaced by the day."""
        return self.prefix.replace("{data_ref}", self.data_ref)

    @property
    def table_root(self) -> str:
        """``pathoutput`` without slashes at either end: the table's key prefix in the destination."""
        return self.pathoutput.strip("/")

    @property
    def day_prefix(self) -> str:
        """Key prefix of the day's partition: ``{pathoutput}/data_ref={data_ref}/``."""
        return f"{self.table_root}/{PARTITION_KEY}={self.data_ref}/"

    @property
    def extra_partitions(self) -> tuple[str, ...]:
        """Partition columns below ``data_ref`` (taken from the data)."""
        return self.partitions_cols[1:]

    @property
    def data_columns(self) -> tuple[Column, ...]:
        """Declared columns that are stored in the Parquet files (partition columns are in the path)."""
        return tuple(c for c in self.schema if c.name not in self.extra_partitions)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-able dict with every default filled in (what was actually run)."""
        out: dict[str, Any] = {}
        for f in event_fields():
            value = getattr(self, f.name)
            if f.name == "schema":
                value = [_column_dict(c) if c.type else c.name for c in self.schema]
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[f.name] = value
        return out


def _column_dict(col: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"name": col.name, "type": col.type}
    if col.source is not None:
        out["source"] = col.source
    return out


def yesterday(now: datetime | None = None) -> str:
    """Yesterday in UTC as ``YYYYMMDD`` (the default ``data_ref``)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment.astimezone(UTC) - timedelta(days=1)).strftime("%Y%m%d")


def _absent(value: Any, required: bool) -> bool:
    return value is None or (required and value == "")


def _related(values: dict[str, Any]) -> None:
    """The rules that tie fields together."""
    schema: tuple[Column, ...] = values["schema"]
    partitions: tuple[str, ...] = values["partitions_cols"]
    names = {c.name for c in schema}
    for extra in partitions[1:]:
        if extra not in names:
            raise FieldError("partitions_cols", f"{extra!r} is not a column of the schema")
    if len(partitions) == len(schema) + 1:
        raise FieldError("partitions_cols", "leaves no data column outside the partition columns")
    if values["infer_types"] and any(c.type is not None for c in schema):
        raise FieldError("infer_types", "applies to a names-only schema; this schema already gives types")
    if values["delimiter"] == values["quotechar"]:
        raise FieldError("quotechar", "must differ from the delimiter")
    if values["kms_key_id"] and values["sse"] != "aws:kms":
        raise FieldError("kms_key_id", "is only allowed with sse 'aws:kms'")
    _header_only(values)


def _header_only(values: dict[str, Any]) -> None:
    """Settings about the header's columns mean nothing without a header: refuse them, not ignore them."""
    if values["header"]:
        return
    for name, default in (("extra_columns", "fail"), ("missing_columns", "fail")):
        if values[name] != default:
            raise FieldError(name, f"{values[name]!r} only applies to an export with a header (header: true)")
    for i, col in enumerate(values["schema"]):
        if col.source is not None:
            raise FieldError(f"schema[{i}].source", "names a header column; it needs header: true")


def parse_event(event: Mapping[str, Any], *, now: datetime | None = None) -> LoadEvent:
    """Validate a raw event (a JSON object) into a :class:`LoadEvent`.

    Parameters
    ----------
    event
        The event as decoded JSON.
    now
        The moment "yesterday" is counted from when ``data_ref`` is absent (default: now, UTC).

    Raises
    ------
    LoadError
        Stage ``validate``, naming the field and the rule (a :class:`~.contract.FieldError`).
    """
    if not isinstance(event, Mapping):
        raise LoadError("validate", f"the event must be a JSON object, got {type(event).__name__}")
    fields = event_fields()
    allowed = sorted(f.name for f in fields)
    unknown = sorted(set(event) - set(allowed))
    if unknown:
        raise LoadError("validate", f"unknown field(s) {unknown}; allowed fields: {', '.join(allowed)}")
    for f in fields:
        if f.required and _absent(event.get(f.name), True):
            raise FieldError(f.name, "is required")
    values: dict[str, Any] = {}
    for f in fields:
        raw = event.get(f.name)
        values[f.name] = f.default if _absent(raw, f.name == PARTITION_KEY) else f.check(raw, f.name)
    if values[PARTITION_KEY] is None:
        values[PARTITION_KEY] = yesterday(now)
    _related(values)
    return LoadEvent(**values, raw=dict(event))
