"""Definitions from the component: three tables of one tables file, as ``dg`` and ``dagster`` load them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    ComponentTree,
    Definitions,
    TableColumn,
    TableSchema,
    partition_loading_context,
)

from s3_parquet_assets.core import LoadError, parse_tables, read_tables
from s3_parquet_assets.defs import definitions
from s3_parquet_assets.defs.component import TABLES_ENV, tables_location
from s3_parquet_assets.demo_data import DEMO_DATABASE, DEMO_DST, DEMO_SRC, tables_yaml

from ..helpers import Lake
from ..three_tables import NAMES, TABLES_YAML, write_tables_file
from .conftest import component_defs

ROOT = Path(__file__).resolve().parents[2]
DEFS_FOLDER = Path(definitions.__file__).parent
STARTS = {"sales": "20240101", "customers": "20240105", "stock": "20231201"}
CRONS = {"sales": "0 6 * * *", "customers": "30 6 * * *", "stock": "0 7 * * *"}
CHECKS = {"row_count", "schema_matches", "partition_registered"}


def _asset_keys(defs: Definitions) -> set[str]:
    repo = defs.get_repository_def()
    return {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}


def test_three_tables_give_keys_partitions_checks_and_automation(defs: Definitions) -> None:
    Definitions.validate_loadable(defs)
    assert _asset_keys(defs) == {f"analytics/{n}" for n in NAMES} | {f"s3_source/{n}" for n in NAMES}
    repo = defs.get_repository_def()
    checks = {(k.asset_key.to_user_string(), k.name) for k in repo.asset_graph.asset_check_keys}
    assert checks == {(f"analytics/{n}", c) for n in NAMES for c in CHECKS}
    with partition_loading_context(effective_dt=datetime(2024, 3, 1, 0, 5, tzinfo=UTC)):
        for name, start in STARTS.items():
            assets = defs.resolve_assets_def(AssetKey(["analytics", name]))
            parts = assets.partitions_def
            assert parts is not None
            assert parts.get_first_partition_key() == start
            assert parts.get_last_partition_key() == "20240229"  # yesterday: the newest complete day
            assert not parts.has_partition_key("20240301")
            assert assets.keys == {AssetKey(["analytics", name]), AssetKey(["s3_source", name])}
            assert assets.backfill_policy is not None and assets.backfill_policy.max_partitions_per_run == 10
            job = repo.get_job(f"{name}_job")
            assert job.partitions_def == parts
            schedule = defs.resolve_schedule_def(f"{name}_daily")
            assert schedule.cron_schedule == CRONS[name] and schedule.execution_timezone == "UTC"
            assert schedule.job_name == f"{name}_job"
            sensor = defs.resolve_sensor_def(f"{name}_new_exports")
            assert sensor.job_name == f"{name}_job"
    # each table's automation is its own definition: one can be stopped without the others
    assert len({s.name for s in repo.schedule_defs}) == len({s.name for s in repo.sensor_defs}) == 3


def test_definition_metadata_shown_by_the_ui(defs: Definitions) -> None:
    sales = defs.resolve_assets_def(AssetKey(["analytics", "sales"]))
    spec = next(s for s in sales.specs if s.key == AssetKey(["analytics", "sales"]))
    assert spec.metadata["dagster/table_name"] == "analytics.sales"
    assert spec.metadata["dagster/column_schema"] == TableSchema(
        columns=[
            TableColumn("id", "string"),
            TableColumn("customer", "string"),
            TableColumn("amount", "string"),
            TableColumn("data_ref", "string", description="partition column (the day, YYYYMMDD)"),
        ]
    )
    assert spec.owners == ["team:finance"]
    assert spec.tags["domain"] == "finance"
    assert spec.kinds == {"parquet", "glue"}
    assert spec.description is not None and spec.description.startswith("Daily sales lines")
    assert "Glue table analytics.sales" in spec.description
    assert spec.group_name == "analytics"
    source = next(s for s in sales.specs if s.key == AssetKey(["s3_source", "sales"]))
    assert source.kinds == {"s3", "csv"} and "sales/{data_ref}/" in (source.description or "")

    stock = defs.resolve_assets_def(AssetKey(["analytics", "stock"]))
    schema = stock.specs_by_key[AssetKey(["analytics", "stock"])].metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in schema.columns] == [
        ("sku", "string"),
        ("qty", "int"),
        ("price", "decimal(10,2)"),
        ("region", "string"),
        ("data_ref", "string"),
    ]
    assert schema.columns[3].description == "partition column"


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (("type: date", "type: datum"), "tables[customers].schema[2].type"),
        (('schedule: "07:00"', 'schedule: "7am"'), "tables[stock].schedule"),
        (("    substr: sales_\n", "    substr: sales_\n    colour: red\n"), "tables[sales].colour"),
        (("owners: [team:finance]", "owners: [finance]"), "tables[sales].owners"),
        (("tags: {domain: finance}", "tags: {domain: fin ance}"), "tables[sales].tags"),
    ],
)
def test_a_bad_tables_file_fails_loading_naming_table_and_field(
    tmp_path: Path, broken: tuple[str, str], where: str
) -> None:
    assert broken[0] in TABLES_YAML
    path = write_tables_file(tmp_path, TABLES_YAML.replace(*broken, 1))
    with pytest.raises(LoadError) as err:
        component_defs(path)
    assert f"tables file {path}: {where}: " in str(err.value)


def test_the_defs_folder_loads_the_bundled_tables_or_s3pa_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TABLES_ENV, raising=False)
    bundled = ComponentTree.for_project(DEFS_FOLDER).build_defs()
    assert _asset_keys(bundled) >= {f"demo_analytics/{n}" for n in NAMES}
    monkeypatch.setenv(TABLES_ENV, str(write_tables_file(tmp_path)))
    chosen = ComponentTree.for_project(DEFS_FOLDER).build_defs()
    assert {k for k in _asset_keys(chosen) if not k.startswith("s3_source/")} == {
        f"analytics/{n}" for n in NAMES
    }


def test_the_bundled_tables_file_is_the_demos_declaration() -> None:
    """defs/tables.yaml (what dg dev and make demo load) is demo_data's three tables, demo buckets."""
    import yaml

    bundled = read_tables(DEFS_FOLDER / "tables.yaml")
    demo = parse_tables(yaml.safe_load(tables_yaml(DEMO_SRC, DEMO_DST, DEMO_DATABASE)))
    assert [(t.name, dict(t.settings), t.start_date, t.schedule, t.catchup_days) for t in bundled] == [
        (t.name, dict(t.settings), t.start_date, t.schedule, t.catchup_days) for t in demo
    ]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3PA_")}
    env["DAGSTER_HOME"] = str(tmp_path)
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parents[1])
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        [str(Path(sys.executable).parent / args[0]), *args[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dg_check_defs_and_dagster_definitions_validate(tmp_path: Path) -> None:
    dg = _cli(tmp_path, "dg", "check", "defs")
    assert dg.returncode == 0, dg.stdout + dg.stderr
    assert "All definitions loaded successfully" in dg.stdout + dg.stderr
    validate = _cli(tmp_path, "dagster", "definitions", "validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "All code locations passed validation" in validate.stdout + validate.stderr
    listed = _cli(tmp_path, "dg", "list", "defs", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for name in NAMES:
        assert f'"demo_analytics/{name}"' in listed.stdout and f'"{name}_daily"' in listed.stdout


def test_tables_file_location_and_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lake: Lake
) -> None:
    assert tables_location("tables.yaml", Path("/defs"), {}) == "/defs/tables.yaml"  # next to defs.yaml
    assert tables_location("s3://b/t.yaml", Path("/defs"), {}) == "s3://b/t.yaml"
    assert tables_location("tables.yaml", Path("/defs"), {TABLES_ENV: "other.yaml"}) == "other.yaml"
    # an s3:// tables file (as the Lambda may read it), chosen through S3PA_TABLES
    lake.put("config/tables.yaml", TABLES_YAML.encode())
    monkeypatch.setenv(TABLES_ENV, "s3://src-bucket/config/tables.yaml")
    defs = component_defs(tmp_path / "ignored.yaml", days_per_run=3)
    assets = defs.resolve_assets_def(AssetKey(["analytics", "stock"]))
    assert assets.backfill_policy is not None and assets.backfill_policy.max_partitions_per_run == 3
    monkeypatch.setenv(TABLES_ENV, "s3://src-bucket/config/missing.yaml")
    with pytest.raises(LoadError) as err:
        component_defs(tmp_path / "ignored.yaml")
    assert "cannot read the tables file s3://src-bucket/config/missing.yaml" in str(err.value)
