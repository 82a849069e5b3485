"""Removing objects under a day's folder: the cleanup after the flip (everything but the new version)
and the discard of a failed load's own folder."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from .aws import AwsClients
from .errors import LoadError
from .event import LoadEvent
from .stage import step

__all__ = ["bucket_owner", "cleanup_day", "discard", "discarded_on_failure"]

log = logging.getLogger(__name__)


def bucket_owner(ev: LoadEvent) -> dict[str, Any]:
    """The ``ExpectedBucketOwner`` argument of every call on the destination bucket (if set)."""
    return {"ExpectedBucketOwner": ev.expected_bucket_owner} if ev.expected_bucket_owner else {}


def _list_keys(clients: AwsClients, bucket: str, prefix: str, owner: Mapping[str, Any]) -> Iterator[str]:
    pages = clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **owner)
    for page in pages:
        for obj in page.get("Contents", []):
            yield obj["Key"]


def _delete_keys(clients: AwsClients, bucket: str, keys: list[str], owner: Mapping[str, Any]) -> int:
    removed = 0
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        resp = clients.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}, **owner
        )
        errors = resp.get("Errors", [])
        if errors:
            first = errors[0]
            raise LoadError(
                "swap",
                f"could not delete s3://{bucket}/{first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}",
            )
        removed += len(chunk)
    return removed


@step("swap")
def cleanup_day(clients: AwsClients, ev: LoadEvent, keep_prefix: str | None) -> int:
    """Remove everything under the day's folder except ``keep_prefix``, and abort every multipart upload
    left under it (this load's own objects are complete by now and the lease keeps other loads of the day
    out, so any upload still open is an orphan, even one under ``keep_prefix``: a CreateMultipartUpload
    whose answer was lost and retried). Returns the number of objects removed."""
    owner = bucket_owner(ev)
    stale = [
        k
        for k in _list_keys(clients, ev.bucket_dstn, ev.day_prefix, owner)
        if keep_prefix is None or not k.startswith(keep_prefix)
    ]
    removed = _delete_keys(clients, ev.bucket_dstn, stale, owner)
    paginator = clients.s3.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=ev.bucket_dstn, Prefix=ev.day_prefix, **owner):
        for upload in page.get("Uploads", []):
            clients.s3.abort_multipart_upload(
                Bucket=ev.bucket_dstn, Key=upload["Key"], UploadId=upload["UploadId"], **owner
            )
            log.info("aborted stale multipart upload of s3://%s/%s", ev.bucket_dstn, upload["Key"])
    if removed:
        log.info("removed %d old object(s) under s3://%s/%s", removed, ev.bucket_dstn, ev.day_prefix)
    return removed


def discard(clients: AwsClients, ev: LoadEvent, prefix: str) -> None:
    """Best-effort removal of a failed load's own folder (a kill leaves it to the next load)."""
    try:
        keys = list(_list_keys(clients, ev.bucket_dstn, prefix, bucket_owner(ev)))
        _delete_keys(clients, ev.bucket_dstn, keys, bucket_owner(ev))
    except Exception as exc:  # the failure being reported matters more; next load cleans up
        log.warning("could not remove s3://%s/%s after the failure: %s", ev.bucket_dstn, prefix, exc)


@contextlib.contextmanager
def discarded_on_failure(clients: AwsClients, ev: LoadEvent, prefix: str) -> Iterator[None]:
    """Remove the load's folder ``prefix`` if the block fails (the day's registered version is not
    under it until the flip), then let the failure through."""
    try:
        yield
    except BaseException:
        discard(clients, ev, prefix)
        raise
