"""Test helpers: stage source objects in the emulator and read the destination back."""

from __future__ import annotations

import gzip
import io
import json
import math
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from s3_parquet_assets.core import AwsClients

SRC = "src-bucket"
DST = "dst-bucket"
DB = "analytics"
TABLE = "sales"
PATHOUT = "tables/sales"
DAY = "20240115"
SCHEMA = ["id", "customer", "amount"]
TYPED = [
    {"name": "id", "type": "bigint"},
    {"name": "customer", "type": "string"},
    {"name": "amount", "type": "double"},
]


def stage_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


def event(**overrides: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "bucket_src": SRC,
        "bucket_dstn": DST,
        "prefix": "exports/{data_ref}/",
        "substr": "sales",
        "schema": SCHEMA,
        "pathoutput": PATHOUT,
        "table": TABLE,
        "database": DB,
        "partitions_cols": ["data_ref"],
        "data_ref": DAY,
    }
    ev.update(overrides)
    return {k: v for k, v in ev.items() if v is not None}


def csv_rows(n: int, start: int = 0, customer: str = "C") -> bytes:
    return "".join(f"{i},{customer}{i % 7},{i * 1.5}\n" for i in range(start, start + n)).encode()


def noisy_rows(n: int, start: int = 0, customer: str = "C") -> bytes:
    """Rows that compress poorly (random text), so a modest row count makes a multi-part Parquet file."""
    import random

    rnd = random.Random(start)
    return "".join(
        f"{i},{customer}{rnd.getrandbits(64):016x}{rnd.getrandbits(64):016x},{rnd.random() * 1000:.6f}\n"
        for i in range(start, start + n)
    ).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@dataclass
class Lake:
    clients: AwsClients

    def setup(self) -> None:
        for b in (SRC, DST):
            self.clients.s3.create_bucket(Bucket=b)
        self.clients.glue.create_database(DatabaseInput={"Name": DB})

    def put(self, key: str, body: bytes, bucket: str = SRC) -> None:
        self.clients.s3.put_object(Bucket=bucket, Key=key, Body=body)

    def put_newer(self, key: str, body: bytes, bucket: str = SRC) -> None:
        """Put a re-export strictly newer than every object already in ``key``'s folder.

        S3 keeps LastModified in whole seconds and a tie goes to the key that sorts first, so a
        re-export put in the same second as the export it replaces may lose: wait for the clock to
        pass the folder's newest second first."""
        folder = key.rsplit("/", 1)[0] + "/"
        listed = self.clients.s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])
        if listed:
            newest = max(o["LastModified"] for o in listed).timestamp()
            time.sleep(max(0.0, math.floor(newest) + 1.05 - time.time()))
        self.put(key, body, bucket)

    def keys(self, prefix: str = "", bucket: str = DST) -> list[str]:
        out: list[str] = []
        for page in self.clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def day_keys(self, day: str = DAY) -> list[str]:
        return self.keys(f"{PATHOUT}/data_ref={day}/")

    def multipart_uploads(self, bucket: str = DST) -> list[dict[str, Any]]:
        return list(self.clients.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def partition(self, day: str = DAY) -> dict[str, Any] | None:
        try:
            return self.clients.glue.get_partition(DatabaseName=DB, TableName=TABLE, PartitionValues=[day])[
                "Partition"
            ]  # type: ignore[return-value]
        except self.clients.glue.exceptions.EntityNotFoundException:
            return None

    def fs(self) -> pafs.S3FileSystem:
        endpoint = self.clients.s3.meta.endpoint_url
        return pafs.S3FileSystem(
            endpoint_override=endpoint.split("://", 1)[1],
            scheme="http",
            region="us-east-1",
            access_key="testing",
            secret_key="testing",
        )

    def read_location(self, location: str) -> list[dict[str, Any]]:
        """Rows of every Parquet file under an s3:// folder, sorted by id."""
        path = location.removeprefix("s3://").rstrip("/")
        table = ds.dataset(path, filesystem=self.fs(), format="parquet", partitioning=None).to_table()
        return sorted(table.to_pylist(), key=lambda r: str(r.get("id")))

    def read_catalog(self, day: str = DAY) -> list[dict[str, Any]]:
        """What a catalog reader sees for the day: the files at the Glue partition's location."""
        part = self.partition(day)
        assert part is not None, f"no Glue partition for {day}"
        return self.read_location(part["StorageDescriptor"]["Location"])

    def read_table_day(self, table: str, day: str) -> list[dict[str, Any]]:
        """Like :meth:`read_catalog`, for any table of the database."""
        part = self.clients.glue.get_partition(DatabaseName=DB, TableName=table, PartitionValues=[day])
        return self.read_location(part["Partition"]["StorageDescriptor"]["Location"])

    def read_day_folder(self, day: str = DAY) -> list[dict[str, Any]]:
        return self.read_location(f"s3://{DST}/{PATHOUT}/data_ref={day}/")


def dumps(obj: Any) -> str:
    return json.dumps(obj)
