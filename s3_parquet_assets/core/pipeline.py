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

The load runs as named steps, one per stage, each reporting failures in its own stage
(:mod:`.stage`): validate (the transform), catalog (the table checked, the columns planned), lock
(the day's lease), list (the export), read (types inferred, header, drift policies, the rows),
write (stream, close, verify), catalog (the table brought up to date), swap (the flip), lock (the
lease still held), swap (the cleanup, :mod:`.cleanup`). The lease is held from the listing to the
end of the cleanup; the catalog and swap steps live in :mod:`.swap`.
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
from .cleanup import bucket_owner, cleanup_day, discarded_on_failure
from .deadline import Deadline, DeadlineReached
from .errors import LoadError
from .event import LoadEvent, parse_event
from .header import Layout, read_layout
from .lease import DayLease, LeaseHeld, lease_key
from .memory import configure_memory
from .reader import (
    TransformFn,
    apply_transform,
    arrow_schema,
    iter_batches,
    load_transform,
    open_source,
    read_first_block,
)
from .s3io import S3SeekableReader
from .schema import ColumnPlan, infer_columns, plan_columns
from .source import SourceObject, find_latest
from .stage import AwsErrorText, pulled_as, reported_as, step
from .swap import (
    PARAM_LOAD_ID,
    PARAM_ROWS,
    PARAM_SOURCE_ETAG,
    PARAM_SOURCE_KEY,
    Registered,
    flip_day,
    register_table,
    still_ours,
)
from .tuning import Tuning
from .writer import DatasetWriter, WrittenFile, write_all

__all__ = [
    "COLUMN_REPORTS",
    "PARAM_LOAD_ID",
    "PARAM_ROWS",
    "PARAM_SOURCE_ETAG",
    "PARAM_SOURCE_KEY",
    "LoadResult",
    "Tuning",
    "cleanup_day",
    "error_response",
    "handle_event",
    "loaded_etag",
    "new_load_id",
    "run_load",
]

log = logging.getLogger(__name__)

_PROGRESS_BYTES = 64 * 1024 * 1024
"""The read step logs its progress every this many bytes of the export."""


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


# ---------------------------------------------------------------------------------------------------
# The steps, in order. Each is marked with its stage (:func:`.stage.step`): whatever it raises is
# reported in that stage, and the rows the write step pulls from the read step are reported as read.
# ---------------------------------------------------------------------------------------------------
@step("validate")
def _transform(ev: LoadEvent) -> TransformFn | None:
    """The event's per-batch transform, imported (``None``: none)."""
    return load_transform(ev.transform) if ev.transform else None


@step("catalog")
def _check_catalog(
    clients: AwsClients, ev: LoadEvent, transformed: bool
) -> tuple[dict[str, Any] | None, ColumnPlan]:
    """The database exists and the table, if there, agrees with the event; the columns to read (a
    names-only schema takes an existing table's types)."""
    catalog.ensure_database(clients.glue, ev.database)
    declared_columns = (
        {c.name: c.glue_type for c in ev.data_columns} if ev.typed and not transformed else None
    )
    table_def = catalog.check_table(clients.glue, ev.database, ev.table, ev.partitions_cols, declared_columns)
    return table_def, plan_columns(ev, table_def)


@step("lock")
def _day_lease(clients: AwsClients, ev: LoadEvent, load_id: str, tune: Tuning, limit: Deadline) -> DayLease:
    """The day's lease (not taken yet), never lasting past the deadline."""
    limit.check("lock", "before taking the lease", ev.data_ref)
    return DayLease(
        clients.s3,
        ev.bucket_dstn,
        lease_key(ev.table_root, ev.data_ref),
        load_id,
        ttl=timedelta(seconds=tune.lease_ttl_seconds),
        expires_by=limit.wall(),
        extra=_extra_put_args(ev),
    )


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
    with reported_as("lock"):
        try:
            lease.acquire()
        except LeaseHeld as held:
            raise _same_source(clients, ev, source, held) from held
    try:
        yield lease
    finally:
        lease.release()


@step("list")
def _list(clients: AwsClients, ev: LoadEvent, source: SourceObject | None, lease: DayLease) -> SourceObject:
    """The export to load (the newest matching object, unless the caller picked it), recorded in the
    lease."""
    src = source or _latest(clients, ev)
    lease.record_source(src.uri, src.etag)
    return src


# -- read ---------------------------------------------------------------------------------------
def _read_error(src: SourceObject, exc: ClientError | BotoCoreError) -> LoadError:
    """An AWS error while reading the source (a 403 names the permission it needs; a 412, from any
    read of it, says it changed since it was listed)."""
    uri = src.uri
    answer = exc.response if isinstance(exc, ClientError) else {}
    code = str(answer.get("Error", {}).get("Code", ""))
    status = answer.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("PreconditionFailed", "412") or status == 412:  # every GET of it carries IfMatch
        return LoadError(
            "read",
            f"{uri} changed since it was listed (it no longer has ETag {src.etag}); nothing of it was "
            "loaded, run the load again to read the new version",
        )
    if code in ("AccessDenied", "403"):
        return LoadError(
            "read",
            f"cannot read {uri}: access denied ({code}, 403); grant s3:GetObject on it (S3 also "
            "answers 403 for a key deleted since it was listed when the caller lacks an unconditioned "
            "s3:ListBucket)",
        )
    return LoadError("read", f"cannot read {uri}: {exc}")


@dataclass
class _BytesRead:
    """Counts the export's bytes as they are read, logging progress every ``_PROGRESS_BYTES``."""

    uri: str
    bytes: int = 0
    next_log: int = _PROGRESS_BYTES

    def __call__(self, n: int) -> None:
        self.bytes += n
        if self.bytes >= self.next_log:
            log.info("read %d MiB of %s", self.bytes >> 20, self.uri)
            self.next_log += _PROGRESS_BYTES


@dataclass(frozen=True)
class _Reading:
    """The read step's outcome: the export's rows, ready to be pulled."""

    event: LoadEvent  # with the types inferred, if inferred
    src: SourceObject
    layout: Layout
    batches: Iterator[pa.RecordBatch]  # every pull reported as read, naming the export
    schema: pa.Schema  # of the rows, partition columns included (a transform's output, if any)
    transformed: bool
    read: _BytesRead

    @property
    def stored(self) -> pa.Schema:
        """The columns the Parquet files hold (the extra partition columns live in the path)."""
        return pa.schema([f for f in self.schema if f.name not in self.event.extra_partitions])


def _open_export(
    clients: AwsClients,
    src: SourceObject,
    ev: LoadEvent,
    tune: Tuning,
    on_read: Callable[[int], None] | None = None,
) -> Callable[[], Any]:
    """How the export is opened: every read of it (inference, header, rows) goes through here."""
    return lambda: open_source(
        clients.s3,
        src,
        ev,
        on_read=on_read,
        range_size=tune.range_size,
        ranges_in_flight=tune.ranges_in_flight,
    )


def _infer(clients: AwsClients, plan: ColumnPlan, src: SourceObject, tune: Tuning) -> ColumnPlan:
    """Type a names-only schema from the export's first block (read as text, then the stream is
    closed; the load reads the export again, typed, from the start)."""
    ev = plan.event
    first = read_first_block(_open_export(clients, src, ev, tune), ev, src.uri, block_size=tune.block_size)
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


def _peek(batches: Iterator[pa.RecordBatch]) -> tuple[pa.RecordBatch | None, Iterator[pa.RecordBatch]]:
    first = next(batches, None)
    if first is None:
        return None, iter(())
    return first, itertools.chain([first], batches)


@step("read")
def _read(
    clients: AwsClients,
    plan: ColumnPlan,
    src: SourceObject,
    table_def: dict[str, Any] | None,
    transform: TransformFn | None,
    tune: Tuning,
    limit: Deadline,
) -> _Reading:
    """Open the export: infer a names-only schema's types, read the header and apply the drift
    policies (columns ``extra_columns: add`` adds must not clash with the table), and set up the
    stream of typed rows (through the transform, if any). Nothing is written yet."""
    aws_read_error: AwsErrorText = lambda exc: _read_error(src, exc)  # noqa: E731
    if plan.infer:
        with reported_as("read", aws=aws_read_error):
            plan = _infer(clients, plan, src, tune)
    ev = plan.event
    limit.check("read", f"before reading {src.uri}", ev.data_ref)
    counted = _BytesRead(src.uri)
    with reported_as("read", aws=aws_read_error):
        layout, opener = read_layout(_open_export(clients, src, ev, tune, on_read=counted), ev, src.uri)
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
    batches = _until(limit, batches, f"while reading {src.uri}", ev.data_ref)
    if transform is not None:
        batches = apply_transform(batches, transform, src.uri, ev.extra_partitions)
    batches = pulled_as("read", batches, aws=aws_read_error)
    schema = arrow_schema(layout.columns)
    if transform is not None:
        first, batches = _peek(batches)
        if first is not None:
            schema = first.schema
    return _Reading(ev, src, layout, batches, schema, transform is not None, counted)


# -- write --------------------------------------------------------------------------------------
def _extra_put_args(ev: LoadEvent) -> dict[str, Any]:
    args: dict[str, Any] = {"ServerSideEncryption": ev.sse}
    if ev.kms_key_id:
        args["SSEKMSKeyId"] = ev.kms_key_id
    if ev.expected_bucket_owner:
        args["ExpectedBucketOwner"] = ev.expected_bucket_owner
    return args


def _verify(clients: AwsClients, ev: LoadEvent, f: WrittenFile) -> None:
    """Read back what was written: the object exists with the written size, and its Parquet footer
    holds the written row count (footers only, never the data). Runs as each file completes."""
    owner = bucket_owner(ev)
    head = clients.s3.head_object(Bucket=ev.bucket_dstn, Key=f.key, **owner)
    size = int(head["ContentLength"])
    if size != f.bytes:
        raise LoadError("write", f"s3://{ev.bucket_dstn}/{f.key}: wrote {f.bytes} bytes, found {size}")
    with S3SeekableReader(clients.s3, ev.bucket_dstn, f.key, size=size, extra=owner) as raw:
        meta = pq.read_metadata(raw)
    if meta.num_rows != f.rows:
        raise LoadError(
            "write",
            f"s3://{ev.bucket_dstn}/{f.key}: wrote {f.rows} rows, its footer says {meta.num_rows}",
        )


@step("catalog")
def _needs_wrangler(clients: AwsClients, reading: _Reading, table_def: dict[str, Any] | None) -> bool:
    """Whether the catalog step will call awswrangler: to create or extend the table, or to register
    a day that has no partition yet (moving an existing partition is one boto3 call)."""
    if "awswrangler" in sys.modules:
        return False
    ev = reading.event
    declared = {c.name: c.glue_type for c in reading.layout.columns if c.name not in ev.extra_partitions}
    if reading.transformed or not catalog.table_is_current(table_def, declared):
        return True
    return not catalog.day_partitions(clients.glue, ev.database, ev.table, ev.data_ref)


def _prefetch_wrangler() -> None:
    """Import awswrangler (and pandas) on a side thread while the last row group is encoded and the
    last upload completes, instead of after them. Done only once the stream is over: imported
    earlier it adds to the streaming peak (benchmarks/README.md, "Tuned defaults: pipeline"). The
    import lock makes the catalog step's own ``import`` wait for it."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the catalog step imports it again and reports a failure
            importlib.import_module("awswrangler")

    threading.Thread(target=load, name="import-awswrangler", daemon=True).start()


@step("write")
def _write(
    clients: AwsClients,
    reading: _Reading,
    version_prefix: str,
    tune: Tuning,
    wrangler_needed: Callable[[], bool],
) -> list[WrittenFile]:
    """Stream the rows into Parquet files under ``version_prefix``, each verified as it completes;
    on any failure the unfinished uploads are aborted. An error pulling a row stays a read error."""
    ev = reading.event
    writer = DatasetWriter(
        clients.s3,
        ev.bucket_dstn,
        version_prefix,
        reading.stored,
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
    upload_error: AwsErrorText = lambda exc: LoadError(  # noqa: E731
        "write", f"upload under s3://{ev.bucket_dstn}/{version_prefix} failed: {exc}"
    )
    try:
        with reported_as("write", aws=upload_error):
            write_all(reading.batches, writer, threaded=tune.threaded, depth=tune.queue_depth)
        log.info("read %d bytes, %d rows from %s", reading.read.bytes, writer.rows, reading.src.uri)
        if writer.rows and wrangler_needed():
            _prefetch_wrangler()  # overlaps the import with the last encode and upload
        if writer.rows == 0 and not ev.allow_empty:
            raise LoadError(
                "read",
                f"{reading.src.uri} has no data rows; refusing to replace day {ev.data_ref} with an empty "
                'one (set "allow_empty": true to load an empty day)',
            )
        files = writer.close(empty_file=True)
    except BaseException:
        writer.abort()
        raise
    pa.default_memory_pool().release_unused()  # hand the encoder's memory back before the catalog
    log.info(
        "wrote %d rows in %d file(s) under s3://%s/%s",
        sum(f.rows for f in files),
        len(files),
        ev.bucket_dstn,
        version_prefix,
    )
    return files


# -- result -------------------------------------------------------------------------------------
@step("swap")  # the load's last stage
def _result(
    reading: _Reading,
    files: list[WrittenFile],
    registered: Registered,
    *,
    load_id: str,
    version_prefix: str,
    removed: int,
    started: float,
) -> LoadResult:
    ev, src, layout = reading.event, reading.src, reading.layout
    result = LoadResult(
        data_ref=ev.data_ref,
        load_id=load_id,
        source_key=src.key,
        source_uri=src.uri,
        etag=src.etag,
        size=src.size,
        last_modified=src.last_modified.isoformat(),
        rows=sum(f.rows for f in files),
        bytes=sum(f.bytes for f in files),
        files=len(files),
        output_location=f"s3://{ev.bucket_dstn}/{ev.day_prefix}",
        partition_location=f"s3://{ev.bucket_dstn}/{version_prefix}",
        table=f"{ev.database}.{ev.table}",
        previous_location=registered.previous_location,
        bytes_read=reading.read.bytes,
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
    limit = Deadline(deadline, tune.stop_margin_seconds)

    transform = _transform(ev)
    table_def, plan = _check_catalog(clients, ev, transform is not None)
    lease = _day_lease(clients, plan.event, load_id, tune, limit)
    with _holding(lease, clients, plan.event, source):  # held from the listing to the end of the cleanup
        src = _list(clients, plan.event, source, lease)
        reading = _read(clients, plan, src, table_def, transform, tune, limit)
        ev = reading.event
        version_prefix = f"{ev.day_prefix}load-{load_id}/"
        with discarded_on_failure(clients, ev, version_prefix):  # until the flip, the day is untouched
            files = _write(
                clients, reading, version_prefix, tune, lambda: _needs_wrangler(clients, reading, table_def)
            )
            registered = register_table(
                clients,
                ev,
                table_def=table_def,
                layout=reading.layout,
                rows_schema=reading.schema,
                transformed=reading.transformed,
                limit=limit,
            )
            flip_day(
                clients,
                ev,
                lease=lease,
                files=files,
                src=src,
                load_id=load_id,
                registered=registered,
                limit=limit,
            )
        still_ours(lease)  # else the cleanup is left to the next load
        removed = cleanup_day(clients, ev, version_prefix)
        return _result(
            reading,
            files,
            registered,
            load_id=load_id,
            version_prefix=version_prefix,
            removed=removed,
            started=started,
        )


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
