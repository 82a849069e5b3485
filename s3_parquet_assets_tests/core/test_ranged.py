"""Parallel ranged reads of the source, against the moto server: bytes reassembled exactly for csv, gz
and zip, ranges really in flight together and never more than the bound, a dropped range fetched
again alone from where it dropped, the object pinned to its listed ETag, a denied range reported as
today. The link is made slow (the reader's cue to try ranges) through botocore's event hooks: the body of
the first, open-ended GET delivers a few MB/s, while the emulator answers a ranged GET of a small
object in milliseconds (so ranges pay)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from urllib3.exceptions import ProtocolError

from s3_parquet_assets.core import AwsClients, Tuning, handle_event, make_clients
from s3_parquet_assets.core.ranged import RangedReader

from ..helpers import SRC, Lake, csv_rows, event, gz, noisy_rows, zipped
from ..reliability.support import _Raw

KEY = "exports/20240115/sales"
RANGE = 256 * 1024
TUNE = Tuning(block_size=256 * 1024, range_size=RANGE, ranges_in_flight=3, part_size=5 << 20)
ROWS = 60_000


class _SlowBody:
    """A streaming body on a slow link: each read takes as long as its bytes take at ``rate`` B/s."""

    def __init__(self, body: Any, rate: float) -> None:
        self._body = body
        self._rate = rate

    def read(self, amt: int | None = None) -> bytes:
        data: bytes = self._body.read(amt)
        time.sleep(len(data) / self._rate)
        return data

    def close(self) -> None:
        self._body.close()


class _DroppingBody:
    """Hands over half of what is asked, then the connection breaks."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self._reads = 0

    def read(self, amt: int | None = None) -> bytes:
        self._reads += 1
        if self._reads > 1:
            raise ProtocolError("Connection broken: injected drop mid-range")
        data: bytes = self._body.read((amt or RANGE) // 2)
        return data

    def close(self) -> None:
        self._body.close()


class Link:
    """Hooks on one session: the open-ended GET of the source is slow; every source GET's Range is
    recorded (and kept in the request's context as ``range``)."""

    def __init__(self, rate: float = 2e6) -> None:
        self.session = boto3.Session(region_name="us-east-1")
        self.ranges: list[str] = []
        self._lock = threading.Lock()
        self._rate = rate
        self.on_slow_read: Any = None
        self.session.events.register("before-parameter-build.s3.GetObject", self._before)
        self.session.events.register("after-call.s3.GetObject", self._after)

    def clients(self) -> AwsClients:
        return make_clients(self.session)

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params["Bucket"] != SRC:  # the load's own read-back of what it wrote
            return
        rng = str(params.get("Range", "whole"))
        context["range"] = rng
        with self._lock:
            self.ranges.append(rng)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        rng = context.get("range", "")
        if "Body" in parsed and (rng == "whole" or rng.endswith("-")):
            parsed["Body"] = _SlowBody(parsed["Body"], self._rate)

    def closed_ranges(self, ranges: list[str] | None = None) -> list[tuple[int, int]]:
        """The ranged GETs with an end (the reader's ranges), in the order requested."""
        out = []
        for r in self.ranges if ranges is None else ranges:
            first, _, last = r.removeprefix("bytes=").partition("-")
            if r.startswith("bytes=") and last:
                out.append((int(first), int(last)))
        return out


def _closed(request: Any) -> bool:
    """Whether a request being sent is a ranged GET with an end (one of the reader's ranges)."""
    rng = request.headers.get("Range") or ""
    rng = rng.decode() if isinstance(rng, bytes) else str(rng)
    return rng.startswith("bytes=") and not rng.endswith("-")


def _ok(out: dict[str, Any]) -> dict[str, Any]:
    assert out["statusCode"] == 200, out
    return dict(out["result"])


def _expected(data: bytes) -> list[dict[str, str]]:
    """The rows of a CSV export, read as text, in ``Lake.read_catalog``'s order."""
    rows = (
        dict(zip(("id", "customer", "amount"), line.split(","), strict=True))
        for line in data.decode().splitlines()
    )
    return sorted(rows, key=lambda r: r["id"])


def _stage(lake: Lake, fmt: str, data: bytes) -> str:
    key = f"{KEY}.{'csv.gz' if fmt == 'gz' else fmt}"
    body = {"csv": data, "gz": gz(data), "zip": zipped({"sales.csv": data})}[fmt]
    lake.put(key, body)
    return key


def _stage_csv(lake: Lake) -> bytes:
    data = noisy_rows(3 * ROWS)  # ~9 MB: ~36 ranges
    _stage(lake, "csv", data)
    return data


def _contiguous(spans: list[tuple[int, int]]) -> bool:
    ordered = sorted(set(spans))
    return all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ordered))


def test_a_slow_link_is_read_in_ranges_reassembled_byte_exact(lake: Lake) -> None:
    data = os.urandom(5 * RANGE + 12_345)  # the first RANGE only warms the stream up: ranges from 3 * RANGE
    lake.put("blob.bin", data)
    size = len(data)
    link = Link()
    counted: list[int] = []
    reader = RangedReader(
        link.clients().s3,
        SRC,
        "blob.bin",
        etag=lake.clients.s3.head_object(Bucket=SRC, Key="blob.bin")["ETag"].strip('"'),
        size=size,
        range_size=RANGE,
        ranges_in_flight=2,
        on_read=counted.append,
    )
    parts = []
    while chunk := reader.read(40_001):  # reads that straddle the ranges' edges
        parts.append(chunk)
    reader.close()
    assert b"".join(parts) == data
    assert sum(counted) == size  # on_read: every byte handed out, once
    assert all(len(p) == 40_001 for p in parts[:-1])  # no short read before the end
    spans = link.closed_ranges()
    assert spans and _contiguous(spans) and spans[-1][1] == size - 1
    assert link.ranges[0] == "whole"


class _SlowStart:
    """A streaming body slow for its first ``slow`` bytes only (a connection's start), then fast."""

    def __init__(self, body: Any, slow: int, rate: float) -> None:
        self._body = body
        self._slow = slow
        self._rate = rate

    def read(self, amt: int | None = None) -> bytes:
        data: bytes = self._body.read(amt)
        if self._slow > 0:
            time.sleep(len(data) / self._rate)
            self._slow -= len(data)
        return data

    def close(self) -> None:
        self._body.close()


def test_a_slow_start_alone_tries_no_range(lake: Lake) -> None:
    # the first RANGE of a stream is slow (its start: the reader waits on it 80 % of the time), the rest
    # faster than the reader takes it: the start is not judged, so no ranged GET is tried
    data = os.urandom(6 * RANGE)
    lake.put("blob.bin", data)
    link = Link()
    link.session.events.unregister("after-call.s3.GetObject", link._after)

    def slow_start(parsed: dict[str, Any], **_: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = _SlowStart(parsed["Body"], RANGE, 1e6)

    link.session.events.register("after-call.s3.GetObject", slow_start)
    etag = lake.clients.s3.head_object(Bucket=SRC, Key="blob.bin")["ETag"].strip('"')
    reader = RangedReader(
        link.clients().s3, SRC, "blob.bin", etag=etag, size=len(data), range_size=RANGE, ranges_in_flight=3
    )
    parts = []
    while chunk := reader.read(40_000):
        parts.append(chunk)
        time.sleep(0.01)  # the consumer's own work: 4 MB/s, a quarter of the slow start's wait per read
    reader.close()
    assert b"".join(parts) == data
    assert link.ranges == ["whole"]


@pytest.mark.parametrize("fmt", ["csv", "gz", "zip"])
def test_csv_gz_and_zip_loads_reassemble_the_ranges_exactly(lake: Lake, fmt: str) -> None:
    # rows that compress poorly: the gz and zip spans are ranges too (a zip member is read 2 MiB at a
    # time, so the first range starts 4 MiB past the stream: ~24 MB of CSV, ~13 MB zipped)
    rows = (8 if fmt == "zip" else 3) * ROWS
    data = noisy_rows(rows)
    _stage(lake, fmt, data)
    link = Link()
    assert _ok(handle_event(event(), link.clients(), tuning=TUNE))["rows"] == rows
    assert lake.read_catalog() == _expected(data)
    # the ranges requested after the stream (for a zip, its member's; not the directory's reads)
    after = max(i for i, r in enumerate(link.ranges) if r == "whole" or r.endswith("-"))
    spans = link.closed_ranges(link.ranges[after:])
    assert len(spans) >= 3 and _contiguous(spans), link.ranges
    assert max(last + 1 - first for first, last in spans) == RANGE


def test_ranges_are_in_flight_together_never_more_than_the_bound(lake: Lake) -> None:
    data = _stage_csv(lake)
    link = Link(rate=0.8e6)  # the stream moves a range in 0.33 s: ranges answering in 0.1 s pay
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def sent(request: Any, **_: Any) -> None:
        if _closed(request):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.1)  # a first-byte latency: ranges started together overlap here

    def answered(context: dict[str, Any], **_: Any) -> None:
        rng = context.get("range", "")
        if rng.startswith("bytes=") and not rng.endswith("-"):
            with lock:
                state["now"] -= 1

    link.session.events.register("before-send.s3.GetObject", sent)
    link.session.events.register("after-call.s3.GetObject", answered)
    assert _ok(handle_event(event(), link.clients(), tuning=TUNE))["rows"] == 3 * ROWS
    assert lake.read_catalog() == _expected(data)
    assert state["max"] == TUNE.ranges_in_flight, state


def test_a_range_dropped_mid_body_is_fetched_again_alone_from_where_it_dropped(lake: Lake) -> None:
    data = _stage_csv(lake)
    link = Link()
    dropped: list[str] = []

    def drop_the_third(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        rng = context.get("range", "")
        closed = rng.startswith("bytes=") and not rng.endswith("-")
        if closed and not dropped and len(link.closed_ranges()) >= 3:
            dropped.append(rng)
            parsed["Body"] = _DroppingBody(parsed["Body"])

    link.session.events.register("after-call.s3.GetObject", drop_the_third)
    assert _ok(handle_event(event(), link.clients(), tuning=TUNE))["rows"] == 3 * ROWS
    assert lake.read_catalog() == _expected(data)

    assert len(dropped) == 1
    first, last = (int(x) for x in dropped[0].removeprefix("bytes=").split("-"))
    resumed = f"bytes={first + (last - first + 1) // 2}-{last}"
    spans = link.closed_ranges()
    # the dropped range once more, from its first missing byte; every other range exactly once
    assert link.ranges.count(resumed) == 1, link.ranges
    assert len(spans) == len(set(spans)) and _contiguous(
        [s for s in spans if f"bytes={s[0]}-{s[1]}" != resumed]
    )


def test_an_object_overwritten_during_the_read_fails_the_load_naming_it(lake: Lake) -> None:
    key = _stage(lake, "csv", csv_rows(1000))
    _ok(handle_event(event()))
    before = lake.read_catalog()
    time.sleep(1.1)
    _stage(lake, "csv", noisy_rows(3 * ROWS, customer="D"))
    link = Link()

    def overwrite_once(context: dict[str, Any], **_: Any) -> None:
        if context.get("range") == "whole" and not overwritten:
            overwritten.append(True)
            lake.put(key, noisy_rows(3 * ROWS, customer="E"))  # another writer, between listing and reading

    overwritten: list[bool] = []
    link.session.events.register("after-call.s3.GetObject", overwrite_once)
    out = handle_event(event(), link.clients(), tuning=TUNE)

    assert out["statusCode"] == 500, out
    assert out["stage"] == "read"
    assert out["body"].startswith(f"Error: read: s3://{SRC}/{key} changed since it was listed"), out["body"]
    assert lake.read_catalog() == before  # the day as it was


@pytest.mark.parametrize(("fmt", "infer"), [("csv", False), ("gz", False), ("zip", False), ("csv", True)])
def test_an_export_overwritten_after_its_listing_is_named_as_changed(
    lake: Lake, fmt: str, infer: bool
) -> None:
    # a zip's first reads are its end record and central directory, and a new table's first read
    # types its columns (infer_types), both away from the stream: a 412 there says the same
    key = _stage(lake, fmt, csv_rows(1000))
    if not infer:
        _ok(handle_event(event()))
    before = lake.partition() and lake.read_catalog()
    session = boto3.Session(region_name="us-east-1")
    overwritten: list[bool] = []

    def overwrite_once(**_: Any) -> None:
        if not overwritten:
            overwritten.append(True)
            _stage(lake, fmt, csv_rows(7))  # another writer, between listing and reading

    session.events.register("after-call.s3.ListObjectsV2", overwrite_once)
    out = handle_event(event(infer_types=infer), make_clients(session), tuning=TUNE)

    assert overwritten and out["statusCode"] == 500, out
    assert out["stage"] == "read"
    assert out["body"].startswith(f"Error: read: s3://{SRC}/{key} changed since it was listed"), out["body"]
    assert (lake.partition() and lake.read_catalog()) == before  # the day as it was (none: still none)


def test_a_403_on_a_later_range_is_access_denied(lake: Lake) -> None:
    key = _stage(lake, "csv", noisy_rows(3 * ROWS))
    link = Link()
    xml = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

    def deny_the_fourth(request: Any, **_: Any) -> Any:
        if _closed(request) and len(link.closed_ranges()) >= 4:
            return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, _Raw(xml))
        return None

    link.session.events.register("before-send.s3.GetObject", deny_the_fourth)
    out = handle_event(event(), link.clients(), tuning=TUNE)

    assert out["statusCode"] == 500, out
    assert out["body"] == (
        f"Error: read: cannot read s3://{SRC}/{key}: access denied (AccessDenied, 403); grant s3:GetObject "
        "on it (S3 also answers 403 for a key deleted since it was listed when the caller lacks an "
        "unconditioned s3:ListBucket)"
    )
    assert lake.partition() is None  # nothing registered for the day
