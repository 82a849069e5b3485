"""Run the *packaged* handler the way Lambda would: the built zip unpacked into an empty directory, a
Python whose only third-party packages are the AWS SDK for pandas layer's, and a runtime stand-in
(``runner.py``) in a subprocess.

``layer_venv`` builds that Python offline: a fresh ``python -m venv --without-pip`` plus the installed
distributions of boto3, pyarrow, pandas and awswrangler and their dependencies (resolved from their
metadata), hard-linked (or copied) out of ``.venv-layer``, which ``make layer-venv`` installs from
``deploy/layer-requirements.txt``: the managed layer's pyarrow 24.0.0, pandas, numpy and awswrangler
and the Lambda runtime's boto3/botocore, not the project's development pins. With the too-old botocore
of ``deploy/old-botocore-requirements.txt`` laid over it, it is a runtime the function must refuse.
It holds no dagster.

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
ROOT = HERE.parents[1]
RUNNER = HERE / "runner.py"
LAYER_PACKAGES = ("boto3", "pyarrow", "pandas", "awswrangler")
LOG_TAIL_BYTES = 4096

# Built by `make layer-venv` (which `make test` runs): what the layer and the runtime hold.
LAYER_REQUIREMENTS = ROOT / "deploy" / "layer-requirements.txt"
OLD_BOTOCORE_REQUIREMENTS = ROOT / "deploy" / "old-botocore-requirements.txt"
LAYER_VENV = ROOT / ".venv-layer"
OLD_BOTOCORE = ROOT / ".venv-layer-old-botocore"
_STAMP = ".installed-stamp"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: Path) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of a requirements file (comments skipped)."""
    out: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[_norm(name)] = version.strip()
    return out


def ensure_layer_envs() -> None:
    """Run ``make layer-venv`` (it rebuilds ``.venv-layer`` and the old botocore only when missing or
    older than their requirements files), so a bare ``pytest`` works from a fresh clone too."""
    fresh = all(
        (env / _STAMP).exists() and (env / _STAMP).stat().st_mtime >= req.stat().st_mtime
        for env, req in ((LAYER_VENV, LAYER_REQUIREMENTS), (OLD_BOTOCORE, OLD_BOTOCORE_REQUIREMENTS))
    )
    if not fresh:
        subprocess.run(["make", "-C", str(ROOT), "layer-venv"], check=True)


def layer_site() -> Path:
    """The site-packages of ``.venv-layer``."""
    (site,) = LAYER_VENV.glob("lib/python*/site-packages")
    return site


def layer_distributions(
    paths: Sequence[Path], roots: Sequence[str] = LAYER_PACKAGES
) -> dict[str, md.Distribution]:
    """The distributions ``roots`` need (their non-extra requirements, transitively), each taken from
    the first of ``paths`` that holds it. A missing one is an error (the layer venv is incomplete)."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions(path=[str(p) for p in paths]):
        found.setdefault(_norm(dist.metadata["Name"]), dist)
    todo = list(roots)
    seen: dict[str, md.Distribution] = {}
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        if name not in found:
            raise RuntimeError(f"{name} is not installed in {[str(p) for p in paths]} (make layer-venv)")
        dist = seen[name] = found[name]
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


def layer_venv(target: Path, sources: Sequence[Path]) -> Path:
    """Create at ``target`` (once) a venv holding the layer's distributions taken from ``sources``
    (site-packages folders, first match wins: an overlay goes first), and return its python."""
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
    dists = layer_distributions(sources)
    for dist in dists.values():
        root = Path(str(dist.locate_file("")))
        for rel in dist.files or []:
            if str(rel).startswith("..") or "__pycache__" in rel.parts:
                continue
            src = root / rel
            if src.is_file():
                _link_or_copy(src, site / rel)
    marker.write_text("".join(f"{name}=={d.version}\n" for name, d in sorted(dists.items())))
    return python


_VERSIONS_SCRIPT = """
import json, sys, boto3, botocore, pyarrow, pandas, numpy, awswrangler
print(json.dumps({"python": sys.version.split()[0], **{m.__name__: m.__version__ for m in
    (boto3, botocore, pyarrow, pandas, numpy, awswrangler)}}))
"""


def imported_versions(python: Path) -> dict[str, str]:
    """``__version__`` of each package as that Python imports it (isolated mode, as the runner)."""
    out = subprocess.run(
        [str(python), "-I", "-c", _VERSIONS_SCRIPT], check=True, capture_output=True, text=True
    ).stdout
    versions: dict[str, str] = json.loads(out)
    return versions


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
