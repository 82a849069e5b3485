"""Fixtures of the Lambda tests: the built and unpacked packages (without a tables file, and with the
three-table file bundled), the layer-only Python, settings."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from s3_parquet_assets import lambda_handler

from ..helpers import DB, DST, PATHOUT, SRC, TABLE
from ..three_tables import write_tables_file
from .packaged import (
    OLD_BOTOCORE,
    PackagedLambda,
    base_env,
    ensure_layer_envs,
    layer_site,
    layer_venv,
    unpack,
)

ROOT = Path(__file__).resolve().parents[2]

# The function's settings as the template sets them (scheduled and S3 events).
SETTINGS_ENV = {
    "S3PA_BUCKET_SRC": SRC,
    "S3PA_BUCKET_DSTN": DST,
    "S3PA_PREFIX": "exports/{data_ref}/",
    "S3PA_SUBSTR": "sales",
    "S3PA_SCHEMA": '["id", "customer", "amount"]',
    "S3PA_PATHOUTPUT": PATHOUT,
    "S3PA_TABLE": TABLE,
    "S3PA_DATABASE": DB,
}


def load_build_zip() -> ModuleType:
    spec = importlib.util.spec_from_file_location("s3pa_build_zip", ROOT / "deploy" / "build_zip.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_zip() -> ModuleType:
    return load_build_zip()


@pytest.fixture(scope="session")
def lambda_zip(build_zip: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out: Path = build_zip.build(tmp_path_factory.mktemp("zip") / "s3_parquet_assets_lambda.zip")
    return out


@pytest.fixture(scope="session")
def code_dir(lambda_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(lambda_zip, tmp_path_factory.mktemp("task") / "var-task")


@pytest.fixture(scope="session")
def tables_zip(build_zip: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built with ``--tables``: the three-table file bundled as ``s3pa_tables.yaml``."""
    tables = write_tables_file(tmp_path_factory.mktemp("tables"))
    out: Path = build_zip.build(tmp_path_factory.mktemp("zip") / "tables_lambda.zip", tables=tables)
    return out


@pytest.fixture(scope="session")
def tables_code_dir(tables_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(tables_zip, tmp_path_factory.mktemp("task") / "var-task")


@pytest.fixture(scope="session")
def layer_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only what the AWS SDK for pandas layer and the Lambda runtime hold, at their
    versions (deploy/layer-requirements.txt; made once per session)."""
    ensure_layer_envs()
    return layer_venv(tmp_path_factory.getbasetemp() / "layer-venv", [layer_site()])


@pytest.fixture(scope="session")
def old_botocore_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer venv with a runtime whose botocore is too old for the function
    (deploy/old-botocore-requirements.txt laid over it)."""
    ensure_layer_envs()
    return layer_venv(tmp_path_factory.getbasetemp() / "old-botocore-venv", [OLD_BOTOCORE, layer_site()])


@pytest.fixture
def packaged(aws: str, layer_python: Path, code_dir: Path, tmp_path: Path) -> PackagedLambda:
    """The packaged handler, against the emulator, with the settings of SETTINGS_ENV."""
    return PackagedLambda(
        python=layer_python,
        code_dir=code_dir,
        workdir=tmp_path,
        env={**base_env(aws, tmp_path), **SETTINGS_ENV},
    )


@pytest.fixture
def packaged_tables(aws: str, layer_python: Path, tables_code_dir: Path, tmp_path: Path) -> PackagedLambda:
    """The packaged handler with the three-table file bundled, no table settings in the environment."""
    return PackagedLambda(
        python=layer_python, code_dir=tables_code_dir, workdir=tmp_path, env=base_env(aws, tmp_path)
    )


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch, aws: str) -> Iterator[None]:
    """In-process handler tests: the settings in os.environ, a fresh client cache."""
    for var in [v for v in list(__import__("os").environ) if v.startswith("S3PA_")]:
        monkeypatch.delenv(var)
    for var, value in SETTINGS_ENV.items():
        monkeypatch.setenv(var, value)
    lambda_handler.reset_clients()
    lambda_handler.reset_tables()
    yield
    lambda_handler.reset_clients()
    lambda_handler.reset_tables()
