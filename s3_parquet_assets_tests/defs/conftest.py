"""Fixtures of the Dagster-layer tests (the moto server and the lake come from the parent conftest).

The definitions are built the way ``dg`` builds them: the component from a ``defs.yaml`` pointing at
the three-table file of :mod:`..three_tables`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetsDefinition,
    ComponentTree,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    materialize,
)

from s3_parquet_assets.core import TableSpec, parse_tables
from s3_parquet_assets.defs.component import S3ParquetTables
from s3_parquet_assets.defs.keys import TableKeys

from ..three_tables import TABLES_YAML, write_tables_file

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def component_defs(tables_file: Path, **attributes: Any) -> Definitions:
    """Definitions of the component configured with ``tables_file`` (as a defs.yaml would)."""
    component = S3ParquetTables(tables_file=str(tables_file), **attributes)
    context = ComponentTree.for_test().load_context
    return component.build_defs(context)


@pytest.fixture
def tables_file(tmp_path: Path) -> Path:
    return write_tables_file(tmp_path)


@pytest.fixture
def defs(tables_file: Path, aws: str) -> Definitions:
    return component_defs(tables_file)


@pytest.fixture
def instance() -> DagsterInstance:
    return DagsterInstance.ephemeral()


def spec(name: str, text: str = TABLES_YAML, **overrides: Any) -> TableSpec:
    """One table of the three-table file, with ``overrides`` applied to its entry."""
    import yaml

    doc = yaml.safe_load(text)
    for entry in doc["tables"]:
        if entry["name"] == name:
            entry.update(overrides)
    return parse_tables(doc, "test").get(name)


class Runner:
    """materialize() of one table's assets against the emulator, on one instance (history is kept)."""

    def __init__(self, defs: Definitions, instance: DagsterInstance) -> None:
        self.defs, self.instance = defs, instance

    def assets(self, table: AssetKey) -> AssetsDefinition:
        """The table's assets as the definitions hold them (with the ``s3`` resource bound)."""
        return self.defs.resolve_assets_def(table)

    def run(
        self,
        table: AssetKey,
        first: str,
        last: str | None = None,
        *,
        force: bool = False,
        selection: Any = None,
        raise_on_error: bool = False,
    ) -> ExecuteInProcessResult:
        assets = self.assets(table)
        # tags rather than partition_key: a check-only selection has no asset to validate the key with
        tags = {RANGE_START: first, RANGE_END: last} if last else {"dagster/partition": first}
        return materialize(
            [assets],
            instance=self.instance,
            tags=tags,
            run_config={"ops": {assets.op.name: {"config": {"force": force}}}},
            selection=selection,
            raise_on_error=raise_on_error,
        )


@pytest.fixture
def runner(defs: Definitions, instance: DagsterInstance) -> Runner:
    return Runner(defs, instance)


def keys(name: str) -> TableKeys:
    return TableKeys(spec(name))
