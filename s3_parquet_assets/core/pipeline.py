"""The load: newest source object -> new Parquet version of the day -> verified -> Glue flip -> cleanup.

Safety of the day (the unit of replacement):

1. the new version is written to a fresh folder ``{pathoutput}/data_ref={day}/load-{load_id}/``;
2. it is verified (object sizes, and row counts read back from the Parquet footers);
3. the Glue partition is moved to it with one UpdatePartition, so catalog readers see the old day or
   the new day, never a mix;
4. only then is everything else under ``data_ref={day}/`` removed (old versions, leftovers of failed
   or killed loads, stale multipart uploads).

A failure before step 3 leaves the previous version in place and registered; a kill leaves at most an
unregistered folder that the next load's step 4 removes.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from . import catalog
from .aws import AwsClients, make_clients
from .deadline import Deadline, DeadlineReached
from .errors import LoadError, Stage
from .event import PARTITION_KEY, LoadEvent, parse_event
from .header import Layout, read_layout
from .lease import DayLease, LeaseHeld, lease_key
from .memory import configure_memory
from .reader import (
    apply_transform,
    arrow_schema,
    glue_type_of,
    iter_batches,
    load_transform,
    open_source,
    read_first_block,
)
from .s3io import S3SeekableReader
from .schema import ColumnPlan, infer_columns, plan_columns
from .source import SourceObject, find_latest
from .tuning import Tuning
from .writer import DatasetWriter, WrittenFile, write_all

# Glue partition parameters the loader records (who loaded the day, from what).
PARAM_SOURCE_KEY = "s3pa.source"
PARAM_SOURCE_ETAG = "s3pa.source_etag"
PARAM_LOAD_ID = "s3pa.load_id"
PARAM_ROWS = "s3pa.rows"

__all__ = [
    "COLUMN_REPORTS",
    "PARAM_LOAD_ID",
    "PARAM_ROWS",
    "PARAM_SOURCE_ETAG",
    "PARAM_SOURCE_KEY",
    "LoadResult",
    "Tuning",
    "error_response",
    "handle_event",
    "loaded_etag",
    "new_load_id",
    "run_load",
]

log = logging.getLogger(__name__)


# LoadResult's lists of what the export's header held and what the drift policies did with it, which
# every adapter reports (Dagster metadata, the Lambda's Pipes report) as comma-separated text.
COLUMN_REPORTS = ("file_columns", "ignored_columns", "added_columns", "null_columns")


@dataclass
class LoadResult:
    """What a load did. ``as_dict`` is the ``result`` of the Lambda-style response."""

    data_ref: str
    load_id: str
    source_key: str
    source_uri: str
    etag: str
    size: int
    last_modified: str
    rows: int
    bytes: int
    files: int
    output_location: str
    partition_location: str
    table: str
    previous_location: str | None
    bytes_read: int
    seconds: float
    removed_objects: int = 0
    file_keys: list[str] = field(default_factory=list)
    # The export's header (empty without one) and what extra_columns / missing_columns did with it.
    file_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    null_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_load_id(now: datetime | None = None) -> str:
    """A sortable, unique id: UTC time plus a random suffix."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class _Stages:
    """Tracks the current stage so an unexpected exception is reported against it."""

    def __init__(self) -> None:
        self.current: Stage = "validate"

    def __call__(self, stage: Stage) -> _Stages:
        self.current = stage
        return self


def _extra_put_args(ev: LoadEvent) -> dict[str, Any]:
    args: dict[str, Any] = {"ServerSideEncryption": ev.sse}
    if ev.kms_key_id:
        args["SSEKMSKeyId"] = ev.kms_key_id
    if ev.expected_bucket_owner:
        args["ExpectedBucketOwner"] = ev.expected_bucket_owner
    return args


def _owner(ev: LoadEvent) -> dict[str, Any]:
    return {"ExpectedBucketOwner": ev.expected_bucket_owner} if ev.expected_bucket_owner else {}


def _verify(clients: AwsClients, ev: LoadEvent, f: WrittenFile) -> None:
    """Read back what was written: the object exists with the written size, and its Parquet footer
    holds the written row count (footers only, never the data). Runs as each file completes."""
    head = clients.s3.head_object(Bucket=ev.bucket_dstn, Key=f.key, **_owner(ev))
    size = int(head["ContentLength"])
    if size != f.bytes:
        raise LoadError("write", f"s3://{ev.bucket_dstn}/{f.key}: wrote {f.bytes} bytes, found {size}")
    with S3SeekableReader(clients.s3, ev.bucket_dstn, f.key, size=size, extra=_owner(ev)) as raw:
        meta = pq.read_metadata(raw)
    if meta.num_rows != f.rows:
        raise LoadError(
            "write",
            f"s3://{ev.bucket_dstn}/{f.key}: wrote {f.rows} rows, its footer says {meta.num_rows}",
        )


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


def cleanup_day(clients: AwsClients, ev: LoadEvent, keep_prefix: str | None) -> int:
    """Remove everything under the day's folder except ``keep_prefix``, and abort every multipart upload
    left under it (this load's own objects are complete by now and the lease keeps other loads of the day
    out, so any upload still open is an orphan, even one under ``keep_prefix``: a CreateMultipartUpload
    whose answer was lost and retried). Returns the number of objects removed."""
    stale = [
        k
        for k in _list_keys(clients, ev.bucket_dstn, ev.day_prefix, _owner(ev))
        if keep_prefix is None or not k.startswith(keep_prefix)
    ]
    removed = _delete_keys(clients, ev.bucket_dstn, stale, _owner(ev))
    paginator = clients.s3.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=ev.bucket_dstn, Prefix=ev.day_prefix, **_owner(ev)):
        for upload in page.get("Uploads", []):
            clients.s3.abort_multipart_upload(
                Bucket=ev.bucket_dstn, Key=upload["Key"], UploadId=upload["UploadId"], **_owner(ev)
            )
            log.info("aborted stale multipart upload of s3://%s/%s", ev.bucket_dstn, upload["Key"])
    if removed:
        log.info("removed %d old object(s) under s3://%s/%s", removed, ev.bucket_dstn, ev.day_prefix)
    return removed


def _discard(clients: AwsClients, ev: LoadEvent, prefix: str) -> None:
    """Best-effort removal of a failed load's own folder (a kill leaves it to the next load)."""
    try:
        keys = list(_list_keys(clients, ev.bucket_dstn, prefix, _owner(ev)))
        _delete_keys(clients, ev.bucket_dstn, keys, _owner(ev))
    except Exception as exc:  # the failure being reported matters more; next load cleans up
        log.warning("could not remove s3://%s/%s after the failure: %s", ev.bucket_dstn, prefix, exc)


def _reading(batches: Iterator[pa.RecordBatch], uri: str) -> Iterator[pa.RecordBatch]:
    """An AWS error raised while pulling batches comes from reading the source: report it as such
    (not as a failed upload, which is what the write loop around it would say)."""
    try:
        yield from batches
    except (ClientError, BotoCoreError) as exc:
        raise _read_error(uri, exc) from exc


def _read_error(uri: str, exc: ClientError | BotoCoreError) -> LoadError:
    """An AWS error while reading the source ``uri`` (a 403 names the permission it needs)."""
    code = str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""
    if code in ("AccessDenied", "403"):
        return LoadError(
            "read",
            f"cannot read {uri}: access denied ({code}, 403); grant s3:GetObject on it (S3 also "
            "answers 403 for a key deleted since it was listed when the caller lacks an unconditioned "
            "s3:ListBucket)",
        )
    return LoadError("read", f"cannot read {uri}: {exc}")


def _peek(batches: Iterator[pa.RecordBatch]) -> tuple[pa.RecordBatch | None, Iterator[pa.RecordBatch]]:
    first = next(batches, None)
    if first is None:
        return None, iter(())
    return first, itertools.chain([first], batches)


def _read_header(open_stream: Callable[[], Any], ev: LoadEvent, uri: str) -> tuple[Layout, Callable[[], Any]]:
    """The export's columns (:func:`.reader.read_layout`), an AWS error reported as a read of ``uri``."""
    try:
        return read_layout(open_stream, ev, uri)
    except (ClientError, BotoCoreError) as exc:
        raise _read_error(uri, exc) from exc


def _needs_wrangler(
    clients: AwsClients, ev: LoadEvent, table_def: dict[str, Any] | None, transformed: bool, layout: Layout
) -> bool:
    """Whether the catalog step will call awswrangler: to create or extend the table, or to register
    a day that has no partition yet (moving an existing partition is one boto3 call)."""
    if "awswrangler" in sys.modules:
        return False
    declared = {c.name: c.glue_type for c in layout.columns if c.name not in ev.extra_partitions}
    if transformed or not catalog.table_is_current(table_def, declared):
        return True
    return not catalog.day_partitions(clients.glue, ev.database, ev.table, ev.data_ref)


def _prefetch_wrangler() -> None:
    """Import awswrangler (and pandas: ~0.35 s of CPU) on a side thread while the last row group is
    encoded and the last upload completes, instead of after them. Done only once the stream is over:
    imported earlier it adds its ~60 MB to the streaming peak. The import lock makes the catalog
    step's own ``import`` wait for it."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the catalog step imports it again and reports a failure
            importlib.import_module("awswrangler")

    threading.Thread(target=load, name="import-awswrangler", daemon=True).start()


def _latest(clients: AwsClients, ev: LoadEvent) -> SourceObject:
    return find_latest(
        clients.s3, ev.bucket_src, ev.source_prefix, ev.substr, expected_bucket_owner=ev.expected_bucket_owner
    )


def _same_source(
    clients: AwsClients, ev: LoadEvent, source: SourceObject | None, held: LeaseHeld
) -> LeaseHeld:
    """A refusal by another load's lease, saying whether that load reads the export this one would
    (then an asynchronous caller can end as "already being loaded")."""
    if held.source_etag is None:
        return held
    try:
        ours = source or _latest(clients, ev)
    except LoadError as exc:
        log.info("cannot compare with the lease holder's export: %s", exc)
        return held
    if ours.etag != held.source_etag:
        return held
    return LeaseHeld(
        f"{held.message}; that is the export this load would read: day {ev.data_ref} is already being "
        "loaded from it",
        uri=held.uri,
        holder=held.holder,
        same_source=True,
    )


@contextlib.contextmanager
def _holding(
    lease: DayLease, clients: AwsClients, ev: LoadEvent, source: SourceObject | None
) -> Iterator[DayLease]:
    """Hold the day's lease for the block; a refusal says whether the holder loads the same export."""
    try:
        lease.acquire()
    except LeaseHeld as held:
        raise _same_source(clients, ev, source, held) from held
    try:
        yield lease
    finally:
        lease.release()


def _infer(clients: AwsClients, plan: ColumnPlan, src: SourceObject, tune: Tuning) -> ColumnPlan:
    """Type a names-only schema from the export's first block (read as text, then the stream is
    closed; the load reads the export again, typed, from the start)."""
    ev = plan.event
    first = read_first_block(
        lambda: open_source(clients.s3, src, ev), ev, src.uri, block_size=tune.block_size
    )
    inferred = infer_columns(ev, first)
    log.info(
        "inferred from the first block of %s: %s",
        src.uri,
        ", ".join(f"{c.name} {c.glue_type}" for c in inferred.event.schema),
    )
    return inferred


def _until(
    limit: Deadline, batches: Iterator[pa.RecordBatch], step: str, day: str
) -> Iterator[pa.RecordBatch]:
    """The batches, stopping (``DeadlineReached``) once the deadline's margin is reached."""
    for batch in batches:
        limit.check("read", step, day)
        yield batch


def run_load(
    ev: LoadEvent,
    clients: AwsClients,
    *,
    load_id: str | None = None,
    tuning: Tuning | None = None,
    source: SourceObject | None = None,
    deadline: float | None = None,
) -> LoadResult:
    """Run one load of ``ev.data_ref``. Raises :class:`LoadError` naming the stage on failure.

    ``source`` skips the listing when the caller already picked the object (the Dagster asset does).
    ``deadline`` (a ``time.monotonic()`` moment, see :func:`.deadline.deadline_from_remaining_ms`):
    the load stops cleanly before it (:class:`.deadline.DeadlineReached`: uploads aborted, its folder
    removed, the lease released, the day unchanged), and the day's lease never lasts past it.
    Another load holding the day's lease raises :class:`.lease.LeaseHeld`, with ``same_source`` set
    when the holder is loading the very export this load would.
    """
    tune = tuning or Tuning()
    if tune.tune_memory:
        configure_memory()
    started = time.monotonic()
    load_id = load_id or new_load_id()
    stage = _Stages()
    limit = Deadline(deadline, tune.stop_margin_seconds)
    try:
        return _run(ev, clients, load_id, tune, source, started, stage, limit)
    except LoadError:
        raise
    except (ClientError, BotoCoreError) as exc:
        raise LoadError(stage.current, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        log.exception("unexpected failure in stage %s", stage.current)
        raise LoadError(stage.current, f"{type(exc).__name__}: {exc}") from exc


def _run(
    ev: LoadEvent,
    clients: AwsClients,
    load_id: str,
    tune: Tuning,
    source: SourceObject | None,
    started: float,
    stage: _Stages,
    limit: Deadline,
) -> LoadResult:
    transform = load_transform(ev.transform) if ev.transform else None

    stage("catalog")
    catalog.ensure_database(clients.glue, ev.database)
    declared_columns = {c.name: c.glue_type for c in ev.data_columns} if ev.typed and not transform else None
    table_def = catalog.check_table(clients.glue, ev.database, ev.table, ev.partitions_cols, declared_columns)
    plan = plan_columns(ev, table_def)  # a names-only schema takes an existing table's types
    ev = plan.event

    stage("lock")
    limit.check("lock", "before taking the lease", ev.data_ref)
    lease = DayLease(
        clients.s3,
        ev.bucket_dstn,
        lease_key(ev.table_root, ev.data_ref),
        load_id,
        ttl=timedelta(seconds=tune.lease_ttl_seconds),
        expires_by=limit.wall(),
        extra=_extra_put_args(ev),
    )
    with _holding(lease, clients, ev, source):  # held from the listing to the end of the cleanup
        stage("list")
        src = source or _latest(clients, ev)
        lease.record_source(src.uri, src.etag)

        stage("read")
        if plan.infer:
            plan = _infer(clients, plan, src, tune)
            ev = plan.event
        limit.check("read", f"before reading {src.uri}", ev.data_ref)
        bytes_read = 0
        next_log = 64 * 1024 * 1024

        def on_read(n: int) -> None:
            nonlocal bytes_read, next_log
            bytes_read += n
            if bytes_read >= next_log:
                log.info("read %d MiB of %s", bytes_read >> 20, src.uri)
                next_log += 64 * 1024 * 1024

        layout, opener = _read_header(lambda: open_source(clients.s3, src, ev, on_read=on_read), ev, src.uri)
        if layout.added and transform is None:
            try:
                catalog.check_added_columns(table_def, ev.database, ev.table, layout.added, src.uri)
            except LoadError:
                opener().close()  # the opened source, its first bytes read
                raise
        batches: Iterator[pa.RecordBatch] = iter_batches(
            opener,
            ev,
            src.uri,
            block_size=tune.block_size,
            use_threads=tune.csv_threads,
            read_ahead_blocks=tune.read_ahead_blocks,
            layout=layout,
            origin=plan.origin,
        )
        batches = _until(limit, _reading(batches, src.uri), f"while reading {src.uri}", ev.data_ref)
        declared = arrow_schema(layout.columns)
        if transform is not None:
            first, batches = _peek(apply_transform(batches, transform, src.uri, ev.extra_partitions))
            if first is not None:
                declared = first.schema
        stored = pa.schema([f for f in declared if f.name not in ev.extra_partitions])
        version_prefix = f"{ev.day_prefix}load-{load_id}/"
        writer = DatasetWriter(
            clients.s3,
            ev.bucket_dstn,
            version_prefix,
            stored,
            partition_cols=ev.extra_partitions,
            row_group_rows=tune.row_group_rows,
            row_group_bytes=tune.row_group_bytes,
            part_size=tune.part_size,
            max_in_flight=tune.max_in_flight,
            file_bytes=tune.file_bytes,
            extra=_extra_put_args(ev),
            check=lambda written: _verify(clients, ev, written),
            encoders=tune.encoder_threads,
        )
        try:
            try:
                write_all(batches, writer, threaded=tune.threaded, depth=tune.queue_depth)
            except (ClientError, BotoCoreError) as exc:
                raise LoadError(
                    "write", f"upload under s3://{ev.bucket_dstn}/{version_prefix} failed: {exc}"
                ) from exc
            log.info("read %d bytes, %d rows from %s", bytes_read, writer.rows, src.uri)
            if writer.rows and _needs_wrangler(clients, ev, table_def, transform is not None, layout):
                _prefetch_wrangler()  # overlaps the import with the last encode and upload
            if writer.rows == 0 and not ev.allow_empty:
                raise LoadError(
                    "read",
                    f"{src.uri} has no data rows; refusing to replace day {ev.data_ref} with an empty one "
                    '(set "allow_empty": true to load an empty day)',
                )
            stage("write")
            files = writer.close(empty_file=True)
            pa.default_memory_pool().release_unused()  # hand the encoder's memory back before the catalog
            rows = sum(f.rows for f in files)
            log.info(
                "wrote %d rows in %d file(s) under s3://%s/%s",
                rows,
                len(files),
                ev.bucket_dstn,
                version_prefix,
            )

            stage("catalog")
            limit.check("catalog", "before the catalog step", ev.data_ref)
            columns_types = {f.name: glue_type_of(f.type) for f in stored}
            declared_types = {c.name: c.glue_type for c in layout.columns}
            if transform is None:
                columns_types = {name: declared_types[name] for name in columns_types}
            partitions_types = {PARTITION_KEY: "string"}
            for col in ev.extra_partitions:
                partitions_types[col] = (
                    declared_types[col] if transform is None else glue_type_of(declared.field(col).type)
                )
            table_location = f"s3://{ev.bucket_dstn}/{ev.table_root}/"
            if not catalog.table_is_current(table_def, columns_types):
                catalog.upsert_table(
                    clients.session,
                    ev.database,
                    ev.table,
                    table_location,
                    columns_types,
                    partitions_types,
                    config=clients.config,
                )
            old = catalog.day_partitions(clients.glue, ev.database, ev.table, ev.data_ref)

            stage("swap")
            limit.check("swap", "before the swap", ev.data_ref)
            lease.check()
            new: dict[tuple[str, ...], str] = {}
            params: dict[tuple[str, ...], dict[str, str]] = {}
            for f in files:
                folder = f.key.rsplit("/", 1)[0] + "/"
                values = (ev.data_ref, *f.values)
                new[values] = f"s3://{ev.bucket_dstn}/{folder}"
                params[values] = {
                    PARAM_SOURCE_KEY: src.uri,
                    PARAM_SOURCE_ETAG: src.etag,
                    PARAM_LOAD_ID: load_id,
                    PARAM_ROWS: str(f.rows),
                }
            catalog.flip_partitions(
                clients.session, clients.glue, ev.database, ev.table, new, old, columns_types, params
            )
        except BaseException:
            writer.abort()
            _discard(clients, ev, version_prefix)
            raise

        # Still ours? A load that stalled past its lease after the flip may meet a newer load's version here,
        # registered and served: its cleanup would delete it. Leave the cleanup to the next load instead.
        try:
            lease.check()
        except LoadError as exc:
            raise LoadError(
                "lock", f"{exc.message}; the day was swapped, but its cleanup is left to the next load"
            ) from exc
        removed = cleanup_day(clients, ev, version_prefix)
        previous = sorted(set(old.values()))
        result = LoadResult(
            data_ref=ev.data_ref,
            load_id=load_id,
            source_key=src.key,
            source_uri=src.uri,
            etag=src.etag,
            size=src.size,
            last_modified=src.last_modified.isoformat(),
            rows=rows,
            bytes=sum(f.bytes for f in files),
            files=len(files),
            output_location=f"s3://{ev.bucket_dstn}/{ev.day_prefix}",
            partition_location=f"s3://{ev.bucket_dstn}/{version_prefix}",
            table=f"{ev.database}.{ev.table}",
            previous_location=previous[0] if len(previous) == 1 else (", ".join(previous) or None),
            bytes_read=bytes_read,
            seconds=round(time.monotonic() - started, 3),
            removed_objects=removed,
            file_keys=[f.key for f in files],
            file_columns=list(layout.file_columns),
            ignored_columns=list(layout.ignored),
            added_columns=list(layout.added),
            null_columns=list(layout.missing),
        )
        log.info("loaded %s: %d rows from %s in %.2fs", result.table, result.rows, src.uri, result.seconds)
        return result


def loaded_etag(clients: AwsClients, ev: LoadEvent) -> str | None:
    """The source ETag the day's registered partition(s) were loaded from (``None``: never loaded, or
    a day fanned out to several partitions whose loads disagree)."""
    if not ev.extra_partitions:
        state = catalog.partition_state(clients.glue, ev.database, ev.table, [ev.data_ref])
        return None if state is None else state[1].get(PARAM_SOURCE_ETAG)
    etags = {
        p.get(PARAM_SOURCE_ETAG)
        for p in catalog.day_parameters(clients.glue, ev.database, ev.table, ev.data_ref)
    }
    return etags.pop() if len(etags) == 1 else None


def error_response(exc: LoadError) -> dict[str, Any]:
    """The Lambda-style failure: ``{"statusCode": 500, "body": "Error: <stage>: <message>", "stage"}``,
    plus ``"lease"`` (the holder's ``load_id``, ``source_etag``, ``expires_at`` and ``same_source``)
    when another load holds the day, and ``"deadline": true`` when the load stopped before its
    deadline."""
    out: dict[str, Any] = {
        "statusCode": 500,
        "body": f"Error: {exc.stage}: {exc.message}",
        "stage": exc.stage,
    }
    if isinstance(exc, LeaseHeld):
        out["lease"] = {
            "load_id": exc.holder.get("load_id"),
            "source_etag": exc.source_etag,
            "expires_at": exc.holder.get("expires_at"),
            "same_source": exc.same_source,
        }
    if isinstance(exc, DeadlineReached):
        out["deadline"] = True
    return out


def handle_event(
    event: Mapping[str, Any],
    clients: AwsClients | None = None,
    *,
    now: datetime | None = None,
    tuning: Tuning | None = None,
    make: Callable[[], AwsClients] = make_clients,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Validate ``event``, run the load and return the Lambda-style response:
    ``{"statusCode": 200, "body": "Success", "result": {...}}`` or
    ``{"statusCode": 500, "body": "Error: <stage>: <message>", ...}`` (:func:`error_response`).
    Validation happens before any client is made or any AWS call. ``deadline``: see :func:`run_load`."""
    try:
        ev = parse_event(event, now=now)
        result = run_load(ev, clients or make(), tuning=tuning, deadline=deadline)
    except LoadError as exc:
        log.error("load failed: %s", exc)
        return error_response(exc)
    return {"statusCode": 200, "body": "Success", "result": result.as_dict()}
