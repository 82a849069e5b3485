"""Fixtures of the Dagster-layer tests (the moto server and the lake come from the parent conftest)."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetsDefinition, DagsterInstance, Definitions, ExecuteInProcessResult, materialize
from dagster_aws.s3 import S3Resource

from s3_parquet_assets.defs.assets import build_load_assets
from s3_parquet_assets.defs.definitions import build_definitions
from s3_parquet_assets.defs.partitions import daily_partitions
from s3_parquet_assets.defs.resources import LoadSettings

from ..helpers import event

START = "20240101"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def settings(extra: dict[str, Any] | None = None, **overrides: Any) -> LoadSettings:
    """LoadSettings from the test event (``overrides``) plus non-event fields (``extra``)."""
    return LoadSettings.from_event(event(**overrides), **(extra or {}))


@pytest.fixture
def load_settings(aws: str) -> LoadSettings:
    return settings()


@pytest.fixture
def s3_resource(aws: str) -> S3Resource:
    return S3Resource(region_name="us-east-1")


@pytest.fixture
def load_assets() -> AssetsDefinition:
    return build_load_assets(daily_partitions(START))


@pytest.fixture
def instance() -> DagsterInstance:
    return DagsterInstance.ephemeral()


@pytest.fixture
def defs(load_settings: LoadSettings, s3_resource: S3Resource) -> Definitions:
    return build_definitions(start_date=START, load_settings=load_settings, s3=s3_resource)


class Runner:
    """materialize() of the load assets against the emulator, on one instance (so history is kept)."""

    def __init__(self, assets: AssetsDefinition, instance: DagsterInstance, s3: S3Resource, ls: LoadSettings):
        self.assets, self.instance, self.s3, self.settings = assets, instance, s3, ls

    def run(
        self,
        first: str,
        last: str | None = None,
        *,
        force: bool = False,
        selection: Any = None,
        load_settings: LoadSettings | None = None,
        raise_on_error: bool = False,
    ) -> ExecuteInProcessResult:
        # tags rather than partition_key: a check-only selection has no asset to validate the key with
        tags = {RANGE_START: first, RANGE_END: last} if last else {"dagster/partition": first}
        return materialize(
            [self.assets],
            instance=self.instance,
            resources={"s3": self.s3, "load_settings": load_settings or self.settings},
            tags=tags,
            run_config={"ops": {"load_days": {"config": {"force": force}}}},
            selection=selection,
            raise_on_error=raise_on_error,
        )


@pytest.fixture
def runner(
    load_assets: AssetsDefinition,
    instance: DagsterInstance,
    s3_resource: S3Resource,
    load_settings: LoadSettings,
) -> Runner:
    return Runner(load_assets, instance, s3_resource, load_settings)
