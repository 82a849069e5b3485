"""Run the *packaged* handler the way Lambda would: the built zip unpacked into an empty directory, a
Python whose only third-party packages are the AWS SDK for pandas layer's, and a runtime stand-in
(``runner.py``) in a subprocess.

``layer_venv`` builds that Python offline: a fresh ``python -m venv --without-pip`` plus the installed
distributions of boto3, pyarrow, pandas and awswrangler and their dependencies (resolved from their
metadata), hard-linked (or copied) out of the project's venv. It holds no dagster.

``PackagedLambda.invoke`` has the shape of boto3's ``lambda.invoke``, so it can stand in for the
Lambda client handed to dagster-aws ``PipesLambdaClient``.
"""

from __future__ import annotations

import base64
import importlib.metadata as md
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "runner.py"
LAYER_PACKAGES = ("boto3", "pyarrow", "pandas", "awswrangler")
LOG_TAIL_BYTES = 4096


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_distributions(roots: Sequence[str] = LAYER_PACKAGES) -> dict[str, md.Distribution]:
    """The installed distributions ``roots`` need (their non-extra requirements, transitively)."""
    todo = list(roots)
    seen: dict[str, md.Distribution] = {}
    while todo:
        name = todo.pop()
        if _norm(name) in seen:
            continue
        dist = md.distribution(name)
        seen[_norm(name)] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def layer_venv(target: Path) -> Path:
    """Create the layer venv at ``target`` (once) and return its python."""
    python = target / "bin" / "python"
    marker = target / ".layer-complete"
    if marker.exists():
        return python
    if target.exists():
        shutil.rmtree(target)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(target)], check=True)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for dist in layer_distributions().values():
        root = Path(str(dist.locate_file("")))
        for rel in dist.files or []:
            if str(rel).startswith("..") or "__pycache__" in rel.parts:
                continue
            src = root / rel
            if src.is_file():
                _link_or_copy(src, site / rel)
    marker.write_text("\n".join(sorted(layer_distributions())) + "\n")
    return python


def unpack(zip_path: Path, target: Path) -> Path:
    """Unpack the deployment package into an empty directory."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(target)
    return target


@dataclass
class Invocation:
    request_id: str
    payload: Any
    function_error: str | None
    max_rss_mb: int
    log: str = ""


@dataclass
class Run:
    """One container's life: what it could import and each invocation."""

    invocations: list[Invocation]
    sys_path: list[str]
    prefix: str
    base_prefix: str
    dagster_visible: bool
    dagster_loaded: list[str]
    dagster_loaded_after: list[str]
    handler_file: str
    output: str


@dataclass
class PackagedLambda:
    """The packaged handler in a subprocess; ``invoke`` mimics boto3's Lambda ``invoke``."""

    python: Path
    code_dir: Path
    workdir: Path
    env: dict[str, str]
    timeout: float = 300
    calls: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def run(
        self,
        events: Sequence[Any],
        env: Mapping[str, str] | None = None,
        timeouts_ms: Sequence[int] | None = None,
    ) -> Run:
        """Start one container and send it ``events`` in order (``timeouts_ms``: each invocation's
        time limit, as the context's ``get_remaining_time_in_millis`` counts it down; default 900 s)."""
        with self._lock:
            self._counter += 1
            n = self._counter
        request = self.workdir / f"request-{n}.json"
        response = self.workdir / f"response-{n}.json"
        request.write_text(json.dumps({"events": list(events), "timeouts_ms": list(timeouts_ms or [])}))
        full_env = {**self.env, **(env or {})}
        proc = subprocess.run(
            [str(self.python), "-I", "-u", str(RUNNER), str(self.code_dir), str(request), str(response)],
            env=full_env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=self.timeout,
            check=False,
        )
        output = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0 or not response.exists():
            raise RuntimeError(f"the runtime stand-in failed (exit {proc.returncode}):\n{output[-6000:]}")
        data = json.loads(response.read_text())
        invocations = [Invocation(**inv) for inv in data.pop("invocations")]
        for inv in invocations:
            start = output.find(f"START RequestId: {inv.request_id}")
            end_marker = f"REPORT RequestId: {inv.request_id}"
            end = output.find("\n", output.find(end_marker)) + 1 or len(output)
            inv.log = output[start:end]
        return Run(invocations=invocations, output=output, **data)

    def invoke_one(self, event: Any, env: Mapping[str, str] | None = None) -> Invocation:
        return self.run([event], env).invocations[0]

    def invoke(
        self,
        *,
        FunctionName: str,
        Payload: str | bytes,
        InvocationType: str = "RequestResponse",
        LogType: str = "None",
        **kwargs: Any,
    ) -> dict[str, Any]:
        """boto3 ``lambda.invoke`` (synchronous invocations)."""
        if InvocationType != "RequestResponse":
            raise ValueError(f"only RequestResponse invocations are emulated, not {InvocationType}")
        event = json.loads(Payload)
        inv = self.invoke_one(event)
        with self._lock:
            self.calls.append(
                {
                    "FunctionName": FunctionName,
                    "LogType": LogType,
                    "event": event,
                    "invocation": inv,
                    **kwargs,
                }
            )
        out: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": io.BytesIO(json.dumps(inv.payload).encode()),
        }
        if inv.function_error:
            out["FunctionError"] = inv.function_error
        if LogType == "Tail":
            tail = inv.log.encode()[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")
            out["LogResult"] = base64.b64encode(tail.encode()).decode()
        return out


def base_env(endpoint: str, home: Path) -> dict[str, str]:
    """A minimal environment: emulator credentials and endpoint, nothing of the dev venv."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "s3-parquet-assets-load",
    }
