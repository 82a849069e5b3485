"""The Dagster names of one declared table: asset keys, op, job, schedule and sensor names.

- the Parquet table: ``[<database>, <table>]`` (what downstream assets and dbt sources reference);
- its source objects: ``["s3_source", <name>]`` (unique per table, names the table's export);
- op ``load_<name>``, job ``<name>_job``, schedule ``<name>_daily``, sensor ``<name>_new_exports``
  (a ``-`` in the table's name becomes ``_``: Dagster names are ``[A-Za-z0-9_]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dagster import AssetKey, AssetSpec, DagsterInvalidDefinitionError

from s3_parquet_assets.core import LoadError, TableSpec

__all__ = ["SOURCE_PREFIX", "TableKeys", "check_dagster_fields", "check_unique_names"]

SOURCE_PREFIX = "s3_source"


@dataclass(frozen=True)
class TableKeys:
    spec: TableSpec

    @property
    def ident(self) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", self.spec.name)

    @property
    def table(self) -> AssetKey:
        ev = self.spec.probe
        return AssetKey([ev.database, ev.table])

    @property
    def source(self) -> AssetKey:
        return AssetKey([SOURCE_PREFIX, self.spec.name])

    @property
    def op(self) -> str:
        return f"load_{self.ident}"

    @property
    def job(self) -> str:
        return f"{self.ident}_job"

    @property
    def schedule(self) -> str:
        return f"{self.ident}_daily"

    @property
    def sensor(self) -> str:
        return f"{self.ident}_new_exports"


def check_unique_names(keys: Iterable[TableKeys], source: str) -> None:
    """Two table names that differ only by ``-``/``_`` would give one Dagster name: refuse them."""
    seen: dict[str, str] = {}
    for k in keys:
        other = seen.setdefault(k.ident, k.spec.name)
        if other != k.spec.name:
            raise LoadError(
                "validate",
                f"tables file {source}: tables[{k.spec.name}].name: gives the Dagster name {k.ident!r}, "
                f"as tables[{other}] does (rename one)",
            )


def check_dagster_fields(spec: TableSpec, source: str) -> None:
    """Dagster's own rules for the fields the contract leaves open (owners: emails or ``team:``
    names; tags: Dagster's tag characters), refused with the table and the field named."""
    for field_name, kwargs in (
        ("owners", {"owners": list(spec.owners)}),
        ("tags", {"tags": dict(spec.tags)}),
    ):
        try:
            AssetSpec("probe", **kwargs)  # type: ignore[arg-type]
        except DagsterInvalidDefinitionError as exc:
            message = str(exc).replace(" for asset 'AssetKey(['probe'])'", "")
            raise LoadError(
                "validate", f"tables file {source}: tables[{spec.name}].{field_name}: {message}"
            ) from None
