"""What the function runs on: the versions it logs at cold start, and the runtime guard.

The managed AWS SDK for pandas layer brings pyarrow, pandas, numpy and awswrangler; boto3 and
botocore come from the Lambda runtime (the layer's build removes its own), and their version varies
by region and date. The day leases need ``IfMatch`` on S3 ``PutObject`` (renewal and takeover) and
``DeleteObject`` (release): botocore's S3 model has it on PutObject from 1.35.69 (1.35.68's
``PutObjectRequest`` lacks it, checked in ``botocore/data/s3/2006-03-01/service-2.json.gz``). With an
older botocore a load would fail at ``lock`` with a ``ParamValidationError``, or worse lose its lease
renewal mid-load, so the function refuses every invocation before any AWS call of its own (a Pipes
session on the S3 channels still reads its context and reports the failure there).

:func:`cold_start` runs at the first invocation of a container (never at import): it logs one line
with the versions, and keeps the verdict; :func:`require_supported_runtime` raises the verdict's
``LoadError("validate", ...)`` at every invocation.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import platform
from dataclasses import dataclass

from ..core import LoadError

__all__ = [
    "MIN_BOTOCORE",
    "REPORTED",
    "Runtime",
    "botocore_problem",
    "cold_start",
    "require_supported_runtime",
    "reset_runtime",
    "runtime_versions",
]

log = logging.getLogger(__name__)

MIN_BOTOCORE = "1.35.69"
# The distributions the cold-start line reports, in this order (python first).
REPORTED = ("boto3", "botocore", "pyarrow", "pandas", "numpy", "awswrangler")
ABSENT = "absent"


@dataclass(frozen=True)
class Runtime:
    """The container's versions and, if it cannot run the function, why."""

    versions: dict[str, str]
    problem: str | None


_RUNTIME: Runtime | None = None


def _release(version: str) -> tuple[int, ...]:
    """``1.35.69`` -> ``(1, 35, 69)``; a pre-release or local suffix is ignored (``1.36.0rc1`` -> 1.36.0)."""
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return tuple(parts)


def _botocore_version() -> str:
    """The version of the botocore that ``import botocore`` gives (what the loader will use)."""
    try:
        import botocore
    except ImportError:
        return ABSENT
    return str(getattr(botocore, "__version__", ABSENT))


def runtime_versions() -> dict[str, str]:
    """``python`` and each of :data:`REPORTED`: the installed version, or ``absent``. botocore's is
    the imported module's own; the others come from the distributions' metadata (nothing heavy is
    imported)."""
    versions = {"python": platform.python_version()}
    for name in REPORTED:
        if name == "botocore":
            versions[name] = _botocore_version()
            continue
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = ABSENT
    return versions


def botocore_problem(found: str, minimum: str = MIN_BOTOCORE) -> str | None:
    """Why a runtime with botocore ``found`` cannot run the function, or ``None`` if it can."""
    if found != ABSENT and _release(found) >= _release(minimum):
        return None
    have = "no botocore" if found == ABSENT else f"botocore {found}"
    return (
        f"the Lambda runtime provides {have}, but this function needs botocore >= {minimum} "
        "(IfMatch on S3 PutObject and DeleteObject, for its day leases); the AWS SDK for pandas layer "
        "takes boto3/botocore from the runtime: deploy on a runtime or region whose SDK is newer, or add "
        f"a layer with boto3 and botocore >= {minimum}"
    )


def cold_start() -> Runtime:
    """The container's :class:`Runtime`, found and logged once, at its first invocation."""
    global _RUNTIME  # noqa: PLW0603 - the per-container state is the point
    if _RUNTIME is None:
        versions = runtime_versions()
        runtime = Runtime(versions, botocore_problem(versions["botocore"]))
        log.info("runtime: %s", ", ".join(f"{name} {version}" for name, version in versions.items()))
        if runtime.problem is not None:
            log.error("runtime: unsupported: %s; every invocation fails", runtime.problem)
        _RUNTIME = runtime
    return _RUNTIME


def require_supported_runtime() -> None:
    """Raise ``LoadError("validate", ...)`` when the container's runtime cannot run the function."""
    problem = cold_start().problem
    if problem is not None:
        raise LoadError("validate", problem)


def reset_runtime() -> None:
    """Forget the container's runtime (tests)."""
    global _RUNTIME  # noqa: PLW0603
    _RUNTIME = None
