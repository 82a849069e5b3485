"""The Parquet writer's output shape, read back from the moto server: snappy, statistics, row groups
of the asked size, and dictionary encoding only where the first batch says it pays."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.awsrequest import AWSResponse

from s3_parquet_assets.core import AwsClients, Tuning, handle_event, make_clients
from s3_parquet_assets.core.writer import DatasetWriter, WrittenFile, dictionary_columns, write_all

from ..helpers import DST, Lake, event, noisy_rows
from ..reliability.support import _Raw


def _batch(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array([f"{i:09d}" for i in range(start, start + n)]),
            "category": pa.array(["alpha", "beta", "gamma"][i % 3] for i in range(start, start + n)),
            "amount": pa.array([str((i * 7) % 500) for i in range(start, start + n)]),
        }
    )


def test_dictionary_is_kept_for_repetitive_columns_only() -> None:
    sample = _batch(0, 5000)
    assert dictionary_columns(sample, sample.schema) == ["category", "amount"]
    # a small sample says too little: every column keeps the dictionary
    assert dictionary_columns(_batch(0, 50), sample.schema) is True
    typed = pa.record_batch(
        {
            "ts": pa.array(range(2000), pa.timestamp("us")),
            "price": pa.array([Decimal(i % 7) for i in range(2000)], pa.decimal128(10, 2)),
            "ok": pa.array([i % 2 == 0 for i in range(2000)]),
        }
    )
    assert dictionary_columns(typed, typed.schema) == ["price", "ok"]


def test_written_files_have_the_promised_shape(lake: Lake, clients: AwsClients) -> None:
    schema = _batch(0, 1).schema
    writer = DatasetWriter(
        clients.s3,
        DST,
        "t/load-1/",
        schema,
        row_group_rows=20_000,
        part_size=5 << 20,
        max_in_flight=2,
    )
    write_all((_batch(i, 5000) for i in range(0, 50_000, 5000)), writer)
    files = writer.close()

    assert [f.key for f in files] == ["t/load-1/part-00000.snappy.parquet"]
    assert files[0].rows == 50_000
    body = clients.s3.get_object(Bucket=DST, Key=files[0].key)["Body"].read()
    parquet = pq.ParquetFile(pa.BufferReader(body))
    meta = parquet.metadata
    assert meta.num_rows == 50_000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [20_000, 20_000, 10_000]
    chunks = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(3)}
    assert all(c.compression == "SNAPPY" and c.is_stats_set for c in chunks.values())
    assert chunks["id"].statistics.min == "000000000"
    assert not chunks["id"].has_dictionary_page  # unique ids go plain
    assert chunks["category"].has_dictionary_page
    assert chunks["amount"].has_dictionary_page
    table = parquet.read()
    assert table.column("id").to_pylist() == [f"{i:09d}" for i in range(50_000)]
    assert table.column("category").to_pylist()[:4] == ["alpha", "beta", "gamma", "alpha"]


# -- several encoders ------------------------------------------------------------------------------
class _Wire:
    """S3 requests as the server sees them (botocore hooks on the session the clients come from):
    the order of part uploads by key, and the most part uploads ever in flight at once. Each part
    upload is held back a little, so uploads would pile up past any bound that did not hold."""

    def __init__(self, sess: boto3.Session, *, fail_key: str = "", delay: float = 0.02) -> None:
        self.parts: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.failed: list[str] = []
        self._fail_key = fail_key
        self._delay = delay
        self._lock = threading.Lock()
        sess.events.register("before-send.s3.UploadPart", self._send)
        sess.events.register("after-call.s3.UploadPart", self._done)
        sess.events.register("after-call-error.s3.UploadPart", self._done)

    def _send(self, request: Any, **_kwargs: Any) -> AWSResponse | None:
        key = request.url.split("?", 1)[0].split(f"/{DST}/", 1)[-1]
        with self._lock:
            self.parts.append(key)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self._delay)
        if self._fail_key and key.endswith(self._fail_key):
            with self._lock:
                self.in_flight -= 1
                self.failed.append(key)
            xml = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, _Raw(xml))
        return None

    def _done(self, **_kwargs: Any) -> None:
        with self._lock:
            self.in_flight -= 1


def _noisy(start: int, n: int) -> pa.RecordBatch:
    """Rows of random text (Parquet cannot shrink them), so a few thousand make a multipart file."""
    rnd = random.Random(start)
    return pa.record_batch(
        {
            "id": pa.array([f"{i:09d}" for i in range(start, start + n)]),
            "region": pa.array([("north", "south")[i % 2] for i in range(start, start + n)]),
            "blob": pa.array([f"{rnd.getrandbits(256):064x}" for _ in range(n)]),
        }
    )


def _footer_rows(s3: Any, key: str) -> int:
    body = s3.get_object(Bucket=DST, Key=key)["Body"].read()
    return int(pq.ParquetFile(pa.BufferReader(body)).metadata.num_rows)


@pytest.mark.parametrize("encoders", [2, 3])
def test_encoders_fill_files_in_parallel_under_one_bound_on_parts(lake: Lake, encoders: int) -> None:
    sess = boto3.Session(region_name="us-east-1")
    wire = _Wire(sess)
    s3 = make_clients(sess).s3
    checked: dict[str, int] = {}

    def check(written: WrittenFile) -> None:  # what the pipeline's footer check does, recorded
        checked[written.key] = _footer_rows(s3, written.key)
        assert checked[written.key] == written.rows

    schema = _noisy(0, 1).drop_columns(["region"]).schema
    writer = DatasetWriter(
        s3,
        DST,
        "t/load-1/",
        schema,
        row_group_rows=40_000,  # 40_000 / encoders rows per row group: about 1 MiB
        part_size=5 << 20,
        max_in_flight=2,
        check=check,
        encoders=encoders,
    )
    total = 480_000  # ~47 MiB of random text: several 5 MiB parts per file
    write_all((_noisy(i, 4000).drop_columns(["region"]) for i in range(0, total, 4000)), writer, depth=2)
    files = writer.close()

    # one file per encoder, each under its own name, each verified once its upload completed
    assert [f.key for f in files] == [f"t/load-1/part-{i:05d}.snappy.parquet" for i in range(encoders)]
    assert checked == {f.key: f.rows for f in files}
    assert sum(f.rows for f in files) == total
    group = -(-(40_000 // encoders) // 4000) * 4000  # whole batches up to the encoder's share
    for f in files:
        meta = pq.ParquetFile(pa.BufferReader(s3.get_object(Bucket=DST, Key=f.key)["Body"].read())).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert set(sizes[:-1]) == {group} and sizes[-1] <= group, sizes
    ids = sorted(r["id"] for r in lake.read_location(f"s3://{DST}/t/load-1/"))
    assert ids == [f"{i:09d}" for i in range(total)]
    # the files filled at the same time: their part uploads interleave
    firsts = {key: wire.parts.index(key) for key in set(wire.parts)}
    lasts = {key: len(wire.parts) - 1 - wire.parts[::-1].index(key) for key in set(wire.parts)}
    assert len(firsts) == encoders
    assert max(firsts.values()) < min(lasts.values()), wire.parts
    # and yet never more than max_in_flight parts at once over all of them
    assert wire.most_in_flight == 2
    assert lake.multipart_uploads() == []


def test_one_encoder_fills_one_file_at_a_time(lake: Lake) -> None:
    sess = boto3.Session(region_name="us-east-1")
    wire = _Wire(sess, delay=0)
    s3 = make_clients(sess).s3
    schema = _noisy(0, 1).drop_columns(["region"]).schema
    writer = DatasetWriter(
        s3, DST, "t/load-1/", schema, row_group_rows=10_000, part_size=5 << 20, max_in_flight=2
    )
    write_all((_noisy(i, 4000).drop_columns(["region"]) for i in range(0, 160_000, 4000)), writer)
    files = writer.close()
    assert [f.key for f in files] == ["t/load-1/part-00000.snappy.parquet"]
    assert files[0].rows == _footer_rows(s3, files[0].key) == 160_000
    meta = pq.ParquetFile(
        pa.BufferReader(s3.get_object(Bucket=DST, Key=files[0].key)["Body"].read())
    ).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [12_000] * 13 + [4_000]
    assert set(wire.parts) == {files[0].key}


def test_encoders_write_each_partition_in_its_own_files(lake: Lake) -> None:
    sess = boto3.Session(region_name="us-east-1")
    s3 = make_clients(sess).s3
    schema = _noisy(0, 1).drop_columns(["region"]).schema
    writer = DatasetWriter(
        s3,
        DST,
        "t/load-1/",
        schema,
        partition_cols=("region",),
        row_group_rows=16_000,
        part_size=5 << 20,
        max_in_flight=2,
        encoders=2,
    )
    write_all((_noisy(i, 4000) for i in range(0, 200_000, 4000)), writer, depth=2)
    files = writer.close()
    rows_of = {f.key: f.rows for f in files}
    for region, parity in (("north", 0), ("south", 1)):
        keys = [f.key for f in files if f.values == (region,)]
        assert keys == [f"t/load-1/region={region}/part-{i:05d}.snappy.parquet" for i in range(len(keys))]
        assert len(keys) == 2  # both encoders wrote this partition
        assert [_footer_rows(s3, k) for k in keys] == [rows_of[k] for k in keys]
        rows = lake.read_location(f"s3://{DST}/t/load-1/region={region}/")
        assert [r["id"] for r in rows] == [f"{i:09d}" for i in range(parity, 200_000, 2)]
        assert "region" not in rows[0]


def test_an_encoder_failure_fails_the_load_and_leaves_the_day_as_it_was(lake: Lake) -> None:
    lake.put("exports/20240115/sales.csv", noisy_rows(60_000))
    tuning = Tuning(part_size=5 << 20, row_group_rows=16_000, block_size=256 << 10, encoders=2)
    first = handle_event(event(), tuning=Tuning(encoders=1))
    assert first["statusCode"] == 200, first
    before = lake.read_catalog()
    objects = lake.keys()
    lake.put("exports/20240115/sales.csv", noisy_rows(400_000, start=1))

    sess = boto3.Session(region_name="us-east-1")
    wire = _Wire(sess, fail_key="part-00001.snappy.parquet", delay=0)
    started = time.monotonic()
    out = handle_event(event(), make_clients(sess), tuning=tuning)

    assert out["statusCode"] == 500, out
    assert out["body"].startswith("Error: write: upload under s3://dst-bucket/tables/sales/"), out["body"]
    assert "AccessDenied" in out["body"]
    assert wire.failed and all(k.endswith("/part-00001.snappy.parquet") for k in wire.failed)
    assert time.monotonic() - started < 60
    assert lake.multipart_uploads() == []
    assert lake.keys() == objects
    assert lake.read_catalog() == before
