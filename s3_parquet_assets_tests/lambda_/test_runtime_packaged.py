"""The packaged handler on what the Lambda function really runs on: the managed layer's pyarrow,
pandas, numpy and awswrangler with the runtime's boto3/botocore (deploy/layer-requirements.txt), the
versions it logs at cold start, and a runtime whose botocore is too old, which it refuses."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from ..helpers import DAY, DB, Lake, csv_rows, event
from .conftest import SETTINGS_ENV
from .packaged import (
    LAYER_REQUIREMENTS,
    OLD_BOTOCORE_REQUIREMENTS,
    PackagedLambda,
    base_env,
    imported_versions,
    pins,
)
from .test_packaged import s3_record, scheduled
from .test_pipes import pipes_params, tail_messages

LAYER = pins(LAYER_REQUIREMENTS)
OLD = pins(OLD_BOTOCORE_REQUIREMENTS)
PACKAGES = ("boto3", "botocore", "pyarrow", "pandas", "numpy", "awswrangler")
VERSIONS_LINE = re.compile(r"^\[INFO\]\t\S+ \S+\truntime: (?P<versions>python .*)$", re.MULTILINE)


def logged_versions(log: str) -> list[str]:
    return [m["versions"] for m in VERSIONS_LINE.finditer(log)]


def expected_line(python: str, versions: dict[str, str]) -> str:
    return ", ".join([f"python {python}", *(f"{name} {versions[name]}" for name in PACKAGES)])


def test_the_layer_venv_imports_the_layers_and_the_runtimes_versions(layer_python: Path) -> None:
    """Not the development pins: what the packaged tests' Python imports is the 3.17.x layer's pyarrow
    24.0.0, pandas and numpy and the runtime's botocore 1.38.x."""
    imported = imported_versions(layer_python)
    assert {name: imported[name] for name in PACKAGES} == {name: LAYER[name] for name in PACKAGES}
    assert imported["pyarrow"] == "24.0.0"
    assert imported["botocore"].startswith("1.38.")
    assert imported["awswrangler"].startswith("3.17.")
    # The development venv running pytest holds other versions, so a fallback to it would show.
    assert md.version("pyarrow") != imported["pyarrow"]
    assert md.version("botocore") != imported["botocore"]


def test_cold_start_logs_the_versions_once_and_the_load_runs_on_the_layer(
    packaged: PackagedLambda, lake: Lake, layer_python: Path
) -> None:
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(120))
    lake.put("exports/20240116/sales_1.csv", csv_rows(7))
    first, second = packaged.run([event(), event(data_ref="20240116")]).invocations
    python = imported_versions(layer_python)["python"]
    assert logged_versions(first.log) == [expected_line(python, LAYER)]
    assert logged_versions(second.log) == []  # a warm container does not log them again
    assert first.log.splitlines()[1].endswith(f"runtime: {expected_line(python, LAYER)}")  # first line
    for inv, rows in ((first, 120), (second, 7)):
        assert inv.function_error is None, inv.payload
        assert inv.payload["statusCode"] == 200, inv.payload
        assert inv.payload["result"]["rows"] == rows
    assert len(lake.read_catalog()) == 120
    assert len(lake.read_catalog("20240116")) == 7


def too_old_message() -> str:
    return (
        f"Error: validate: the Lambda runtime provides botocore {OLD['botocore']}, but this function needs "
        "botocore >= 1.35.69 (IfMatch on S3 PutObject and DeleteObject, for its day leases); the AWS SDK "
        "for pandas layer takes boto3/botocore from the runtime: deploy on a runtime or region whose SDK "
        "is newer, or add a layer with boto3 and botocore >= 1.35.69"
    )


def test_a_runtime_with_a_too_old_botocore_fails_every_invocation_and_writes_nothing(
    aws: str, old_botocore_python: Path, code_dir: Path, lake: Lake, tmp_path: Path
) -> None:
    assert imported_versions(old_botocore_python)["botocore"] == OLD["botocore"] == "1.35.68"
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(30))
    function = PackagedLambda(
        python=old_botocore_python,
        code_dir=code_dir,
        workdir=tmp_path,
        env={**base_env(aws, tmp_path), **SETTINGS_ENV},
    )
    events = [
        event(),
        scheduled("2024-01-16T02:30:00Z"),
        {"Records": [s3_record(f"exports/{DAY}/sales_1.csv")]},
        {**event(), **pipes_params()},
        event(),
    ]
    run = function.run(events)
    direct, sched, s3, pipes, again = run.invocations
    body = too_old_message()
    # Synchronous (direct, Pipes): the 500 response; asynchronous (schedule, S3): raised, for
    # Lambda's retries and dead-letter queue. Every invocation, not only the first.
    for inv in (direct, pipes, again):
        assert inv.function_error is None, inv.payload
        assert inv.payload == {"statusCode": 500, "body": body, "stage": "validate"}
    for inv in (sched, s3):
        assert inv.function_error == "Unhandled"
        assert inv.payload["errorType"] == "LoadFailedError"
        assert inv.payload["errorMessage"] == body
    (closed,) = [m for m in tail_messages(pipes) if m["method"] == "closed"]
    assert closed["params"]["exception"]["message"] == body
    # The cold start names the versions found, and says every invocation fails.
    assert logged_versions(direct.log) == [expected_line(run_python(old_botocore_python), {**LAYER, **OLD})]
    assert f"runtime: unsupported: {body.removeprefix('Error: validate: ')}; every invocation fails" in (
        direct.log
    )
    assert logged_versions(again.log) == []
    # Nothing written: no object under the table, no Glue table.
    assert lake.keys() == []
    assert lake.clients.glue.get_tables(DatabaseName=DB)["TableList"] == []


def test_the_too_old_botocore_is_refused_without_any_aws_call(
    old_botocore_python: Path, code_dir: Path, tmp_path: Path
) -> None:
    """The endpoint is a closed port: any AWS call would fail with a connection error instead."""
    function = PackagedLambda(
        python=old_botocore_python,
        code_dir=code_dir,
        workdir=tmp_path,
        env={**base_env("http://127.0.0.1:9", tmp_path), **SETTINGS_ENV},
        timeout=60,
    )
    inv = function.invoke_one(event())
    assert inv.payload == {"statusCode": 500, "body": too_old_message(), "stage": "validate"}
    assert "Could not connect" not in inv.log


def run_python(python: Path) -> str:
    return imported_versions(python)["python"]
