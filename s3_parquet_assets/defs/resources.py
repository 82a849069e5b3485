"""Resources: where AWS is (dagster-aws ``S3Resource``) and what to load (``LoadSettings``).

``LoadSettings`` holds the fields of the core's event contract, so one set of settings serves the UI,
backfills, the schedule, the sensor and the Lambda event: :meth:`LoadSettings.event` is exactly the
event the Lambda (or ``s3-parquet-assets load``) would be given for a day.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import boto3
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field

from s3_parquet_assets.core import AwsClients, LoadEvent, make_clients, parse_event, retry_config

__all__ = ["LoadSettings", "S3Resource", "aws_clients"]

_OPTIONAL = (
    "zip_member",
    "transform",
    "kms_key_id",
    "expected_bucket_owner",
)


class LoadSettings(ConfigurableResource):  # type: ignore[type-arg,misc]
    """The load settings: the event contract's fields (without ``data_ref``, which is the partition),
    plus where a load runs."""

    bucket_src: str = Field(description="Bucket the daily CSV exports land in.")
    bucket_dstn: str = Field(description="Bucket the Parquet table is written to.")
    prefix: str = Field(
        default="", description="Listing prefix of a day's exports; '{data_ref}' is replaced by the day."
    )
    substr: str = Field(description="Only keys containing this substring are a day's export.")
    schema_spec: str = Field(
        description='The event\'s "schema" as JSON: ["id", "name"] or [{"name": "id", "type": "bigint"}].'
    )
    pathoutput: str = Field(description="Table root under bucket_dstn (no partition folder).")
    table: str = Field(description="Glue table name.")
    database: str = Field(description="Glue database (must exist).")
    partitions_cols: list[str] = Field(default=["data_ref"], description="Partition columns, data_ref first.")
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    header: bool = False
    zip_member: str | None = None
    transform: str | None = None
    allow_empty: bool = False
    sse: str = "AES256"
    kms_key_id: str | None = None
    expected_bucket_owner: str | None = None
    run_on: Literal["local", "lambda"] = Field(
        default="local", description="'local': load in the Dagster run; 'lambda': invoke the function."
    )
    lambda_function: str = Field(default="", description="Lambda function name or ARN (run_on=lambda).")
    lambda_concurrency: int = Field(
        default=4, ge=1, description="Days invoked at once on Lambda during a multi-day run."
    )

    @classmethod
    def from_event(cls, event: Mapping[str, Any], **extra: Any) -> LoadSettings:
        """Settings from an event-shaped mapping (``data_ref`` is ignored: the partition sets it)."""
        fields = {k: v for k, v in event.items() if k not in ("data_ref", "schema")}
        return cls(schema_spec=json.dumps(event["schema"]), **fields, **extra)

    def schema_list(self) -> list[Any]:
        """``schema_spec`` decoded."""
        value = json.loads(self.schema_spec)
        if not isinstance(value, list):
            raise ValueError("schema_spec must be a JSON list")
        return value

    def event(self, data_ref: str) -> dict[str, Any]:
        """The event contract for one day: what the Lambda / CLI would be given."""
        try:
            schema: Any = self.schema_list()
        except (ValueError, json.JSONDecodeError) as exc:
            schema = f"<invalid schema_spec: {exc}>"
        ev: dict[str, Any] = {
            "bucket_src": self.bucket_src,
            "bucket_dstn": self.bucket_dstn,
            "prefix": self.prefix,
            "substr": self.substr,
            "schema": schema,
            "pathoutput": self.pathoutput,
            "table": self.table,
            "database": self.database,
            "partitions_cols": list(self.partitions_cols),
            "data_ref": data_ref,
            "delimiter": self.delimiter,
            "quotechar": self.quotechar,
            "encoding": self.encoding,
            "header": self.header,
            "allow_empty": self.allow_empty,
            "sse": self.sse,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value:
                ev[name] = value
        return ev

    def load_event(self, data_ref: str) -> LoadEvent:
        """The validated event for one day (raises ``LoadError("validate", ...)``)."""
        return parse_event(self.event(data_ref))

    @property
    def listing_root(self) -> str:
        """The fixed part of ``prefix`` before ``{data_ref}``: what the sensor lists."""
        return self.prefix.split("{data_ref}", 1)[0]


def aws_clients(s3: S3Resource) -> AwsClients:
    """The core's clients (S3, Glue, and the boto3 session awswrangler uses), configured like ``s3``.

    Unset fields fall back to boto3's standard chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
    ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``,
    instance and task roles.
    """
    session = boto3.Session(
        aws_access_key_id=s3.aws_access_key_id,
        aws_secret_access_key=s3.aws_secret_access_key,
        aws_session_token=s3.aws_session_token,
        region_name=s3.region_name,
        profile_name=s3.profile_name,
    )
    return make_clients(
        session,
        region_name=s3.region_name,
        endpoint_url=s3.endpoint_url,
        config=retry_config(max_attempts=max(s3.max_attempts, 1)),
    )
