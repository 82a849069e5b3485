"""Parquet writing: record batches -> snappy Parquet objects on S3, streamed, split by partition.

Batches are gathered into row groups of a useful size (not one per CSV block), encoded on one or
more encoder threads while the next blocks parse (each encoder fills its own files, so the files of
a partition fill in parallel), and uploaded as multipart parts with one bound on the parts in flight.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import LoadError
from .memory import trim
from .s3io import MIN_PART, PartBuffers, S3MultipartWriter
from .tuning import DEFAULTS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DatasetWriter", "WrittenFile", "dictionary_columns", "hive_escape", "write_all"]

log = logging.getLogger(__name__)

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
DICTIONARY_MAX_DISTINCT = 0.5
"""A column is dictionary encoded when at most this share of its first batch's values are distinct."""
_DICTIONARY_MIN_SAMPLE = 1000
_HIVE_UNSAFE = set("\"#%'*/:=?\\\x7f{[]^")


def hive_escape(value: str) -> str:
    """Escape a partition value for a ``col=value`` path segment the way Hive does."""
    return "".join(f"%{ord(ch):02X}" if ch in _HIVE_UNSAFE or ord(ch) < 0x20 else ch for ch in value)


def partition_text(value: Any) -> str:
    """A partition value as the text Glue stores (and the path shows, escaped)."""
    if value is None:
        return HIVE_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def dictionary_columns(sample: pa.RecordBatch, schema: pa.Schema) -> list[str] | bool:
    """The columns worth dictionary encoding, judged on a sample batch (the load's first).

    A column whose values are mostly distinct (ids, timestamps, free keys) only fills the writer's
    dictionary until it overflows and falls back to plain encoding in every row group: wasted work
    (see ``benchmarks/README.md``) and often a larger file. Columns
    with at most ``DICTIONARY_MAX_DISTINCT`` distinct values in the sample keep the dictionary. A
    sample under 1000 rows says little, so every column keeps it (``True``).
    """
    if sample.num_rows < _DICTIONARY_MIN_SAMPLE:
        return True
    keep: list[str] = []
    for fld in schema:
        if fld.name not in sample.schema.names:
            continue
        try:
            distinct = pc.count_distinct(sample.column(fld.name), mode="all").as_py()
        except pa.ArrowNotImplementedError:  # a type Arrow cannot hash: leave the choice to the writer
            distinct = 0
        if distinct <= DICTIONARY_MAX_DISTINCT * sample.num_rows:
            keep.append(fld.name)
    return keep


@dataclass
class WrittenFile:
    """One Parquet object a load wrote."""

    key: str
    values: tuple[str, ...]
    rows: int
    bytes: int
    etag: str = ""


@dataclass
class _Open:
    """A file one encoder is filling (only that encoder touches it until the load ends)."""

    sink: S3MultipartWriter
    writer: pq.ParquetWriter
    key: str
    values: tuple[str, ...]
    rows: int = 0


@dataclass
class _Pending:
    """Rows of one partition waiting to become a row group (shared by the encoders)."""

    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


class DatasetWriter:
    """Writes batches under ``prefix`` as Parquet, split by the extra partition columns (hive style).

    With ``encoders`` above one, several threads call :meth:`write` at once (:func:`write_all` starts
    them), each with its own ``lane``: the rows of all lanes gather into shared row groups, and the
    lane whose batch fills a row group encodes it into that lane's own file of the partition. So up to
    ``encoders`` files per partition fill in parallel, each under its own ``part-NNNNN`` name, each
    verified by ``check`` when its upload completes. A load smaller than one row group still makes one
    file.

    Memory, as a function of the thread count ``E = encoders``: a row group holds ``row_group_bytes
    / E`` of Arrow data (or ``row_group_rows / E`` rows), and a lane fills a row group only while it
    is not encoding one, so the rows held (being encoded or gathering) stay within about
    ``row_group_bytes`` plus one batch per lane, whatever ``E``. On top: each encoder's own Parquet
    pages for its open row group, one part buffer filling per open file (``E`` per partition) and
    ``max_in_flight`` parts in flight over all files; the batches queued by :func:`write_all` come
    on top of the writer's. So the part of the peak that grows with ``E`` is one part buffer and one
    encoder's pages per extra encoder.

    Parameters
    ----------
    s3
        The S3 client.
    bucket, prefix
        Where to write; ``prefix`` ends with ``/``. Files go to ``prefix[col=value/...]part-00000.parquet``.
    schema
        The Arrow schema of the stored (non-partition) columns.
    partition_cols
        Columns taken out of the data into the path, in order.
    row_group_rows, row_group_bytes
        The load's row group budget: a row group is written when either bound divided by ``encoders``
        is reached (so the encoders together hold about one budget's worth).
    part_size, max_in_flight
        Multipart part size and the most parts held in memory at once, over all the load's objects.
    extra
        Extra arguments for PutObject/CreateMultipartUpload (encryption, bucket owner).
    max_partitions
        The most partition folders one day may fan out to (bounds memory).
    file_bytes
        A file that reaches this many bytes is finished (its upload completes in the background) and
        its lane goes on in the next ``part-NNNNN`` file of the partition.
    check
        Called with each file once its upload completed (on a background thread, so files finished
        early are checked while the load goes on); an exception fails :meth:`close`.
    encoders
        Threads that may call :meth:`write` at once, each with its own ``lane`` (``0 .. encoders-1``).
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        prefix: str,
        schema: pa.Schema,
        *,
        partition_cols: tuple[str, ...] = (),
        row_group_rows: int = DEFAULTS.row_group_rows,
        row_group_bytes: int = DEFAULTS.row_group_bytes,
        part_size: int = DEFAULTS.part_size,
        max_in_flight: int = DEFAULTS.max_in_flight,
        extra: Mapping[str, Any] | None = None,
        max_partitions: int = 200,
        file_bytes: int = DEFAULTS.file_bytes,
        check: Callable[[WrittenFile], None] | None = None,
        encoders: int = 1,
    ) -> None:
        if encoders < 1:
            raise ValueError(f"encoders must be at least 1, not {encoders}")
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.encoders = encoders
        self._schema = schema
        self._partition_cols = partition_cols
        self._group_rows = max(1, row_group_rows // encoders)
        self._group_bytes = max(1, row_group_bytes // encoders)
        self._part_size = part_size if not partition_cols else min(part_size, 8 * 1024 * 1024)
        self._extra = dict(extra or {})
        self._max_partitions = max_partitions
        self._file_bytes = file_bytes
        self._check = check
        # guards what the lanes share: the pending row groups, names, counters, the finishing list
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, ...], _Pending] = {}
        self._lanes: list[dict[tuple[str, ...], _Open]] = [{} for _ in range(encoders)]
        self._dictionary: list[str] | bool | None = None  # decided on the first batch, kept for the load
        self._next_index: dict[tuple[str, ...], int] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="s3-part")
        # one bound for all the load's files: files filling in parallel, a file finishing while the
        # next one starts, or many partitions at once never hold more than ``max_in_flight`` parts
        self._slots = threading.BoundedSemaphore(max_in_flight)
        # their buffers are recycled: parts in flight, plus one filling per encoder, stay mapped
        self._buffers = PartBuffers(max(self._part_size, MIN_PART), keep=max_in_flight + encoders)
        # finished files complete here, so the encoders never wait for CompleteMultipartUpload
        self._completer = ThreadPoolExecutor(max_workers=encoders, thread_name_prefix="s3-complete")
        self._finishing: list[tuple[_Open, Future[WrittenFile]]] = []
        self.files: list[WrittenFile] = []
        self.rows = 0

    # -- writing ---------------------------------------------------------------------------------
    def write(self, batch: pa.RecordBatch, *, lane: int = 0) -> None:
        """Add ``batch``; a row group it completes is encoded here, into ``lane``'s files."""
        if batch.num_rows == 0:
            return
        if not self._partition_cols:
            self._add(lane, (), batch)
            return
        table = pa.Table.from_batches([batch])
        combos = table.group_by(list(self._partition_cols), use_threads=False).aggregate([])
        for combo in combos.to_pylist():
            mask = None
            for col in self._partition_cols:
                value = combo[col]
                column = table.column(col)
                cond = (
                    pc.is_null(column)
                    if value is None
                    else pc.fill_null(pc.equal(column, pa.scalar(value, column.type)), False)
                )
                mask = cond if mask is None else pc.and_(mask, cond)
            part = table.filter(mask).drop_columns(list(self._partition_cols))
            values = tuple(partition_text(combo[c]) for c in self._partition_cols)
            for piece in part.combine_chunks().to_batches():
                self._add(lane, values, piece)

    def _add(self, lane: int, values: tuple[str, ...], batch: pa.RecordBatch) -> None:
        if batch.schema != self._schema:
            batch = batch.cast(self._schema)
        with self._lock:
            ready = self._gather(values, batch)
        if ready is not None:
            self._encode(lane, *ready)

    def _gather(
        self, values: tuple[str, ...], batch: pa.RecordBatch
    ) -> tuple[tuple[str, ...], _Pending] | None:
        """Under the lock: add ``batch`` to its partition's pending rows; return a row group that is
        now due (the partition's, once full, or the largest when all partitions together fill one)."""
        if values not in self._next_index:
            if len(self._next_index) >= self._max_partitions:
                raise LoadError(
                    "write",
                    f"the day fans out to more than {self._max_partitions} partitions "
                    f"of {list(self._partition_cols)}",
                )
            self._next_index[values] = 0
        pending = self._pending.setdefault(values, _Pending())
        pending.batches.append(batch)
        pending.rows += batch.num_rows
        pending.bytes += batch.nbytes
        self.rows += batch.num_rows
        if pending.rows >= self._group_rows or pending.bytes >= self._group_bytes:
            return values, self._pending.pop(values)
        if len(self._pending) > 1 and sum(p.bytes for p in self._pending.values()) >= self._group_bytes:
            largest = max(self._pending, key=lambda v: self._pending[v].bytes)
            return largest, self._pending.pop(largest)
        return None

    def _encode(self, lane: int, values: tuple[str, ...], group: _Pending) -> None:
        """Write ``group`` as one row group of ``lane``'s file of the partition (rolled at ``file_bytes``)."""
        target = self._lanes[lane].get(values) or self._start(lane, values, group.batches[0])
        table = pa.Table.from_batches(group.batches, schema=self._schema)
        group.batches.clear()
        target.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        target.rows += table.num_rows
        del table
        trim()
        if target.sink.tell() >= self._file_bytes:
            # finished: its upload completes in the background; the lane's next rows start the next file
            del self._lanes[lane][values]
            self._finish(target)

    def _start(self, lane: int, values: tuple[str, ...], sample: pa.RecordBatch | None = None) -> _Open:
        folder = "".join(f"{c}={hive_escape(v)}/" for c, v in zip(self._partition_cols, values, strict=True))
        with self._lock:
            index = self._next_index.get(values, 0)
            self._next_index[values] = index + 1
            if self._dictionary is None:
                self._dictionary = True if sample is None else dictionary_columns(sample, self._schema)
                log.debug("dictionary encoding for %s", self._dictionary)
            dictionary = self._dictionary
        key = f"{self.prefix}{folder}part-{index:05d}.snappy.parquet"
        sink = S3MultipartWriter(
            self._s3,
            self.bucket,
            key,
            part_size=self._part_size,
            extra={"ContentType": "application/vnd.apache.parquet", **self._extra},
            pool=self._pool,
            slots=self._slots,
            buffers=self._buffers,
        )
        writer = pq.ParquetWriter(
            sink,
            self._schema,
            compression="snappy",
            write_statistics=True,
            use_dictionary=dictionary,
            data_page_size=1024 * 1024,
        )
        opened = _Open(sink=sink, writer=writer, key=key, values=values)
        self._lanes[lane][values] = opened
        return opened

    def _finish(self, target: _Open) -> None:
        target.writer.close()
        with self._lock:
            self._finishing.append((target, self._completer.submit(self._complete, target)))

    def _complete(self, target: _Open) -> WrittenFile:
        etag = target.sink.complete()
        written = WrittenFile(
            key=target.key, values=target.values, rows=target.rows, bytes=target.sink.tell(), etag=etag
        )
        if self._check is not None:
            self._check(written)
        return written

    # -- finishing -------------------------------------------------------------------------------
    def close(self, *, empty_file: bool = False) -> list[WrittenFile]:
        """Flush and complete every object (once no lane writes any more). With no rows at all and
        ``empty_file``, writes one empty Parquet file (so an allowed empty day still has a readable
        partition)."""
        try:
            nothing = not any(self._lanes) and not self._finishing and not self._pending
            if nothing and empty_file and not self._partition_cols:
                self._start(0, ())
            for values in list(self._pending):  # the last rows of each partition: lane 0 takes them
                self._encode(0, values, self._pending.pop(values))
            for lane in self._lanes:
                for values in list(lane):
                    self._finish(lane.pop(values))
            for target, future in self._finishing:
                self.files.append(future.result())
                log.info(
                    "wrote s3://%s/%s (%d rows, %d bytes)",
                    self.bucket,
                    target.key,
                    target.rows,
                    target.sink.tell(),
                )
        except BaseException:
            self.abort()
            raise
        finally:
            self._completer.shutdown(wait=True)
            self._pool.shutdown(wait=True)
        self.files.sort(key=lambda f: f.key)
        return self.files

    def abort(self) -> None:
        """Drop every unfinished object (aborting its multipart upload), once no lane writes any more.
        Objects already completed are left to the caller, which removes the whole load folder."""
        self._completer.shutdown(wait=True, cancel_futures=True)
        for target, future in self._finishing:
            if future.cancelled() or future.exception() is not None:
                target.sink.abort()
        for lane in self._lanes:
            for target in lane.values():
                target.sink.abort()
                with contextlib.suppress(Exception):  # release the encoder; the sink discards its bytes
                    target.writer.close()
            lane.clear()
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


_DONE = object()


def write_all(
    batches: Iterable[pa.RecordBatch],
    writer: DatasetWriter,
    *,
    threaded: bool = DEFAULTS.threaded,
    depth: int = DEFAULTS.queue_depth,
) -> None:
    """Feed every batch to ``writer``; with ``threaded``, encode on ``writer.encoders`` threads (one
    lane each) so parsing the next CSV blocks overlaps encoding and upload. At most ``depth`` batches
    wait between the parser and the encoders.

    The first encoder error stops the others (they take no further batch) and the parser (it stops at
    its next batch); once every encoder has returned it is raised here, and the caller aborts the
    writer. The parser is never blocked forever: a failed encoder drains the queue.
    """
    if not threaded:
        for batch in batches:
            writer.write(batch)
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []
    stop = threading.Event()

    def consume(lane: int) -> None:
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if not stop.is_set():
                    writer.write(item, lane=lane)
        except BaseException as exc:
            failure.append(exc)
            stop.set()
            while q.get() is not _DONE:  # drain so the producer never blocks forever
                pass

    workers = [
        threading.Thread(target=consume, args=(lane,), name=f"parquet-encoder-{lane}", daemon=True)
        for lane in range(writer.encoders)
    ]
    for worker in workers:
        worker.start()
    try:
        for batch in batches:
            while not stop.is_set():
                try:
                    q.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                break
    finally:
        for _ in workers:  # one end mark per encoder; each takes exactly one and returns
            q.put(_DONE)
        for worker in workers:
            worker.join()
    if failure:
        raise failure[0]
