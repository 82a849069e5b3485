"""Where AWS is: dagster-aws ``S3Resource``, turned into the core's clients.

What to load is not a resource: it is the table's :class:`~s3_parquet_assets.core.TableSpec` from the
tables file (the same declaration the Lambda and the CLI read), bound into each table's assets.
"""

from __future__ import annotations

import boto3
from dagster_aws.s3 import S3Resource

from s3_parquet_assets.core import AwsClients, make_clients, retry_config

__all__ = ["S3Resource", "aws_clients"]


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
