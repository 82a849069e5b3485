"""S3 ObjectCreated notifications: which tables, which days.

Each created object (``s3://bucket/key``, key URL-decoded) is matched against every served table's
source (:meth:`core.Tables.match`): the source bucket, the prefix with ``{data_ref}`` standing for a
real ``YYYYMMDD`` day, and ``substr`` in the key. Each (table, day) that matches is loaded once, even
when several objects of one notification point at it; a key matching several tables loads each of
them. A table whose prefix has no ``{data_ref}`` takes the day from the key with
``S3PA_DATA_REF_PATTERN`` (a key the pattern does not match is an error: the day cannot be told).
Keys that match no table, folder markers, non-ObjectCreated records and the ``s3:TestEvent`` sent
when a notification is configured are ignored, each with the reason (200, ``"Ignored: ..."``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from ..core import LoadError, Tables, TableSpec
from .settings import ENV_DATA_REF_PATTERN

__all__ = ["day_from_key", "route", "s3_objects"]

log = logging.getLogger(__name__)


def s3_objects(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every ObjectCreated record, keys URL-decoded."""
    if event.get("source") == "aws.s3":
        detail = event.get("detail") or {}
        try:
            return [(str(detail["bucket"]["name"]), str(detail["object"]["key"]))]
        except (KeyError, TypeError):
            raise LoadError(
                "validate", "S3 'Object Created' event without detail.bucket.name/object.key"
            ) from None
    out: list[tuple[str, str]] = []
    for i, record in enumerate(event.get("Records", [])):
        name = str(record.get("eventName", ""))
        if not name.startswith("ObjectCreated:"):
            log.info("ignoring S3 record %d: event %s", i, name or "?")
            continue
        try:
            bucket = str(record["s3"]["bucket"]["name"])
            key = unquote_plus(str(record["s3"]["object"]["key"]))
        except (KeyError, TypeError):
            raise LoadError("validate", f"S3 record {i} without s3.bucket.name/s3.object.key") from None
        out.append((bucket, key))
    return out


def day_from_key(key: str, pattern: re.Pattern[str]) -> str:
    """The day ``S3PA_DATA_REF_PATTERN`` finds in ``key`` (``data_ref`` group, or year/month/day)."""
    match = pattern.search(key)
    if match is None:
        raise LoadError(
            "validate",
            f"S3 key {key!r} does not match {ENV_DATA_REF_PATTERN} {pattern.pattern!r}; cannot tell its day",
        )
    groups = match.groupdict()
    if groups.get("data_ref"):
        return re.sub(r"\D", "", groups["data_ref"])
    return f"{groups['year']}{int(groups['month']):02d}{int(groups['day']):02d}"


def _why_not(spec: TableSpec, bucket: str, key: str) -> str:
    """Why a key is not this table's export (for the one-table message)."""
    ev = spec.probe
    if bucket != ev.bucket_src:
        return f"not in the source bucket {ev.bucket_src!r} of table {spec.name}"
    if ev.substr not in key:
        return f"key does not contain {ev.substr!r} (table {spec.name})"
    day = " (a YYYYMMDD day for {data_ref})" if "{data_ref}" in ev.prefix else ""
    return f"outside the source prefix {ev.prefix!r}{day} of table {spec.name}"


def _no_match(tables: Tables, bucket: str, key: str) -> str:
    if len(tables) == 1:
        return f"s3://{bucket}/{key}: {_why_not(tables.tables[0], bucket, key)}"
    return f"s3://{bucket}/{key}: matches no table's source (tables: {', '.join(tables.names)})"


def route(
    event: Mapping[str, Any], tables: Tables, pattern: re.Pattern[str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """``(table name, load event)`` per distinct (table, day) among the created objects, ordered by
    day then by declaration, plus why other objects were ignored."""
    order = {name: i for i, name in enumerate(tables.names)}
    loads: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    ignored: list[str] = []
    for bucket, key in s3_objects(event):
        if key.endswith("/"):
            ignored.append(f"s3://{bucket}/{key}: a folder marker")
            continue
        matches = tables.match(bucket, key)
        if not matches:
            ignored.append(_no_match(tables, bucket, key))
            continue
        for spec, found in matches:
            day = found or day_from_key(key, pattern)
            log.info("s3://%s/%s: table %s, day %s", bucket, key, spec.name, day)
            loads.setdefault((day, order[spec.name]), (spec.name, spec.event(day)))
    return [loads[k] for k in sorted(loads)], ignored
