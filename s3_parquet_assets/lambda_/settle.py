"""How an asynchronous invocation (schedule, S3 event) ends when its work is already done or under
way: a day whose Glue partition was loaded from the newest export is "already loaded", and a day
whose lease is held by a load of that very export is "already being loaded". Both are successes (no
function error, no retry, no dead-letter message); the schedule, an S3 event and Dagster can all fire
for one day, and only one of them needs to load it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..core import AwsClients, LoadError, check_day, handle_event

__all__ = ["already_being_loaded", "load_unless_current"]

log = logging.getLogger(__name__)


def already_being_loaded(response: Mapping[str, Any]) -> dict[str, Any]:
    """``response`` as a success when another load holds the day's lease for the same export."""
    lease = response.get("lease")
    if response.get("statusCode") == 200 or not isinstance(lease, Mapping) or not lease.get("same_source"):
        return dict(response)
    body = (
        f"Already being loaded: load {lease.get('load_id')} holds the day and reads the same export "
        f"(ETag {lease.get('source_etag')})"
    )
    log.info("%s", body)
    return {"statusCode": 200, "body": body, "lease": dict(lease)}


def load_unless_current(
    event: Mapping[str, Any], clients: AwsClients, *, deadline: float | None
) -> dict[str, Any]:
    """Load the day of ``event`` unless its partition was loaded from the newest export already."""
    try:
        check = check_day(clients, event)
    except LoadError:
        check = None  # the load itself names what is wrong
    if check is not None and check.verdict == "current":
        body = (
            f"Already loaded: day {check.data_ref} was loaded from s3://{event.get('bucket_src')}/"
            f"{check.source_key} (ETag {check.source_etag})"
        )
        log.info("%s", body)
        return {"statusCode": 200, "body": body}
    return already_being_loaded(handle_event(event, clients, deadline=deadline))
