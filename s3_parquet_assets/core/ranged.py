"""Sequential reads of one S3 object (or a byte span of it) that scale past one connection.

:class:`RangedReader` hands out the span's bytes in order. It starts as one streaming GET read by
the caller, which is all a load needs while the consumer (parser, inflater) is slower than the link.
When the consumer is starved instead (it waits on the socket for most of the time it reads, judged
over each ``range_size`` of the stream after its first, which only measures the start), one
ranged GET of the next ``range_size`` bytes after those is tried. Ranges pay when that GET's first
byte comes sooner than one stream would deliver a range (S3: tens of ms against ~90 ms for 8 MiB at
~90 MB/s); an endpoint that answers a ranged GET slowly (an emulator copying the whole object for
each) fails the test, the try is dropped and the load stays on its one stream. When ranges pay, the
stream is cut where the tried range starts and the rest of the span is fetched as ranged GETs of
``range_size`` bytes, at most ``ranges_in_flight`` of them (the first stream counted) in flight at
once on worker threads, each a streaming GET read incrementally into its own buffer.

Memory: fetched bytes not yet handed out are at most ``ranges_in_flight * range_size`` (a range's
buffer is full at ``range_size``; a new range starts only when the oldest has been handed out), plus
the one read being returned. The first stream holds nothing of its own (socket buffers only).

Every GET is pinned to the listed ETag (``IfMatch``). A dropped GET (connection error, short body)
is opened again from the byte it dropped at, alone, at most ``max_attempts`` times per GET. AWS
errors (a 412 when the object changed since it was listed, a 403, ...) reach the caller as they
came, from whichever GET met them; the load names them (``pipeline._read_error``).
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from .tuning import DEFAULTS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["RangedReader"]

log = logging.getLogger(__name__)

_RESUMABLE = (Urllib3HTTPError, BotoCoreError, ConnectionError, TimeoutError)
_READ = 1 << 20  # bytes a range worker reads from its socket at a time
_STARVED = 0.5  # the consumer is starved when it waits on the stream for this share of the time


class _ShortBody(ConnectionError):
    """A GET's body ended before the bytes it promised (a dropped connection)."""


class _Range:
    """One ranged GET's bytes ``[start, stop)``, filled by a worker, drained by the consumer."""

    def __init__(self, start: int, stop: int) -> None:
        self.start = start
        self.stop = stop
        self.chunks: collections.deque[bytes] = collections.deque()
        self.offset = 0  # bytes of the first chunk already handed out
        self.filled = start  # the next byte the worker will append
        self.error: BaseException | None = None
        self.first_byte: float | None = None  # seconds its GET took to answer (the first time)
        self.dropped = False  # no longer wanted: the worker stops
        self.cond = threading.Condition()


class RangedReader(io.RawIOBase):
    """Bytes ``[start, end)`` of ``s3://bucket/key`` in order; see the module docstring."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        *,
        etag: str | None,
        size: int,
        start: int = 0,
        end: int | None = None,
        extra: Mapping[str, Any] | None = None,
        range_size: int = DEFAULTS.range_size,
        ranges_in_flight: int = DEFAULTS.ranges_in_flight,
        max_attempts: int = 6,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        if range_size < 1 or ranges_in_flight < 1:
            raise ValueError(
                f"range_size and ranges_in_flight must be positive, not {range_size}, {ranges_in_flight}"
            )
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._etag = etag
        self._extra = dict(extra or {})
        self._end = size if end is None else min(end, size)
        self._pos = start
        self._range_size = range_size
        self._in_flight = ranges_in_flight
        self._max_attempts = max_attempts
        self._on_read = on_read
        # the first stream, read by the caller: [pos, stream_stop)
        self._body: Any = None
        self._stream_stop = self._end
        self._stream_attempts = 0
        self._window_start = 0.0
        self._warm = False  # the stream's first window (its start, not its pace) has gone by
        self._window_bytes = 0
        self._waited = 0.0
        self._per_byte = 0.0  # the stream's seconds per byte while the consumer waited on it
        self._probe: _Range | None = None  # a ranged GET tried while the stream goes on
        self._ranges_pay: bool | None = None  # None: not known yet
        # the ranges after it, fetched by workers
        self._ranges: collections.deque[_Range] = collections.deque()
        self._next = self._end  # first byte not yet given to the stream or a range
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    # -- GETs -----------------------------------------------------------------------------------
    def _get(self, first: int, stop: int | None) -> Any:
        """A streaming GET from byte ``first``: to ``stop`` (exclusive), or to the object's end."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, **self._extra}
        if self._etag:
            kwargs["IfMatch"] = f'"{self._etag}"'
        if stop is not None:
            kwargs["Range"] = f"bytes={first}-{stop - 1}"
        elif first:
            kwargs["Range"] = f"bytes={first}-"
        return self._s3.get_object(**kwargs)["Body"]

    # -- the first stream -----------------------------------------------------------------------
    def _read_stream(self, want: int) -> bytes:
        """Up to ``want`` bytes of the first stream (opened again where it dropped).

        The stream is one GET open to the object's end (the whole object for a plain source): the
        header peek and the parser share it, and a zip member's span is cut where it ends."""
        want = min(want, self._stream_stop - self._pos)
        while True:
            try:
                if self._body is None:
                    self._body = self._get(self._pos, None)
                    self._window_start, self._window_bytes, self._waited = time.monotonic(), 0, 0.0
                    self._warm = False
                began = time.monotonic()
                data: bytes = self._body.read(want)
                self._waited += time.monotonic() - began
                if not data:
                    raise _ShortBody(f"the body ended {self._stream_stop - self._pos} bytes early")
                break
            except _RESUMABLE as exc:
                self._stream_attempts += 1
                if self._stream_attempts >= self._max_attempts:
                    raise
                log.warning("%s: read dropped at byte %d (%s); resuming", self.uri, self._pos, exc)
                self._close_body()
        self._window_bytes += len(data)
        if self._pos + len(data) >= self._stream_stop:
            self._close_body()
        elif self._probe is not None:
            self._judge_probe(self._pos + len(data))
        elif self._ranges_pay is None and self._window_bytes >= self._range_size:
            self._check_starved(self._pos + len(data), len(data))
        return data

    def _check_starved(self, pos: int, read: int) -> None:
        """After each ``range_size`` bytes of the stream: try a range if the consumer mostly waited
        (far enough ahead of ``pos`` that reads of ``read`` bytes do not reach it before it answers)."""
        elapsed = time.monotonic() - self._window_start
        share = self._waited / elapsed if elapsed > 0 else 0.0
        per_byte = self._waited / max(1, self._window_bytes)
        self._window_start, self._window_bytes, self._waited = time.monotonic(), 0, 0.0
        log.debug("%s: waited on the stream %.0f%% of the time up to byte %d", self.uri, 100 * share, pos)
        if not self._warm:  # a stream's first window measures its start (and the parser's), not its pace
            self._warm = True
            return
        start = pos + max(self._range_size, 2 * read)
        if share < _STARVED or self._in_flight < 2 or self._probe is not None or start >= self._end:
            return
        self._per_byte = per_byte
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._in_flight, thread_name_prefix="s3-range")
        self._probe = _Range(start, min(self._end, start + self._range_size))
        self._pool.submit(self._fetch, self._probe)

    def _judge_probe(self, pos: int) -> None:
        """Once the tried range's GET has answered: go parallel if ranges pay (and the stream, now at
        ``pos``, has not reached the range yet), else drop it."""
        probe = self._probe
        assert probe is not None
        with probe.cond:
            if probe.first_byte is None and probe.error is None:
                return
        if probe.error is not None:
            raise probe.error
        assert probe.first_byte is not None
        on_stream = self._per_byte * (probe.stop - probe.start)
        self._ranges_pay = probe.first_byte < on_stream
        self._probe = None
        if not self._ranges_pay or pos > probe.start:
            probe.dropped = True
            log.info(
                "%s: a ranged GET answered in %.3f s, one stream moves a range in %.3f s: %s",
                self.uri,
                probe.first_byte,
                on_stream,
                "staying on one stream" if not self._ranges_pay else "the stream got there first",
            )
            if self._ranges_pay:
                self._ranges_pay = None  # paid, but too late for this one: try again later
            return
        self._stream_stop = probe.start
        self._next = probe.stop
        self._ranges.append(probe)
        log.info(
            "%s: the reader waited on one stream; a ranged GET answered in %.3f s against %.3f s for "
            "a range on the stream: fetching the rest in ranges of %d bytes, %d in flight",
            self.uri,
            probe.first_byte,
            on_stream,
            self._range_size,
            self._in_flight,
        )
        self._schedule()

    def _close_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):  # closing a dropped connection may fail; nothing to do
                self._body.close()
        self._body = None

    # -- the ranges -----------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Start ranges while fewer than ``ranges_in_flight`` hold bytes not yet handed out."""
        assert self._pool is not None
        streaming = 1 if self._pos < self._stream_stop else 0
        while self._next < self._end and streaming + len(self._ranges) < self._in_flight:
            rng = _Range(self._next, min(self._end, self._next + self._range_size))
            self._next = rng.stop
            self._ranges.append(rng)
            self._pool.submit(self._fetch, rng)

    def _fetch(self, rng: _Range) -> None:
        """Worker: fill ``rng``, opening its GET again where it dropped (alone, bounded attempts)."""
        attempts = 0
        try:
            while rng.filled < rng.stop and not (self._stop.is_set() or rng.dropped):
                try:
                    began = time.monotonic()
                    body = self._get(rng.filled, rng.stop)
                    if rng.first_byte is None:
                        with rng.cond:
                            rng.first_byte = time.monotonic() - began
                    try:
                        while rng.filled < rng.stop and not (self._stop.is_set() or rng.dropped):
                            data = body.read(min(_READ, rng.stop - rng.filled))
                            if not data:
                                raise _ShortBody(f"the body ended {rng.stop - rng.filled} bytes early")
                            with rng.cond:
                                rng.chunks.append(data)
                                rng.filled += len(data)
                                rng.cond.notify_all()
                    finally:
                        with contextlib.suppress(Exception):
                            body.close()
                except _RESUMABLE as exc:
                    attempts += 1
                    if attempts >= self._max_attempts:
                        raise
                    log.warning(
                        "%s: range %d-%d dropped at byte %d (%s); resuming it",
                        self.uri,
                        rng.start,
                        rng.stop - 1,
                        rng.filled,
                        exc,
                    )
        except BaseException as exc:  # handed to the consumer, raised where it reads this range
            with rng.cond:
                rng.error = exc
                rng.cond.notify_all()

    def _read_range(self, want: int) -> bytes:
        """Up to ``want`` bytes of the oldest range (waits for its worker)."""
        self._schedule()
        rng = self._ranges[0]
        with rng.cond:
            rng.cond.wait_for(lambda: bool(rng.chunks) or rng.error is not None)
            if not rng.chunks:
                assert rng.error is not None
                raise rng.error
            head, off = rng.chunks[0], rng.offset
            chunk = head[off : off + want] if off or len(head) > want else head
            if off + len(chunk) == len(head):
                rng.chunks.popleft()
                rng.offset = 0
            else:
                rng.offset = off + len(chunk)
        if self._pos + len(chunk) >= rng.stop:
            self._ranges.popleft()
            self._schedule()
        return chunk

    # -- io protocol ----------------------------------------------------------------------------
    def read(self, size: int = -1) -> bytes:
        """``size`` bytes (fewer only at the end of the span; all of it for ``size < 0``)."""
        if self.closed:
            raise ValueError("read of a closed RangedReader")
        want = self._end - self._pos if size is None or size < 0 else min(size, self._end - self._pos)
        parts: list[bytes] = []
        got = 0
        while got < want:
            if self._pos < self._stream_stop:
                data = self._read_stream(want - got)
            else:
                data = self._read_range(want - got)
            self._pos += len(data)
            got += len(data)
            parts.append(data)
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._on_read is not None and out:
            self._on_read(len(out))
        return out

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            if self._probe is not None:
                self._probe.dropped = True
            self._close_body()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._ranges.clear()
        super().close()
