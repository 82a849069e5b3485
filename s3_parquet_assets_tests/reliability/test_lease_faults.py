"""The lease under errors that are not AWS errors, and under S3's 403-for-404.

Any error while renewing (a botocore too old for ``IfMatch`` raises ``ParamValidationError``; a
``BotoCoreError``; anything) leaves the renewal thread alive and retrying until the lease expires; a
lease that expires unrenewed still stops the swap. Any error while taking the lease or taking over an
expired one is a clean ``lock`` error. A 403 on the lease (what S3 answers for a missing key when the
caller may not list the bucket) is never read as "no lease". A refused load says whether the holder is
loading the same export.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import NoCredentialsError, ParamValidationError

from s3_parquet_assets.core import Tuning, handle_event, loaded_etag, make_clients, parse_event

from ..helpers import DAY, DST, PATHOUT, Lake, csv_rows, event
from .support import TUNE, _Raw, assert_clean_day, by_id, day_versions, rows_of, session, snapshot

KEY = f"exports/{DAY}/sales.csv"
LEASE = f"{PATHOUT}/_leases/data_ref={DAY}.json"
SHORT = Tuning(part_size=TUNE.part_size, row_group_rows=TUNE.row_group_rows, lease_ttl_seconds=1.5)


def previous_day(lake: Lake) -> dict[str, Any]:
    lake.put(KEY, csv_rows(50))
    out = handle_event(event(), lake.clients, tuning=TUNE)
    assert out["statusCode"] == 200, out
    lake.put(KEY, csv_rows(80, start=500))
    return out["result"]


def is_renewal(params: Any) -> bool:
    return "/_leases/" in str(params.get("url_path", "")) and "If-Match" in params.get("headers", {})


def not_client_errors() -> list[Exception]:
    return [
        ParamValidationError(report='Unknown parameter in input: "IfMatch"'),
        NoCredentialsError(),  # a BotoCoreError
        RuntimeError("anything at all"),
    ]


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that escaped any thread (a dead renewal thread would land here)."""
    seen: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", hook)
    return seen


def after_verification(sess: Any, fn: Any) -> None:
    """Run ``fn`` once at the look at the partitions just before the swap."""
    verified = threading.Event()
    fired: list[int] = []
    sess.events.register("after-call.s3.HeadObject", lambda **_kw: verified.set())

    def hook(**_kw: Any) -> None:
        if verified.is_set() and not fired:
            fired.append(1)
            fn()

    sess.events.register("before-call.glue.GetPartitions", hook)


def test_renewal_errors_that_are_not_client_errors_keep_the_thread_alive(
    lake: Lake, thread_errors: list[str]
) -> None:
    previous_day(lake)
    sess = session()
    faults = not_client_errors()
    raised: list[str] = []
    renewed_after = threading.Event()

    def renewal_fails(params: Any, **_kw: Any) -> None:
        if not is_renewal(params):
            return
        if faults:
            exc = faults.pop(0)
            raised.append(type(exc).__name__)
            raise exc
        renewed_after.set()

    sess.events.register("before-call.s3.PutObject", renewal_fails)
    after_verification(sess, lambda: renewed_after.wait(timeout=20))

    out = handle_event(event(), make_clients(sess), tuning=SHORT)

    assert raised == ["ParamValidationError", "NoCredentialsError", "RuntimeError"]
    assert renewed_after.is_set()  # the thread lived on and renewed after all three
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(80, start=500))
    assert_clean_day(lake, DAY, out["result"])
    assert thread_errors == []


def test_renewals_failing_past_the_expiry_stop_the_swap(lake: Lake, thread_errors: list[str]) -> None:
    prev = previous_day(lake)
    sess = session()
    failures: list[int] = []

    def renewal_fails(params: Any, **_kw: Any) -> None:
        if is_renewal(params):
            failures.append(1)
            raise ParamValidationError(report='Unknown parameter in input: "IfMatch"')

    def wait_out_the_lease() -> None:
        body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
        expires = datetime.fromisoformat(body["expires_at"])
        time.sleep(max((expires - datetime.now(UTC)).total_seconds() + 0.6, 0))

    sess.events.register("before-call.s3.PutObject", renewal_fails)
    after_verification(sess, wait_out_the_lease)

    out = handle_event(event(), make_clients(sess), tuning=SHORT)

    assert len(failures) >= 2  # retried, not given up after one
    assert out["statusCode"] == 500, out
    assert out["stage"] == "lock"
    assert "expired: it could not be renewed (ParamValidationError: " in out["body"]
    assert lake.read_catalog() == by_id(rows_of(50))  # never flipped
    assert day_versions(lake, DAY) == {f"load-{prev['load_id']}"}
    assert lake.multipart_uploads() == []
    assert thread_errors == []


def put_lease(lake: Lake, load_id: str, expires: datetime, **more: str) -> None:
    body = {
        "load_id": load_id,
        "host": "elsewhere",
        "pid": 4242,
        "acquired_at": (expires - timedelta(minutes=5)).isoformat(),
        "expires_at": expires.isoformat(),
        **more,
    }
    lake.put(LEASE, json.dumps(body).encode(), bucket=DST)


@pytest.mark.parametrize(
    ("operation", "which", "message"),
    [
        ("PutObject", "If-None-Match", "cannot write the lease"),
        ("GetObject", "", "cannot read the lease"),
        ("PutObject", "If-Match", "cannot take over the expired lease"),
    ],
)
@pytest.mark.parametrize("fault", [0, 1, 2])
def test_taking_or_taking_over_the_lease_fails_cleanly_on_any_error(
    lake: Lake, thread_errors: list[str], operation: str, which: str, message: str, fault: int
) -> None:
    previous_day(lake)
    put_lease(lake, "dead-load", datetime.now(UTC) - timedelta(seconds=1))  # expired: to be taken over
    before = snapshot(lake)
    sess = session()
    exc = not_client_errors()[fault]

    def fails(params: Any, **_kw: Any) -> None:
        if "/_leases/" in str(params.get("url_path", "")) and (
            not which or which in params.get("headers", {})
        ):
            raise exc

    sess.events.register(f"before-call.s3.{operation}", fails)

    out = handle_event(event(), make_clients(sess), tuning=TUNE)

    assert out["stage"] == "lock", out
    assert out["body"].startswith(f"Error: lock: {message} s3://{DST}/{LEASE}: {type(exc).__name__}: ")
    assert snapshot(lake) == before  # the expired lease is still there, nothing else changed
    assert thread_errors == []


def forbidden(url: str) -> AWSResponse:
    xml = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    return AWSResponse(url, 403, {"Content-Type": "application/xml"}, _Raw(xml))


def lease_gets_answer_403(sess: Any, before: Any = None) -> list[str]:
    """Every GET/HEAD of the lease object is answered 403 (as for a caller without s3:ListBucket whose
    key is missing, or without s3:GetObject)."""
    denied: list[str] = []

    def hook(request: Any, **_kw: Any) -> Any:
        if "/_leases/" in request.url and request.method in ("GET", "HEAD"):
            if before is not None:
                before()
            denied.append(request.method)
            return forbidden(request.url)
        return None

    sess.events.register("before-send.s3.GetObject", hook)
    sess.events.register("before-send.s3.HeadObject", hook)
    return denied


def test_a_403_on_a_held_lease_is_a_lock_error_naming_key_and_permission(lake: Lake) -> None:
    previous_day(lake)
    put_lease(lake, "live-load", datetime.now(UTC) + timedelta(minutes=5))
    before = snapshot(lake)
    sess = session()
    denied = lease_gets_answer_403(sess)

    out = handle_event(event(), make_clients(sess), tuning=TUNE)

    assert denied
    assert out["stage"] == "lock"
    assert out["body"] == (
        f"Error: lock: GetObject on the lease s3://{DST}/{LEASE} was denied (403). Grant s3:GetObject on "
        f"{LEASE}; S3 also answers 403 instead of 404 for a missing key when the caller lacks an "
        "unconditioned s3:ListBucket on the bucket"
    )
    assert snapshot(lake) == before


def test_a_403_for_a_lease_released_meanwhile_is_resolved_by_the_conditional_create(lake: Lake) -> None:
    """The holder releases its lease between this load's refused create and its read; the read of the
    missing key is answered 403. The load does not guess: it tries the atomic create again, which wins
    only because the lease really is gone."""
    previous_day(lake)
    put_lease(lake, "finishing-load", datetime.now(UTC) + timedelta(minutes=5))
    sess = session()
    denied = lease_gets_answer_403(sess, before=lambda: lake.clients.s3.delete_object(Bucket=DST, Key=LEASE))

    out = handle_event(event(), make_clients(sess), tuning=TUNE)

    assert denied
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(80, start=500))
    assert_clean_day(lake, DAY, out["result"])


def test_a_refused_load_says_whether_the_holder_loads_the_same_export(lake: Lake) -> None:
    lake.put(KEY, csv_rows(60))
    sess = session()
    refusals: list[dict[str, Any]] = []

    def others_try_meanwhile() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the holder records its export in the lease right after listing
            body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
            if body.get("source_etag"):
                break
            time.sleep(0.05)
        refusals.append(handle_event(event(), make_clients(session()), tuning=TUNE))
        lake.put(KEY, csv_rows(70, start=900))  # a newer export: not what the holder loads
        refusals.append(handle_event(event(), make_clients(session()), tuning=TUNE))

    after_verification(sess, others_try_meanwhile)
    out = handle_event(event(), make_clients(sess), tuning=TUNE)

    assert out["statusCode"] == 200, out
    etag = out["result"]["etag"]
    same, other = refusals
    assert same["stage"] == "lock"
    assert same["lease"] == {
        "load_id": out["result"]["load_id"],
        "source_etag": etag,
        "expires_at": same["lease"]["expires_at"],
        "same_source": True,
    }
    assert same["body"].startswith(f"Error: lock: day is being loaded by load {out['result']['load_id']} ")
    assert same["body"].endswith(
        f"from s3://src-bucket/{KEY} (ETag {etag}); its lease s3://{DST}/{LEASE} expires at "
        f"{same['lease']['expires_at']}; that is the export this load would read: day {DAY} is already "
        "being loaded from it"
    )
    assert other["stage"] == "lock"
    assert other["lease"]["same_source"] is False
    assert other["lease"]["source_etag"] == etag
    assert "already being loaded" not in other["body"]
    assert f"from s3://src-bucket/{KEY} (ETag {etag})" in other["body"]
    # "already loaded": the day's partition records the export it was loaded from
    assert loaded_etag(lake.clients, parse_event(event())) == etag


@pytest.mark.parametrize(
    ("operation", "stage", "message"),
    [
        (
            "ListObjectsV2",
            "list",
            "cannot list s3://src-bucket/exports/20240115/: access denied (403); grant s3:ListBucket on "
            "bucket 'src-bucket' for this prefix",
        ),
        (
            "GetObject",
            "read",
            f"cannot read s3://src-bucket/{KEY}: access denied (403); grant s3:GetObject on it (S3 also "
            "answers 403 for a key deleted since it was listed when the caller lacks an unconditioned "
            "s3:ListBucket)",
        ),
    ],
)
def test_a_403_on_the_source_is_never_no_export(lake: Lake, operation: str, stage: str, message: str) -> None:
    """The sources: a denied listing is not "no export", a denied read is not a missing object; both
    name the permission, and the day is untouched."""
    previous_day(lake)
    before = snapshot(lake)
    sess = session()

    def hook(request: Any, **_kw: Any) -> Any:
        return (
            forbidden(request.url) if "/exports/" in request.url or "prefix=exports" in request.url else None
        )

    sess.events.register(f"before-send.s3.{operation}", hook)

    out = handle_event(event(), make_clients(sess), tuning=TUNE)

    assert out["body"] == f"Error: {stage}: {message}"
    assert snapshot(lake) == before
