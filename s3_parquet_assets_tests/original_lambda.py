"""The original Lambda this project replaces, as the drop-in tests' way to build a live table.

The algorithm of ``../shared/bench/seed_lambda.py`` (itself a faithful re-creation of the seed's
Lambda), kept here so the tests run from a fresh clone: list, pick the latest key containing the
substring, read the whole CSV (zip-aware) into pandas with the event's names, delete the day's
partition folder, ``wr.s3.to_parquet(dataset=True, mode="append", partition_cols, database, table)``.
pandas types the columns and awswrangler registers those types in Glue (``id bigint``, ``amount
double``, ``flag boolean``...), with uuid-named Parquet files under ``data_ref=<day>/``.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta
from typing import Any

import awswrangler as wr
import boto3
import pandas as pd


def get_latest_matching_object(s3_client: Any, bucket_src: str, prefix: str, substr: str) -> str:
    latest = None
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket_src, Prefix=prefix):
        for obj in page.get("Contents", []):
            if substr in obj["Key"] and (latest is None or obj["LastModified"] > latest["LastModified"]):
                latest = obj
    if latest is None:
        raise FileNotFoundError(f"no object in s3://{bucket_src}/{prefix} containing {substr!r}")
    return str(latest["Key"])


def load_data(
    df: pd.DataFrame,
    pathoutput: str,
    table: str,
    database: str,
    data_ref: str,
    partitions_cols: list[str],
    bucket_dstn: str,
    boto3_session: boto3.Session,
) -> None:
    df["data_ref"] = data_ref
    part = f"s3://{bucket_dstn}/{pathoutput}/data_ref={data_ref}/"
    wr.s3.delete_objects(part, boto3_session=boto3_session)
    wr.s3.to_parquet(
        df=df,
        path=f"s3://{bucket_dstn}/{pathoutput}/",
        dataset=True,
        mode="append",
        partition_cols=partitions_cols,
        database=database,
        table=table,
        boto3_session=boto3_session,
    )


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        data_ref = event.get("data_ref") or (datetime.now() - timedelta(days=1)).strftime("%Y%m%d")
        session = boto3.Session()
        s3 = session.client("s3")
        key = get_latest_matching_object(s3, event["bucket_src"], event.get("prefix", ""), event["substr"])
        body = s3.get_object(Bucket=event["bucket_src"], Key=key)["Body"].read()
        if key.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                body = z.read(z.namelist()[0])
        df = pd.read_csv(
            io.BytesIO(body),
            names=event["schema"],
            header=None,
            compression="gzip" if key.endswith(".gz") else None,
        )
        load_data(
            df,
            event["pathoutput"],
            event["table"],
            event["database"],
            data_ref,
            event["partitions_cols"],
            event["bucket_dstn"],
            session,
        )
        return {"statusCode": 200, "body": "Success"}
    except Exception as exc:  # the original returns the error as a message
        return {"statusCode": 500, "body": f"Error: {exc!r}"}
