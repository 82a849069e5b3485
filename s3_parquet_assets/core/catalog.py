"""Glue catalog: the table definition and the day's partitions (awswrangler's catalog API, plus Glue's
UpdatePartition for the atomic location flip that awswrangler does not offer)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import LoadError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_glue import GlueClient

__all__ = [
    "check_added_columns",
    "day_partitions",
    "ensure_database",
    "flip_partitions",
    "partition_state",
    "table_is_current",
    "upsert_table",
]

log = logging.getLogger(__name__)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_database(glue: GlueClient, database: str) -> None:
    """Fail with a clear message when the Glue database does not exist (it is never created here)."""
    try:
        glue.get_database(Name=database)
    except ClientError as exc:
        if _code(exc) == "EntityNotFoundException":
            raise LoadError("catalog", f"Glue database {database!r} does not exist; create it first") from exc
        raise LoadError("catalog", f"cannot read Glue database {database!r}: {_code(exc) or exc}") from exc


def _table(glue: GlueClient, database: str, table: str) -> dict[str, Any] | None:
    try:
        return dict(glue.get_table(DatabaseName=database, Name=table)["Table"])
    except ClientError as exc:
        if _code(exc) == "EntityNotFoundException":
            return None
        raise LoadError("catalog", f"cannot read Glue table {database}.{table}: {_code(exc) or exc}") from exc


def check_table(
    glue: GlueClient,
    database: str,
    table: str,
    partition_cols: tuple[str, ...],
    columns_types: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Fail early (before reading anything) if an existing table is partitioned differently, or declares
    a column with another type. New columns are fine: they are added to the table. Returns the table
    definition (``None``: no table yet)."""
    found = _table(glue, database, table)
    if found is None:
        return None
    keys = [k["Name"] for k in found.get("PartitionKeys", [])]
    if keys != list(partition_cols):
        raise LoadError(
            "catalog",
            f"Glue table {database}.{table} is partitioned by {keys}, "
            f"but this load uses {list(partition_cols)}",
        )
    existing = {c["Name"]: c.get("Type", "") for c in found.get("StorageDescriptor", {}).get("Columns", [])}
    for name, glue_type in (columns_types or {}).items():
        old = existing.get(name)
        if old is not None and old.replace(" ", "").lower() != glue_type.replace(" ", "").lower():
            raise LoadError(
                "catalog",
                f"column {name!r} is {old} in Glue table {database}.{table}, "
                f"but the schema declares {glue_type}",
            )
    return found


def check_added_columns(
    found: Mapping[str, Any] | None, database: str, table: str, names: tuple[str, ...], source: str
) -> None:
    """Before anything is written: columns ``extra_columns: add`` adds as ``string`` must not be in the
    table with another type. They are added to the table definition with the day's other columns, so
    days loaded before them read them as null."""
    columns = (found or {}).get("StorageDescriptor", {}).get("Columns", [])
    existing = {c["Name"]: str(c.get("Type", "")).replace(" ", "").lower() for c in columns}
    clash = {name: existing[name] for name in names if existing.get(name, "string") != "string"}
    if clash:
        raise LoadError(
            "catalog",
            f"{source}: Glue table {database}.{table} has column(s) {clash}: extra_columns: add cannot add "
            "them as string; declare them in the schema with their type",
        )


def table_is_current(found: Mapping[str, Any] | None, columns_types: Mapping[str, str]) -> bool:
    """Whether an existing table definition already holds every column with its type (then there is
    nothing to create or add, and the catalog step needs no table write)."""
    if found is None:
        return False
    existing = {
        c["Name"]: str(c.get("Type", "")).replace(" ", "").lower()
        for c in found.get("StorageDescriptor", {}).get("Columns", [])
    }
    return all(existing.get(n) == t.replace(" ", "").lower() for n, t in columns_types.items())


def _wrangler(config: Config | None) -> Any:
    """awswrangler, set to make its clients with the loader's botocore config (it builds its own clients
    from the session, by default with its own retry policy)."""
    import awswrangler as wr

    if config is not None:
        wr.config.botocore_config = config
    return wr


def upsert_table(
    session: boto3.Session,
    database: str,
    table: str,
    location: str,
    columns_types: Mapping[str, str],
    partitions_types: Mapping[str, str],
    config: Config | None = None,
) -> None:
    """Create the Parquet table, or add new columns to it (existing partitions are kept)."""
    wr = _wrangler(config)

    try:
        wr.catalog.create_parquet_table(
            database=database,
            table=table,
            path=location,
            columns_types=dict(columns_types),
            partitions_types=dict(partitions_types),
            compression="snappy",
            mode="append",
            boto3_session=session,
        )
    except ClientError as exc:
        raise LoadError("catalog", f"cannot create or update Glue table {database}.{table}: {exc}") from exc
    except wr.exceptions.InvalidArgumentValue as exc:
        raise LoadError("catalog", f"Glue table {database}.{table}: {exc}") from exc


def _day_partitions(glue: GlueClient, database: str, table: str, data_ref: str) -> list[dict[str, Any]]:
    """The registered partitions of one day, as Glue returns them."""
    out: list[dict[str, Any]] = []
    try:
        pages = glue.get_paginator("get_partitions").paginate(
            DatabaseName=database, TableName=table, Expression=f"data_ref = '{data_ref}'"
        )
        for page in pages:
            out += [dict(p) for p in page.get("Partitions", []) if p["Values"] and p["Values"][0] == data_ref]
    except ClientError as exc:
        if _code(exc) == "EntityNotFoundException":
            return []
        raise LoadError(
            "catalog", f"cannot read partitions of {database}.{table}: {_code(exc) or exc}"
        ) from exc
    return out


def day_partitions(glue: GlueClient, database: str, table: str, data_ref: str) -> dict[tuple[str, ...], str]:
    """The registered partitions of one day: values -> location."""
    return {
        tuple(part["Values"]): part.get("StorageDescriptor", {}).get("Location", "")
        for part in _day_partitions(glue, database, table, data_ref)
    }


def day_parameters(glue: GlueClient, database: str, table: str, data_ref: str) -> list[dict[str, str]]:
    """The parameters of each registered partition of one day (one per value of the extra partition
    columns; none when the day or the table is absent)."""
    return [dict(part.get("Parameters", {})) for part in _day_partitions(glue, database, table, data_ref)]


def partition_state(
    glue: GlueClient, database: str, table: str, values: list[str]
) -> tuple[str, dict[str, str]] | None:
    """A registered partition's location and parameters, or ``None`` if it (or the table) is absent."""
    try:
        part = glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=values)["Partition"]
    except ClientError as exc:
        if _code(exc) == "EntityNotFoundException":
            return None
        raise LoadError("catalog", f"cannot read partition {values} of {database}.{table}: {exc}") from exc
    return part.get("StorageDescriptor", {}).get("Location", ""), dict(part.get("Parameters", {}))


def flip_partitions(
    session: boto3.Session,
    glue: GlueClient,
    database: str,
    table: str,
    new: Mapping[tuple[str, ...], str],
    old: Mapping[tuple[str, ...], str],
    columns_types: Mapping[str, str],
    parameters: Mapping[tuple[str, ...], Mapping[str, str]] | None = None,
) -> None:
    """Point the day's partitions at the new locations.

    A partition that exists is moved with one UpdatePartition (atomic for readers); a new one is added
    with awswrangler; one the new load no longer has is removed. ``parameters`` (per partition) are
    stored on the partition: the loader records the source object and load id there.
    """

    def move(values: tuple[str, ...], location: str, params: dict[str, str]) -> None:
        current = glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=list(values))
        part = current["Partition"]
        sd: dict[str, Any] = dict(part["StorageDescriptor"])
        sd["Location"] = location
        sd["Columns"] = [{"Name": n, "Type": t} for n, t in columns_types.items()]  # type: ignore[typeddict-item]
        glue.update_partition(
            DatabaseName=database,
            TableName=table,
            PartitionValueList=list(values),
            PartitionInput={
                "Values": list(values),
                "StorageDescriptor": sd,  # type: ignore[typeddict-item]
                "Parameters": {**part.get("Parameters", {}), **params},
            },
        )

    try:
        for values, location in new.items():
            params = dict((parameters or {}).get(values, {}))
            if values in old:
                move(values, location, params)
            else:
                wr = _wrangler(glue.meta.config)
                wr.catalog.add_parquet_partitions(
                    database=database,
                    table=table,
                    partitions_values={location: list(values)},
                    compression="snappy",
                    columns_types=dict(columns_types),
                    partitions_parameters=params or None,
                    boto3_session=session,
                )
                # awswrangler ignores AlreadyExists: if someone (a crawler, MSCK REPAIR) registered the
                # partition since we looked, it still points elsewhere; move it like an existing one.
                state = partition_state(glue, database, table, list(values))
                if state is None or state[0] != location:
                    move(values, location, params)
            log.info("partition %s of %s.%s -> %s", "/".join(values), database, table, location)
        gone = [list(v) for v in old if v not in new]
        for start in range(0, len(gone), 25):
            glue.batch_delete_partition(
                DatabaseName=database,
                TableName=table,
                PartitionsToDelete=[{"Values": v} for v in gone[start : start + 25]],
            )
    except ClientError as exc:
        raise LoadError("swap", f"cannot move the partitions of {database}.{table}: {exc}") from exc
