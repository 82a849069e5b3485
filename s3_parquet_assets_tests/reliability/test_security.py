"""Security: every object the loader writes is encrypted (SSE-S3 by default, SSE-KMS with a key id),
every S3 request carries the expected bucket owner when one is configured, and no credential ever
reaches a log line or a response."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest

from s3_parquet_assets.core import handle_event

from ..conftest import ROOT
from ..faults import fail_on
from ..helpers import DAY, DST, Lake, csv_rows, event
from .support import BIG_ROWS, TUNE, Recorder, assert_clean_day, load, noisy_csv, session

KEY = f"exports/{DAY}/sales.csv"
WRITES = ("PutObject", "CreateMultipartUpload")


def written_objects(lake: Lake) -> list[str]:
    return lake.keys()


def writes_to_dst(rec: Recorder) -> list[dict[str, str]]:
    return [h for op, h in rec.calls if op in WRITES]


def test_default_is_sse_s3_on_every_object_and_request(lake: Lake) -> None:
    lake.put(KEY, noisy_csv(BIG_ROWS))
    sess = session()
    rec = Recorder().install(sess)
    out = load(lake, sess)
    assert out["statusCode"] == 200, out

    assert "CreateMultipartUpload" in rec.ops()  # the multipart path is covered
    writes = writes_to_dst(rec)
    assert len(writes) >= 2  # the lease and the Parquet file at least
    for headers in writes:
        assert headers.get("x-amz-server-side-encryption") == "AES256", headers
    for key in written_objects(lake):
        head = lake.clients.s3.head_object(Bucket=DST, Key=key)
        assert head.get("ServerSideEncryption") == "AES256", key


def test_sse_kms_with_a_key_id(lake: Lake) -> None:
    kms = boto3.Session(region_name="us-east-1").client("kms")
    key = kms.create_key(Description="s3pa test")["KeyMetadata"]
    lake.put(KEY, noisy_csv(BIG_ROWS))
    sess = session()
    rec = Recorder().install(sess)
    out = load(lake, sess, sse="aws:kms", kms_key_id=key["Arn"])
    assert out["statusCode"] == 200, out

    assert "CreateMultipartUpload" in rec.ops()
    for headers in writes_to_dst(rec):
        assert headers.get("x-amz-server-side-encryption") == "aws:kms", headers
        assert headers.get("x-amz-server-side-encryption-aws-kms-key-id") == key["Arn"], headers
    for obj in written_objects(lake):
        head = lake.clients.s3.head_object(Bucket=DST, Key=obj)
        assert head.get("ServerSideEncryption") == "aws:kms", obj
        assert head.get("SSEKMSKeyId") in (key["Arn"], key["KeyId"]), obj
    assert_clean_day(lake, DAY, out["result"])


def owner_headers_missing(rec: Recorder) -> list[str]:
    return [op for op, h in rec.calls if h.get("x-amz-expected-bucket-owner") != "123456789012"]


def test_expected_bucket_owner_on_every_s3_request(lake: Lake) -> None:
    """Replace a day (so cleanup runs), then fail mid-upload (so abort and discard run): every S3
    request of both loads names the expected owner."""
    lake.put(KEY, csv_rows(50))
    assert load(lake, expected_bucket_owner="123456789012")["statusCode"] == 200

    lake.put(KEY, noisy_csv(BIG_ROWS))
    sess = session()
    rec = Recorder().install(sess)
    ok = load(lake, sess, expected_bucket_owner="123456789012")
    assert ok["statusCode"] == 200, ok
    assert {
        "ListObjectsV2",
        "GetObject",
        "PutObject",
        "UploadPart",
        "DeleteObjects",
        "DeleteObject",
    } <= rec.ops()
    assert owner_headers_missing(rec) == [], owner_headers_missing(rec)

    lake.put(KEY, noisy_csv(BIG_ROWS, seed=2))
    sess = session()
    rec = Recorder().install(sess)
    fail_on(sess, "before-call.s3.CompleteMultipartUpload", 1, "AccessDenied")
    failed = load(lake, sess, expected_bucket_owner="123456789012")
    assert failed["statusCode"] == 500
    assert "AbortMultipartUpload" in rec.ops()
    assert owner_headers_missing(rec) == [], owner_headers_missing(rec)
    assert lake.multipart_uploads() == []


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz-s3pa-SECRET-4f1c9e"
TOKEN = "FwoGZXIvYXdzEBYaD-s3pa-SESSION-TOKEN-77aa01"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, aws: str) -> dict[str, str]:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    return {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}


def test_no_credential_in_logs_or_responses(
    lake: Lake, secret_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Clients built from the environment (as the Lambda and the CLI do), every logger at DEBUG, a load
    that succeeds and one that fails: the secret key appears nowhere, and the session token appears in
    nothing the loader logs or returns (botocore's own DEBUG wire log is silenced by the CLI)."""
    lake.put(KEY, csv_rows(40))
    caplog.set_level(logging.DEBUG)
    ok = handle_event(event(), tuning=TUNE)
    bad = handle_event(event(bucket_src="no-such-bucket-here"), tuning=TUNE)
    broken = handle_event(event(kms_key_id="x"), tuning=TUNE)
    assert ok["statusCode"] == 200, ok
    assert bad["statusCode"] == 500
    assert broken["statusCode"] == 500

    assert caplog.records
    assert SECRET not in caplog.text
    responses = json.dumps([ok, bad, broken], default=str)
    assert SECRET not in responses
    assert TOKEN not in responses
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("s3_parquet_assets"))
    assert ours
    assert TOKEN not in ours
    assert SECRET not in ours


def test_lambda_handler_logs_no_credential(
    lake: Lake, secret_env: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lambda entry point at DEBUG, a direct event that succeeds and one that fails."""
    from s3_parquet_assets import lambda_handler

    monkeypatch.setenv("S3PA_LOG_LEVEL", "DEBUG")
    lake.put(KEY, csv_rows(40))
    caplog.set_level(logging.DEBUG)
    context = type("Context", (), {"aws_request_id": "req-1"})()
    ours_logger = logging.getLogger("s3_parquet_assets")
    level = ours_logger.level
    try:
        ok = lambda_handler.handler(event(), context)
        bad = lambda_handler.handler(event(bucket_src="no-such-bucket-here"), context)
    finally:
        ours_logger.setLevel(level)  # the handler configures its loggers; leave them as found
    assert ok["statusCode"] == 200, ok
    assert bad["statusCode"] == 500, bad
    assert SECRET not in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("s3_parquet_assets"))
    assert ours
    assert TOKEN not in ours
    responses = json.dumps([ok, bad], default=str)
    assert SECRET not in responses
    assert TOKEN not in responses


def test_cli_verbose_logs_no_credential(lake: Lake, secret_env: dict[str, str]) -> None:
    lake.put(KEY, csv_rows(40))
    for ev, code in ((event(), 0), (event(bucket_src="no-such-bucket-here"), 1)):
        proc = subprocess.run(
            [sys.executable, "-m", "s3_parquet_assets.cli", "-v", "load", "--event", json.dumps(ev)],
            cwd=ROOT,
            env=secret_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == code, proc.stderr[-2000:]
        assert proc.stderr  # it did log
        for stream in (proc.stdout, proc.stderr):
            assert SECRET not in stream
            assert TOKEN not in stream


def test_bandit_finds_nothing_high_in_the_package() -> None:
    """The same check `make test` runs (bandit, high severity)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-r", "s3_parquet_assets", "-lll", "-f", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["results"] == [], report["results"]
    assert proc.returncode == 0
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the package


def test_audit_skips_cleanly_without_a_registry() -> None:
    """tools/audit.sh (pip-audit on constraints.txt) says it skipped, and succeeds, when the vulnerability
    service cannot be reached (here: a closed loopback port)."""
    env = {**os.environ, "AUDIT_PROBE_URL": "http://127.0.0.1:9/"}
    proc = subprocess.run(
        ["bash", "tools/audit.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout + proc.stderr
    assert "127.0.0.1:9" in proc.stdout + proc.stderr
