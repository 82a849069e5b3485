"""Source selection: the newest object under a prefix whose key contains a substring."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import LoadError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .event import LoadEvent

__all__ = ["NoExportError", "SourceObject", "find_latest", "newest_export"]

log = logging.getLogger(__name__)


class NoExportError(LoadError):
    """Nothing under the day's prefix has a key containing the substring (stage ``list``)."""


@dataclass(frozen=True)
class SourceObject:
    """One S3 object picked as a day's source."""

    bucket: str
    key: str
    etag: str
    size: int
    last_modified: datetime

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_key": self.key,
            "source_uri": self.uri,
            "etag": self.etag,
            "size": self.size,
            "last_modified": self.last_modified.isoformat(),
        }


def find_latest(
    s3: S3Client, bucket: str, prefix: str, substr: str, *, expected_bucket_owner: str | None = None
) -> SourceObject:
    """List ``s3://bucket/prefix`` (all pages) and return the newest object whose key contains ``substr``.

    Ties on LastModified (S3 keeps whole seconds) go to the key that sorts first, as in the original
    Lambda (which kept the first one listed), so the pick never depends on listing order.
    Keys ending in ``/`` (folder markers) are skipped.

    Raises
    ------
    LoadError
        Stage ``list``: the bucket does not exist or cannot be listed, or nothing matches.
    """
    best: tuple[datetime, str] | None = None
    best_obj: dict[str, Any] | None = None
    listed = 0
    extra: dict[str, Any] = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra):
            for obj in page.get("Contents", []):
                listed += 1
                key = obj["Key"]
                if key.endswith("/") or substr not in key:
                    continue
                stamp = obj["LastModified"]
                if best is None or stamp > best[0] or (stamp == best[0] and key < best[1]):
                    best, best_obj = (stamp, key), dict(obj)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise LoadError("list", f"source bucket {bucket!r} does not exist") from exc
        if code in ("AccessDenied", "403"):
            raise LoadError(
                "list",
                f"cannot list s3://{bucket}/{prefix}: access denied (403); grant s3:ListBucket on "
                f"bucket {bucket!r} for this prefix",
            ) from exc
        raise LoadError("list", f"cannot list s3://{bucket}/{prefix}: {code or exc}") from exc
    log.info("listed %d object(s) under s3://%s/%s", listed, bucket, prefix)
    if best_obj is None:
        raise NoExportError(
            "list",
            f"no object under s3://{bucket}/{prefix} has a key containing {substr!r} "
            f"({listed} object(s) listed)",
        )
    picked = SourceObject(
        bucket=bucket,
        key=best_obj["Key"],
        etag=str(best_obj.get("ETag", "")).strip('"'),
        size=int(best_obj.get("Size", 0)),
        last_modified=best_obj["LastModified"],
    )
    log.info("picked %s (%d bytes, %s)", picked.uri, picked.size, picked.last_modified.isoformat())
    return picked


def newest_export(s3: S3Client, ev: LoadEvent) -> SourceObject | None:
    """The day's newest export (:func:`find_latest` for the event's day), ``None`` when there is none."""
    try:
        return find_latest(
            s3, ev.bucket_src, ev.source_prefix, ev.substr, expected_bucket_owner=ev.expected_bucket_owner
        )
    except NoExportError:
        return None
