"""The runtime guard's rule, in process: which botocore versions the function accepts."""

from __future__ import annotations

import importlib.metadata as md
import logging

import pytest

from s3_parquet_assets.lambda_ import runtime


@pytest.mark.parametrize(
    ("found", "supported"),
    [
        ("1.35.69", True),
        ("1.35.70", True),
        ("1.36.0", True),
        ("1.38.46", True),
        ("1.100.0", True),  # numerically, not as text ("1.100" < "1.35" as strings)
        ("2.0.0", True),
        ("1.36.0rc1", True),
        ("1.35.68", False),
        ("1.35.7", False),  # 7 < 69, although "7" > "69" as text
        ("1.34.162", False),
        ("0.99.999", False),
        ("absent", False),
    ],
)
def test_the_minimum_botocore_is_compared_by_release_numbers(found: str, supported: bool) -> None:
    problem = runtime.botocore_problem(found)
    assert (problem is None) is supported, problem
    if not supported:
        have = "no botocore" if found == "absent" else f"botocore {found}"
        assert problem is not None
        assert problem.startswith(
            f"the Lambda runtime provides {have}, but this function needs botocore >= 1.35.69"
        )


def test_cold_start_logs_once_and_keeps_its_verdict(caplog: pytest.LogCaptureFixture) -> None:
    runtime.reset_runtime()
    try:
        with caplog.at_level(logging.INFO, logger="s3_parquet_assets"):
            first = runtime.cold_start()
            second = runtime.cold_start()
            runtime.require_supported_runtime()  # the development venv's botocore is new enough
    finally:
        runtime.reset_runtime()
    assert first is second
    assert first.problem is None
    assert first.versions["botocore"] == md.version("botocore")
    assert first.versions["pyarrow"] == md.version("pyarrow")
    assert list(first.versions) == ["python", *runtime.REPORTED]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("runtime:")] == [
        "runtime: " + ", ".join(f"{k} {v}" for k, v in first.versions.items())
    ]
