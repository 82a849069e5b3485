"""The benchmark's S3 link model (benchmarks/s3link.py) in front of the moto server: what boto3 and
pyarrow see through it is what they see from S3 (round trips, ranges, preconditions, multipart), a
write through the link is never answered from a stale copy, and the latency and bandwidth it models
are really applied (lower bounds only)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pyarrow.fs as pafs
import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]


def _load_s3link() -> ModuleType:
    spec = importlib.util.spec_from_file_location("s3link", ROOT / "benchmarks" / "s3link.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["s3link"] = module
    spec.loader.exec_module(module)
    return module


s3link = _load_s3link()
Link = tuple[str, Any]


@pytest.fixture
def open_link(aws: str) -> Iterator[Callable[..., Link]]:
    """Start links in front of the (reset) moto server; each returns (url, s3 client through it)."""
    stops: list[Callable[[], None]] = []

    def start(latency: float = 0.0, mbps: float = 0) -> Link:
        url, stop = s3link.start_link(aws, latency=latency, mbps=mbps)
        stops.append(stop)
        return url, boto3.client("s3", endpoint_url=url, region_name="us-east-1")

    yield start
    for stop in stops:
        stop()


def direct(aws: str) -> Any:
    return boto3.client("s3", endpoint_url=aws, region_name="us-east-1")


BODY = os.urandom(3 * 1024 * 1024 + 17)


def test_put_then_get_round_trips_the_bytes_and_headers(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    put = s3.put_object(
        Bucket="bkt", Key="dir/obj.csv", Body=BODY, ContentType="text/csv", Metadata={"k": "v"}
    )
    got = s3.get_object(Bucket="bkt", Key="dir/obj.csv")
    assert got["Body"].read() == BODY
    assert got["ETag"] == put["ETag"]
    assert got["ContentLength"] == len(BODY)
    assert got["ContentType"] == "text/csv"
    assert got["Metadata"] == {"k": "v"}
    assert got["ResponseMetadata"]["HTTPHeaders"]["accept-ranges"] == "bytes"
    head = s3.head_object(Bucket="bkt", Key="dir/obj.csv")
    assert head["ContentLength"] == len(BODY) and head["ETag"] == put["ETag"]
    assert head["LastModified"] == got["LastModified"]
    listed = s3.list_objects_v2(Bucket="bkt", Prefix="dir/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("dir/obj.csv", len(BODY))]


def test_ranged_get_answers_206_with_exactly_the_range(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=BODY)
    for asked, first, last in (
        ("bytes=100-1099", 100, 1099),
        ("bytes=0-0", 0, 0),
        (f"bytes={len(BODY) - 10}-", len(BODY) - 10, len(BODY) - 1),
        ("bytes=-5", len(BODY) - 5, len(BODY) - 1),
        (f"bytes=1000-{len(BODY) + 50}", 1000, len(BODY) - 1),
    ):
        got = s3.get_object(Bucket="bkt", Key="k", Range=asked)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, asked
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(BODY)}", asked
        assert got["ContentLength"] == last - first + 1, asked
        assert got["Body"].read() == BODY[first : last + 1], asked
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="bkt", Key="k", Range=f"bytes={len(BODY)}-")
    assert err.value.response["Error"]["Code"] == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_reads_come_from_the_links_copy_not_the_emulator(open_link: Callable[..., Link], aws: str) -> None:
    """After the first read the object's bytes are the link's: deleting it behind the link's back
    (straight in the emulator) leaves ranged reads through the link answering from the copy."""
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=BODY)
    assert s3.get_object(Bucket="bkt", Key="k", Range="bytes=0-9")["Body"].read() == BODY[:10]
    direct(aws).delete_object(Bucket="bkt", Key="k")
    got = s3.get_object(Bucket="bkt", Key="k", Range="bytes=2000000-2000999")
    assert got["Body"].read() == BODY[2000000:2001000]


def test_if_match_mismatch_is_412_and_a_match_is_served(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="k", Body=BODY)["ETag"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="bkt", Key="k", IfMatch='"0123456789abcdef0123456789abcdef"', Range="bytes=0-9")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    got = s3.get_object(Bucket="bkt", Key="k", IfMatch=etag, Range="bytes=5-9")
    assert got["Body"].read() == BODY[5:10]


def test_missing_key_is_404_through_the_link(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="bkt", Key="absent")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket="bkt", Key="absent")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_overwriting_or_deleting_a_key_drops_the_copy(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"old bytes")
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"old bytes"
    new_etag = s3.put_object(Bucket="bkt", Key="k", Body=b"the new bytes")["ETag"]
    got = s3.get_object(Bucket="bkt", Key="k")
    assert got["Body"].read() == b"the new bytes" and got["ETag"] == new_etag
    s3.copy_object(
        Bucket="bkt",
        Key="k",
        CopySource={"Bucket": "bkt", "Key": "k"},
        Metadata={"x": "1"},
        MetadataDirective="REPLACE",
    )
    assert s3.get_object(Bucket="bkt", Key="k")["Metadata"] == {"x": "1"}
    s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "k"}]})
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="bkt", Key="k")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"


def test_multipart_upload_through_the_link_completes(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1024 * 1024 + 3)]
    up = s3.create_multipart_upload(Bucket="bkt", Key="big", ChecksumAlgorithm="CRC32")
    done = [
        {
            "PartNumber": n,
            **{
                k: v
                for k, v in s3.upload_part(
                    Bucket="bkt",
                    Key="big",
                    UploadId=up["UploadId"],
                    PartNumber=n,
                    Body=body,
                    ChecksumAlgorithm="CRC32",
                ).items()
                if k in ("ETag", "ChecksumCRC32")
            },
        }
        for n, body in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket="bkt", Key="big", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == b"".join(parts)


def test_pyarrow_s3_filesystem_reads_ranges_through_the_link(open_link: Callable[..., Link]) -> None:
    url, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=BODY)
    fs = pafs.S3FileSystem(
        endpoint_override=url.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
    )
    with fs.open_input_file("bkt/k") as f:
        assert f.size() == len(BODY)
        assert f.read_at(1000, 123456) == BODY[123456:124456]
    with fs.open_output_stream("bkt/out") as out:
        out.write(BODY)
    assert s3.get_object(Bucket="bkt", Key="out")["Body"].read() == BODY


def test_every_request_waits_the_first_byte_latency(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link(latency=0.2)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x" * 100)
    s3.get_object(Bucket="bkt", Key="k")["Body"].read()  # the copy is filled
    for call in (
        lambda: s3.head_object(Bucket="bkt", Key="k"),
        lambda: s3.get_object(Bucket="bkt", Key="k", Range="bytes=0-9")["Body"].read(),
        lambda: s3.list_objects_v2(Bucket="bkt"),
        lambda: s3.put_object(Bucket="bkt", Key="k2", Body=b"y"),
    ):
        t = time.perf_counter()
        call()
        assert time.perf_counter() - t >= 0.2


def test_bandwidth_is_capped_per_connection_both_ways(open_link: Callable[..., Link]) -> None:
    _, s3 = open_link(mbps=8)
    s3.create_bucket(Bucket="bkt")
    body = os.urandom(4_000_000)
    t = time.perf_counter()
    s3.put_object(Bucket="bkt", Key="k", Body=body)
    assert time.perf_counter() - t >= 0.5  # 4 MB up at 8 MB/s
    s3.head_object(Bucket="bkt", Key="k")  # fills the copy (the emulator's side is not capped)
    t = time.perf_counter()
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == body
    assert time.perf_counter() - t >= 0.5  # 4 MB down at 8 MB/s


def test_stats_count_what_the_loader_asked_then_start_again(open_link: Callable[..., Link]) -> None:
    url, s3 = open_link()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=BODY)
    urllib.request.urlopen(f"{url}/__s3link__/stats").read()
    s3.get_object(Bucket="bkt", Key="k")["Body"].read()
    s3.get_object(Bucket="bkt", Key="k", Range="bytes=0-99")["Body"].read()
    s3.head_object(Bucket="bkt", Key="k")
    s3.list_objects_v2(Bucket="bkt")
    stats = json.loads(urllib.request.urlopen(f"{url}/__s3link__/stats").read())
    assert stats["requests"] == 4
    assert (stats["get"], stats["ranged_get"], stats["head"], stats["forwarded"]) == (1, 1, 1, 1)
    assert stats["bytes_out"] >= len(BODY) + 100
    assert json.loads(urllib.request.urlopen(f"{url}/__s3link__/stats").read()) == {}
