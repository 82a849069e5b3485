"""End to end through the UI's API: ``dg dev`` (webserver + daemon) on the three-table file against the
moto server, a 3-day backfill of two tables launched with the GraphQL mutation the UI uses, and both
tables read back through the catalog."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import free_port
from ..helpers import DB, Lake
from ..three_tables import stage_day, write_tables_file
from .test_assets import as_text, read_day

ROOT = Path(__file__).resolve().parents[2]
DAYS = ["20240301", "20240302", "20240303"]
ROWS = {"20240301": 4, "20240302": 5, "20240303": 6}
TABLES = ("sales", "stock")

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on PythonError { message }
  }
}"""

MATERIALIZATIONS = """
query Mats($path: [String!]!, $partitions: [String!]) {
  assetNodes(assetKeys: [{path: $path}]) {
    partitionStats { numMaterialized numFailed }
    assetMaterializations(partitions: $partitions) {
      partition
      runId
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
  }
}"""

LOCATION = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


class UI:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"

    def query(self, text: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"GraphQL {exc.code}: {exc.read().decode(errors='replace')[:2000]}"
            ) from None
        assert "errors" not in out, out["errors"]
        return out["data"]  # type: ignore[no-any-return]


def _wait(predicate: Any, what: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dg dev exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-4000:]}")
        try:
            last = predicate()
        except OSError as exc:  # not listening yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what} (last: {last}):\n{log.read_text()[-4000:]}")


@pytest.fixture
def dagster_dev(aws: str, tmp_path: Path) -> Iterator[tuple[UI, subprocess.Popen[bytes], Path]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3PA_")}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "S3PA_TABLES": str(write_tables_file(tmp_path)),  # the component's tables file
            "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
        }
    )
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    dg = str(Path(sys.executable).parent / "dg")
    # dagster dev maps SIGTERM to its SIGINT handler: give it the default SIGINT action even when this
    # test runs with SIGINT ignored (a background job), so that SIGTERM stops it
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [dg, "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the webserver, daemon and code server
        )
    signal.signal(signal.SIGINT, previous)
    try:
        yield UI(port), proc, log
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader for a moment: make sure nothing of it is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_backfill_of_two_tables_launched_through_the_ui_api(
    lake: Lake, dagster_dev: tuple[UI, Any, Path]
) -> None:
    ui, proc, log = dagster_dev
    expected = {day: stage_day(lake, day, rows=n) for day, n in ROWS.items()}

    def loaded() -> bool:
        entries = ui.query(LOCATION)["workspaceOrError"]["locationEntries"]
        ready = [e for e in entries if e["loadStatus"] == "LOADED"]
        if ready:
            assert ready[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", ready
        return bool(ready)

    _wait(loaded, "the code location", 180, proc, log)

    backfills = {}
    for name in TABLES:
        params = {
            "partitionNames": DAYS,
            "assetSelection": [{"path": ["s3_source", name]}, {"path": [DB, name]}],
            "fromFailure": False,
            "title": f"e2e backfill of {name}",
        }
        launched = ui.query(LAUNCH, params=params)["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfills[name] = launched["backfillId"]

    def finished(backfill_id: str) -> str | None:
        result = ui.query(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        assert result["__typename"] == "PartitionBackfill", result
        status = result["status"]
        return None if status in ("REQUESTED", "CANCELING", "FAILING") else status

    for name, backfill_id in backfills.items():
        status = _wait(lambda b=backfill_id: finished(b), f"the backfill of {name}", 240, proc, log)
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (name, status)

    for name in TABLES:
        node = ui.query(MATERIALIZATIONS, path=[DB, name], partitions=DAYS)["assetNodes"][0]
        assert node["partitionStats"]["numMaterialized"] == 3 and node["partitionStats"]["numFailed"] == 0
        mats = {m["partition"]: m for m in node["assetMaterializations"]}
        assert sorted(mats) == DAYS
        assert len({m["runId"] for m in mats.values()}) == 1  # the backfill policy ran the range in one run
        for day, n in ROWS.items():
            entries = {e["label"]: e.get("intValue") for e in mats[day]["metadataEntries"]}
            assert entries["dagster/partition_row_count"] == n
            assert read_day(lake, name, day) == as_text(expected[day][name])
