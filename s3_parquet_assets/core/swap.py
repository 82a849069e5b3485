"""The catalog side of a load, once its files are written and verified: the table brought up to date
(catalog step), the day's partition(s) moved to the new version in one call (swap step), and the
lease checked again before anything old is removed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from . import catalog
from .aws import AwsClients
from .deadline import Deadline
from .errors import LoadError
from .event import PARTITION_KEY, LoadEvent
from .header import Layout
from .lease import DayLease
from .reader import glue_type_of
from .source import SourceObject
from .stage import step
from .writer import WrittenFile

# Glue partition parameters the loader records (who loaded the day, from what).
PARAM_SOURCE_KEY = "s3pa.source"
PARAM_SOURCE_ETAG = "s3pa.source_etag"
PARAM_LOAD_ID = "s3pa.load_id"
PARAM_ROWS = "s3pa.rows"

__all__ = [
    "PARAM_LOAD_ID",
    "PARAM_ROWS",
    "PARAM_SOURCE_ETAG",
    "PARAM_SOURCE_KEY",
    "Registered",
    "flip_day",
    "register_table",
    "still_ours",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    """What the catalog step found and settled: the stored columns' Glue types, and the day's
    partitions registered before the flip (values -> location)."""

    columns_types: dict[str, str]
    old: dict[tuple[str, ...], str]

    @property
    def previous_location(self) -> str | None:
        """Where the day was served from before the flip (several folders joined, ``None``: nowhere)."""
        previous = sorted(set(self.old.values()))
        return previous[0] if len(previous) == 1 else (", ".join(previous) or None)


@step("catalog")
def register_table(
    clients: AwsClients,
    ev: LoadEvent,
    *,
    table_def: dict[str, Any] | None,
    layout: Layout,
    rows_schema: pa.Schema,
    transformed: bool,
    limit: Deadline,
) -> Registered:
    """Create the table or add the columns it lacks (``rows_schema``: the rows as written, partition
    columns included), and read the day's partitions as they are now. Types come from the schema as
    declared, or from the rows a transform produced."""
    limit.check("catalog", "before the catalog step", ev.data_ref)
    stored = [f for f in rows_schema if f.name not in ev.extra_partitions]
    declared_types = {c.name: c.glue_type for c in layout.columns}
    if transformed:
        columns_types = {f.name: glue_type_of(f.type) for f in stored}
    else:
        columns_types = {f.name: declared_types[f.name] for f in stored}
    partitions_types = {PARTITION_KEY: "string"}
    for col in ev.extra_partitions:
        partitions_types[col] = (
            glue_type_of(rows_schema.field(col).type) if transformed else declared_types[col]
        )
    if not catalog.table_is_current(table_def, columns_types):
        catalog.upsert_table(
            clients.session,
            ev.database,
            ev.table,
            f"s3://{ev.bucket_dstn}/{ev.table_root}/",
            columns_types,
            partitions_types,
            config=clients.config,
        )
    old = catalog.day_partitions(clients.glue, ev.database, ev.table, ev.data_ref)
    return Registered(columns_types=columns_types, old=old)


@step("swap")
def flip_day(
    clients: AwsClients,
    ev: LoadEvent,
    *,
    lease: DayLease,
    files: list[WrittenFile],
    src: SourceObject,
    load_id: str,
    registered: Registered,
    limit: Deadline,
) -> None:
    """Move the day's partition(s) to the new files' folders in one step, recording where they came
    from (``PARAM_*``). Only while the lease is still held: a load never flips without it."""
    limit.check("swap", "before the swap", ev.data_ref)
    lease.check()
    new: dict[tuple[str, ...], str] = {}
    params: dict[tuple[str, ...], dict[str, str]] = {}
    for f in files:
        folder = f.key.rsplit("/", 1)[0] + "/"
        values = (ev.data_ref, *f.values)
        new[values] = f"s3://{ev.bucket_dstn}/{folder}"
        params[values] = {
            PARAM_SOURCE_KEY: src.uri,
            PARAM_SOURCE_ETAG: src.etag,
            PARAM_LOAD_ID: load_id,
            PARAM_ROWS: str(f.rows),
        }
    catalog.flip_partitions(
        clients.session,
        clients.glue,
        ev.database,
        ev.table,
        new,
        registered.old,
        registered.columns_types,
        params,
    )


@step("lock")
def still_ours(lease: DayLease) -> None:
    """After the flip, before the cleanup: a load that stalled past its lease may meet a newer load's
    version, registered and served, which its cleanup would delete. Then the cleanup is left to the
    next load."""
    try:
        lease.check()
    except LoadError as exc:
        raise LoadError(
            "lock", f"{exc.message}; the day was swapped, but its cleanup is left to the next load"
        ) from exc
