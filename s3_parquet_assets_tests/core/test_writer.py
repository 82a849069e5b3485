"""The Parquet writer's output shape, read back from the moto server: snappy, statistics, row groups
of the asked size, and dictionary encoding only where the first batch says it pays."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from s3_parquet_assets.core import AwsClients
from s3_parquet_assets.core.writer import DatasetWriter, dictionary_columns, write_all

from ..helpers import DST, Lake


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
