"""Shared tools of the reliability suite: transient-fault injection on the wire, a body stream that drops
mid-read, a snapshot of the destination (to prove "untouched"), and noisy data big enough for multipart.

Everything hooks botocore's event system on the boto3 session the clients are made from, so the code
under test runs unchanged (its own retry policy, its own resume logic).
"""

from __future__ import annotations

import json
import os
import random
import threading
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from botocore.httpsession import URLLib3Session
from botocore.response import StreamingBody
from urllib3.exceptions import ProtocolError

from s3_parquet_assets.core import AwsClients, Tuning, handle_event, make_clients

from ..helpers import DB, DST, PATHOUT, TABLE, Lake, event

# Small parts and row groups so test-sized objects still take every path (multipart, several parts).
TUNE = Tuning(part_size=5 * 1024 * 1024, row_group_rows=20_000, block_size=1024 * 1024)

S3_ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


class _Raw:
    """The ``raw`` of a canned AWSResponse (botocore reads ``stream()``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self._body

    def read(self, *_args: Any, **_kwargs: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def s3_error_response(url: str, status: int) -> AWSResponse:
    code, message = S3_ERRORS[status]
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return AWSResponse(url, status, {"Content-Type": "application/xml"}, _Raw(xml.encode()))


def glue_throttle_response(url: str) -> AWSResponse:
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return AWSResponse(
        url,
        400,
        {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": "ThrottlingException"},
        _Raw(body),
    )


KINDS = ("503", "500", "reset", "refused", "lost")

# What the suite did, for its closing summary (see conftest.py): faults injected by kind, kills
# survived, bad inputs tried.
TALLY: Counter[str] = Counter()


@dataclass
class Flaky:
    """Transient faults on a fraction of requests, injected at ``before-send`` (the wire).

    Kinds: ``503`` (SlowDown), ``500`` (InternalError), ``reset`` (connection closed before a response),
    ``refused`` (cannot connect), ``lost`` (the request reaches the server and is carried out, then the
    connection drops before the response: the retry repeats a request that already happened).

    With ``always_first`` the first request of every listed operation fails, so each one is proven
    to be retried whatever the random draw. ``max_streak`` bounds consecutive faults of one request so the retry budget is never the question;
    what is tested is that every fault is retried and the load still lands exactly the right rows.
    """

    ops: dict[str, tuple[str, ...]]  # operation name -> kinds to draw from
    rate: float = 0.3
    seed: int = 7
    max_streak: int = 2
    always_first: bool = True
    first_kind: str = ""  # the kind the first request of an operation gets (when listed for it)
    service: str = "s3"
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._http = URLLib3Session()

    def install(self, session: boto3.Session) -> Flaky:
        session.events.register(f"before-send.{self.service}", self._hook)
        return self

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    def _hook(self, request: Any, event_name: str, **_kwargs: Any) -> Any:
        op = event_name.rsplit(".", 1)[-1]
        kinds = self.ops.get(op)
        streaks: dict[str, int] = self._local.__dict__.setdefault("streaks", {})
        with self._lock:
            self.seen[op] += 1
            first = self.always_first and self.seen[op] == 1
            fire = (
                kinds is not None
                and streaks.get(op, 0) < self.max_streak
                and (first or self._rng.random() < self.rate)
            )
            kind = self._rng.choice(kinds) if fire and kinds else ""
            if fire and first and kinds and self.first_kind in kinds:
                kind = self.first_kind
            if fire:
                self.injected[(op, kind)] += 1
                TALLY[f"transient fault: {kind}"] += 1
        if not fire:
            streaks[op] = 0
            return None
        streaks[op] = streaks.get(op, 0) + 1
        if kind in ("503", "500"):
            return s3_error_response(request.url, int(kind))
        if kind == "throttle":
            return glue_throttle_response(request.url)
        if kind == "refused":
            raise EndpointConnectionError(endpoint_url=request.url)
        if kind == "lost":
            self._http.send(request).content  # carried out by the server; the answer never arrives
            raise ConnectionClosedError(endpoint_url=request.url, request=request)
        raise ConnectionClosedError(endpoint_url=request.url, request=request)


class _DroppingRaw:
    """A response body that serves ``limit`` bytes and then fails like a dropped connection."""

    def __init__(self, raw: Any, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            self._raw.close()
            raise ProtocolError("Connection broken: connection reset by peer (injected)")
        want = self._left if amt is None or amt < 0 else min(amt, self._left)
        data: bytes = self._raw.read(want)
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def stream(self, **_kwargs: Any) -> Any:  # pragma: no cover - not used for streaming bodies
        yield self.read()


@dataclass
class BodyDrops:
    """Make the GET bodies of one key drop after ``after`` bytes, the first ``times`` times (a real
    ``after-call`` hook: the caller gets a body whose connection breaks part way)."""

    key_suffix: str
    after: int
    times: int = 2
    dropped: int = 0
    ranges: list[str] = field(default_factory=list)

    def install(self, session: boto3.Session) -> BodyDrops:
        session.events.register("after-call.s3.GetObject", self._hook)
        session.events.register("before-call.s3.GetObject", self._record)
        return self

    def _record(self, params: Any, **_kwargs: Any) -> None:
        if str(params.get("url_path", "")).endswith(self.key_suffix):
            self.ranges.append(str(params.get("headers", {}).get("Range", "")))

    def _hook(self, http_response: Any, parsed: dict[str, Any], context: Any = None, **_kw: Any) -> None:
        body = parsed.get("Body")
        if body is None or http_response.status_code >= 300 or self.dropped >= self.times:
            return
        if not str(getattr(http_response, "url", "")).endswith(self.key_suffix):
            return
        self.dropped += 1
        TALLY["transient fault: body drop"] += 1
        length = parsed.get("ContentLength")
        parsed["Body"] = StreamingBody(_DroppingRaw(body._raw_stream, self.after), length)


@dataclass
class Recorder:
    """Every S3 request as (operation, headers), seen on the wire."""

    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def install(self, session: boto3.Session, service: str = "s3") -> Recorder:
        session.events.register(f"before-send.{service}", self._hook)
        return self

    def _hook(self, request: Any, event_name: str, **_kwargs: Any) -> None:
        headers = {
            k.lower(): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in request.headers.items()
        }
        self.calls.append((event_name.rsplit(".", 1)[-1], headers))

    def ops(self) -> set[str]:
        return {op for op, _ in self.calls}


def session() -> boto3.Session:
    return boto3.Session(region_name="us-east-1")


def load(
    lake: Lake, sess: boto3.Session | None = None, tuning: Tuning = TUNE, **overrides: Any
) -> dict[str, Any]:
    """Run one load through the Lambda-style entry point with clients made from ``sess``."""
    clients = make_clients(sess) if sess is not None else lake.clients
    return handle_event(event(**overrides), clients, tuning=tuning)


def new_clients(sess: boto3.Session) -> AwsClients:
    return make_clients(sess)


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------
def rows_of(n: int, start: int = 0, tag: str = "C") -> list[dict[str, str]]:
    """The rows :func:`helpers.csv_rows` produces, as the (text) values the table holds."""
    return [
        {"id": str(i), "customer": f"{tag}{i % 7}", "amount": str(i * 1.5)} for i in range(start, start + n)
    ]


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the order :meth:`Lake.read_location` returns them."""
    return sorted(rows, key=lambda r: str(r.get("id")))


@cache
def noisy_csv(n: int, seed: int = 1) -> bytes:
    """``n`` rows with a random 40-hex-digit customer: incompressible enough that the Parquet file is
    several 5 MiB parts (so multipart upload, parts and completion all happen)."""
    rng = random.Random(seed)
    return "".join(f"{i},{rng.getrandbits(160):040x},{i}.5\n" for i in range(n)).encode()


BIG_ROWS = 210_000  # ~11 MiB of CSV -> ~11 MiB of Parquet -> 3 parts of 5 MiB


# ---------------------------------------------------------------------------------------------------
# The destination, as a value: compare before/after to prove a failed load touched nothing
# ---------------------------------------------------------------------------------------------------
def snapshot(lake: Lake) -> dict[str, Any]:
    s3, glue = lake.clients.s3, lake.clients.glue
    objects: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=DST):
        for o in page.get("Contents", []):
            objects[o["Key"]] = o["ETag"]
    uploads = [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=DST).get("Uploads", [])]
    try:
        table = glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]
        table_view: Any = {
            "columns": table["StorageDescriptor"]["Columns"],
            "location": table["StorageDescriptor"]["Location"],
            "keys": table.get("PartitionKeys", []),
        }
        parts = glue.get_partitions(DatabaseName=DB, TableName=TABLE)["Partitions"]
        parts_view = sorted(
            (
                tuple(p["Values"]),
                p["StorageDescriptor"]["Location"],
                tuple(sorted(p.get("Parameters", {}).items())),
            )
            for p in parts
        )
    except glue.exceptions.EntityNotFoundException:
        table_view, parts_view = None, []
    return {"objects": objects, "uploads": uploads, "table": table_view, "partitions": parts_view}


def day_versions(lake: Lake, day: str) -> set[str]:
    """The ``load-*`` folders under the day."""
    prefix = f"{PATHOUT}/data_ref={day}/"
    return {k[len(prefix) :].split("/", 1)[0] for k in lake.keys(prefix)}


def assert_clean_day(lake: Lake, day: str, result: dict[str, Any]) -> None:
    """After a successful load: the day folder holds only this load's folder, the partition points at
    it, no multipart upload is left and no lease is held."""
    assert day_versions(lake, day) == {f"load-{result['load_id']}"}
    part = lake.partition(day)
    assert part is not None
    assert part["StorageDescriptor"]["Location"] == result["partition_location"]
    assert lake.multipart_uploads() == []
    assert lake.keys(f"{PATHOUT}/_leases/") == []


def reset_moto(endpoint: str) -> None:
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def endpoint() -> str:
    return os.environ["AWS_ENDPOINT_URL"]
