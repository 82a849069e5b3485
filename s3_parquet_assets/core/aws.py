"""AWS clients, made in one place with one retry policy.

Everything that talks to AWS (boto3 and awswrangler alike) gets its clients from :func:`make_clients`,
so the retry mode, pool size and endpoint (``AWS_ENDPOINT_URL`` for an emulator) are set once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client

__all__ = ["AwsClients", "make_clients", "retry_config"]


def retry_config(*, max_attempts: int = 8, pool: int = 16) -> Config:
    """The botocore config every client uses: adaptive retries with backoff, a pool wide enough for
    the parallel part uploads, and bounded timeouts."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        max_pool_connections=pool,
        connect_timeout=10,
        read_timeout=120,
        tcp_keepalive=True,
    )


@dataclass
class AwsClients:
    """The clients a load needs, sharing one session (and so its event hooks and credentials)."""

    session: boto3.Session
    s3: S3Client
    glue: GlueClient
    config: Config


def make_clients(
    session: boto3.Session | None = None,
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    config: Config | None = None,
) -> AwsClients:
    """Make the S3 and Glue clients for a load.

    Parameters
    ----------
    session
        A boto3 session (default: a new one from the standard environment: credentials, region,
        ``AWS_ENDPOINT_URL``). Event hooks registered on it reach every client made from it.
    region_name, endpoint_url
        Overrides for the session's region and endpoint.
    config
        A botocore config (default: :func:`retry_config`).
    """
    sess = session or boto3.Session(region_name=region_name)
    cfg = config or retry_config()
    kwargs: dict[str, Any] = {"config": cfg}
    if region_name:
        kwargs["region_name"] = region_name
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    s3 = sess.client("s3", **kwargs)
    glue = sess.client("glue", **kwargs)
    return AwsClients(session=sess, s3=s3, glue=glue, config=cfg)
