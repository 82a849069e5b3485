"""The multipart writer against the moto server: bytes land intact, with per-part CRC32 checksums
S3 keeps as the object's composite checksum, never more parts in flight than allowed, and an abort
leaves nothing behind."""

from __future__ import annotations

import base64
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from s3_parquet_assets.core import AwsClients
from s3_parquet_assets.core.s3io import MIN_PART, PartBuffers, S3MultipartWriter

from ..helpers import DST, Lake


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def test_multipart_object_is_byte_exact_with_composite_crc32(lake: Lake, clients: AwsClients) -> None:
    data = os.urandom(MIN_PART * 2 + 12345)
    writes = [data[i : i + 1_000_003] for i in range(0, len(data), 1_000_003)]  # not part-aligned
    sink = S3MultipartWriter(clients.s3, DST, "t/obj.bin", part_size=MIN_PART, max_in_flight=2)
    for w in writes:
        sink.write(w)
    etag = sink.complete()
    # the writer's rule: parts of exactly part_size bytes, whatever the writes, and a shorter last one
    parts = [data[i : i + MIN_PART] for i in range(0, len(data), MIN_PART)]

    got = clients.s3.get_object(Bucket=DST, Key="t/obj.bin")
    assert got["Body"].read() == data
    assert etag == got["ETag"].strip('"')
    assert len(parts) >= 2 and etag.endswith(f"-{len(parts)}")

    head = clients.s3.head_object(Bucket=DST, Key="t/obj.bin", ChecksumMode="ENABLED")
    composite = base64.b64encode(_crc32(b"".join(_crc32(p) for p in parts))).decode()
    # the checksum of exactly these parts (S3 shows it as "<crc>-<parts>"; the emulator without the count)
    assert head["ChecksumCRC32"].split("-")[0] == composite
    assert lake.multipart_uploads() == []


def test_small_object_is_one_put(lake: Lake, clients: AwsClients) -> None:
    calls: list[str] = []
    clients.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    sink = S3MultipartWriter(clients.s3, DST, "t/small.bin", part_size=MIN_PART)
    sink.write(b"abc")
    sink.write(bytearray(b"def"))
    sink.complete()
    assert calls == ["PutObject"]
    assert clients.s3.get_object(Bucket=DST, Key="t/small.bin")["Body"].read() == b"abcdef"


def _track_in_flight(clients: AwsClients) -> dict[str, int]:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def started(model: Any, **_: Any) -> None:
        if model.name == "UploadPart":
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])

    def finished(model: Any, **_: Any) -> None:
        if model.name == "UploadPart":
            with lock:
                state["now"] -= 1

    clients.s3.meta.events.register("before-call.s3", started)
    clients.s3.meta.events.register("after-call.s3", finished)
    return state


def test_parts_in_flight_never_exceed_the_bound(lake: Lake, clients: AwsClients) -> None:
    state = _track_in_flight(clients)
    sink = S3MultipartWriter(clients.s3, DST, "t/many.bin", part_size=MIN_PART, max_in_flight=2)
    chunk = os.urandom(MIN_PART)
    for _ in range(8):
        sink.write(chunk)
    sink.complete()
    assert 1 <= state["max"] <= 2
    assert clients.s3.head_object(Bucket=DST, Key="t/many.bin")["ContentLength"] == 8 * MIN_PART


def test_shared_slots_bound_several_objects_together(lake: Lake, clients: AwsClients) -> None:
    state = _track_in_flight(clients)
    slots = threading.BoundedSemaphore(2)
    with ThreadPoolExecutor(max_workers=6) as pool:  # enough workers: only the slots can bound it
        sinks = [
            S3MultipartWriter(
                clients.s3, DST, f"t/obj-{i}.bin", part_size=MIN_PART, max_in_flight=3, pool=pool, slots=slots
            )
            for i in range(3)
        ]
        chunk = os.urandom(MIN_PART)
        for _ in range(3):
            for sink in sinks:  # interleaved, as files of one load are
                sink.write(chunk)
        for sink in sinks:
            sink.complete()
    assert 1 <= state["max"] <= 2
    assert lake.keys("t/") == ["t/obj-0.bin", "t/obj-1.bin", "t/obj-2.bin"]


def test_failed_part_aborts_and_leaves_no_upload(lake: Lake, clients: AwsClients) -> None:
    def refuse_third(params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 3:
            raise ConnectionAbortedError("injected: part 3 refused")

    clients.s3.meta.events.register("provide-client-params.s3.UploadPart", refuse_third)
    sink = S3MultipartWriter(clients.s3, DST, "t/broken.bin", part_size=MIN_PART, max_in_flight=1)
    chunk = os.urandom(MIN_PART)
    with pytest.raises(ConnectionAbortedError, match="part 3"):
        for _ in range(6):
            sink.write(chunk)
        sink.complete()
    sink.abort()
    assert lake.multipart_uploads() == []
    assert lake.keys("t/") == []


def test_part_buffers_are_recycled_not_reallocated(lake: Lake, clients: AwsClients) -> None:
    taken: list[bytearray] = []  # the buffers themselves: alive, so distinct ones have distinct ids

    class Counting(PartBuffers):
        def take(self) -> bytearray:
            buf = super().take()
            taken.append(buf)
            return buf

    data = os.urandom(MIN_PART * 7 + 99)
    buffers = Counting(MIN_PART, keep=3)
    sink = S3MultipartWriter(clients.s3, DST, "t/recycled.bin", max_in_flight=2, buffers=buffers)
    for i in range(0, len(data), 3_000_017):
        sink.write(data[i : i + 3_000_017])
    sink.complete()

    assert clients.s3.get_object(Bucket=DST, Key="t/recycled.bin")["Body"].read() == data
    assert len(taken) == 8  # one buffer per part
    # two parts in flight and one filling: never more than three distinct buffers for the eight parts
    assert len({id(b) for b in taken}) <= 3
