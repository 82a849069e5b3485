"""File-like S3 objects: a resumable streaming reader, a seekable reader, and a multipart writer with
backpressure.

- :class:`S3StreamReader` reads one object front to back through a single streaming GET, pinned to
  the ETag it was listed with (``IfMatch``) and resumed with a ranged GET if the connection drops.
- :class:`S3SeekableReader` adds ``seek`` for formats that need it (zip's central directory,
  Parquet footers); sequential reads still ride one streaming GET.
- :class:`S3MultipartWriter` buffers writes into parts and uploads them on a small thread pool with
  a bounded number of parts in flight, so memory stays flat however big the object is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3HTTPError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["PartBuffers", "S3MultipartWriter", "S3SeekableReader", "S3StreamReader"]

log = logging.getLogger(__name__)

_RESUMABLE = (Urllib3HTTPError, BotoCoreError, ConnectionError, TimeoutError)
MIN_PART = 5 * 1024 * 1024


class S3StreamReader(io.RawIOBase):
    """Sequential reader over one S3 object (one streaming GET, resumed on connection errors)."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        *,
        etag: str | None = None,
        size: int | None = None,
        start: int = 0,
        extra: Mapping[str, Any] | None = None,
        max_resumes: int = 5,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._etag = etag
        self._extra = dict(extra or {})
        self._pos = start
        self._size = size
        self._body: Any = None
        self._body_pos = -1
        self._resumes_left = max_resumes
        self._on_read = on_read

    # -- io protocol -------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    @property
    def size(self) -> int:
        if self._size is None:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key, **self._extra)
            self._size = int(head["ContentLength"])
        return self._size

    def _open(self) -> None:
        self._close_body()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, **self._extra}
        if self._etag:
            kwargs["IfMatch"] = f'"{self._etag}"'
        if self._pos:
            kwargs["Range"] = f"bytes={self._pos}-"
        resp = self._s3.get_object(**kwargs)
        if self._size is None and not self._pos:
            self._size = int(resp["ContentLength"])
        self._body = resp["Body"]
        self._body_pos = self._pos

    def _close_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):  # closing a dropped connection may fail; nothing to do
                self._body.close()
        self._body = None
        self._body_pos = -1

    def read(self, size: int = -1) -> bytes:
        data = self._read_once(size)
        if size is None or size < 0 or not 0 < len(data) < size:
            return data
        # A dropped stream hands over what it had before the drop: fill the read up from the resumed
        # stream, since readers like pyarrow's CSV take a short read as a short block and then fail on
        # a row that straddles it.
        parts, got = [data], len(data)
        while got < size:
            more = self._read_once(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def _read_once(self, size: int) -> bytes:
        if self._size is not None and self._pos >= self._size:
            return b""
        while True:
            try:
                if self._body is None or self._body_pos != self._pos:
                    self._open()
                data: bytes = self._body.read(None if size is None or size < 0 else size)
                break
            except _RESUMABLE as exc:
                if self._resumes_left <= 0:
                    raise
                self._resumes_left -= 1
                log.warning(
                    "s3://%s/%s: read dropped at byte %d (%s); resuming",
                    self.bucket,
                    self.key,
                    self._pos,
                    exc,
                )
                self._close_body()
        self._pos += len(data)
        self._body_pos = self._pos
        if self._on_read is not None and data:
            self._on_read(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._close_body()
        super().close()


class S3SeekableReader(S3StreamReader):
    """:class:`S3StreamReader` that can seek: a seek elsewhere drops the stream, the next read opens a
    ranged GET from there. Used for zip archives and Parquet footers."""

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:  # pragma: no cover - io contract
            raise ValueError(f"bad whence {whence}")
        if target < 0:
            raise OSError(f"negative seek position {target}")
        self._pos = target
        return target

    def read(self, size: int = -1) -> bytes:
        # Small reads away from the stream (zip directory, footers) use a bounded range so they do not
        # open a GET to the end of a large object; so does a read of the rest when little is left
        # (zipfile reads its end record that way).
        if size is None or size < 0:
            size = -1 if self.size - self._pos > 1 << 20 else self.size - self._pos
        if 0 <= size <= 1 << 20 and (self._body is None or self._body_pos != self._pos):
            end = min(self._pos + size, self.size) - 1
            if end < self._pos:
                return b""
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, **self._extra}
            if self._etag:
                kwargs["IfMatch"] = f'"{self._etag}"'
            kwargs["Range"] = f"bytes={self._pos}-{end}"
            data: bytes = self._s3.get_object(**kwargs)["Body"].read()
            self._pos += len(data)
            if self._on_read is not None and data:
                self._on_read(len(data))
            return data
        return super().read(size)


class PartBuffers:
    """Recycled part buffers of one fixed size, shared by the writers of one load.

    Writes are copied into a preallocated buffer instead of growing a fresh one for every part: the
    buffer's pages stay mapped from one part to the next, so a load does not fault in (and zero) a new
    part's worth of memory every ``part_size`` bytes, nor copy it again on each growth step. At most
    ``keep`` idle buffers are kept; the rest are freed.
    """

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give_back(self, buf: bytearray) -> None:
        if len(buf) != self.size:
            return
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)


class S3MultipartWriter(io.RawIOBase):
    """Write-only file object that uploads to S3.

    Writes are copied into parts of exactly ``part_size`` bytes (the last may be shorter); each full
    part is uploaded on a thread pool while the caller keeps writing, with at most ``max_in_flight``
    parts held in memory (writes block when the limit is reached: backpressure; ``slots``, a semaphore
    shared by several writers, bounds their parts together instead). A part's buffer goes back to
    ``buffers`` (shared by several writers, or the writer's own) once S3 has it. Objects smaller than
    one part go up in one PUT.
    Call :meth:`complete` to finish (returns the object's ETag) or :meth:`abort` to drop it; an
    aborted or failed upload leaves no multipart upload behind.
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        *,
        part_size: int = 16 * 1024 * 1024,
        max_in_flight: int = 4,
        extra: Mapping[str, Any] | None = None,
        pool: ThreadPoolExecutor | None = None,
        slots: threading.Semaphore | None = None,
        buffers: PartBuffers | None = None,
    ) -> None:
        super().__init__()
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._buffers = buffers or PartBuffers(max(part_size, MIN_PART), keep=max_in_flight + 1)
        self._part_size = self._buffers.size
        self._extra = dict(extra or {})
        self._buf: bytearray | None = None  # the part being filled, taken from ``buffers`` on demand
        self._fill = 0
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        # shared ``slots`` bound the parts of several writers together (a dataset's files)
        self._slots = slots or threading.BoundedSemaphore(max_in_flight)
        self._own_pool = pool is None
        self._pool = pool or ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="s3-part")
        self._error: BaseException | None = None
        self._done = False
        self._aborted = False

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self._aborted:  # a writer being torn down after a failure: its bytes go nowhere
            return len(view)
        if self._done:
            raise ValueError(f"{self.uri}: write after complete")
        self._raise_part_error()
        n, off = len(view), 0
        while off < n:
            if self._buf is None:
                self._buf, self._fill = self._buffers.take(), 0
            take = min(n - off, self._part_size - self._fill)
            self._buf[self._fill : self._fill + take] = view[off : off + take]
            self._fill += take
            off += take
            if self._fill == self._part_size:
                # the full buffer is the part (no copy); it comes back to ``buffers`` once uploaded
                chunk, self._buf = self._buf, None
                self._submit(chunk, recycle=True)
        self._written += n
        return n

    def flush(self) -> None:
        self._raise_part_error()

    def close(self) -> None:
        # pyarrow may close its sink; finishing is explicit (complete/abort), so closing only marks it.
        super().close()

    def _raise_part_error(self) -> None:
        if self._error is not None:
            raise self._error
        for fut in self._parts:
            if fut.done() and fut.exception() is not None:
                self._error = fut.exception()
                raise self._error  # type: ignore[misc]

    def _tail(self) -> bytes:
        """What is left in the part being filled, as its own bytes (the buffer goes back for reuse)."""
        if self._buf is None:
            return b""
        data = bytes(memoryview(self._buf)[: self._fill])
        self._buffers.give_back(self._buf)
        self._buf, self._fill = None, 0
        return data

    def _submit(self, chunk: bytes | bytearray, *, recycle: bool = False) -> None:
        if self._upload_id is None:
            # CRC32 per part, checked by S3 on every UploadPart and kept as the object's composite
            # checksum (without an algorithm, S3 and its emulators checksum the whole object again)
            resp = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="CRC32", **self._extra
            )
            self._upload_id = resp["UploadId"]
        number = len(self._parts) + 1
        self._slots.acquire()  # backpressure: wait for a free slot before holding another part
        try:
            fut = self._pool.submit(self._upload_part, number, chunk)
        except BaseException:
            self._slots.release()
            raise

        def done(_f: Future[dict[str, Any]]) -> None:
            if recycle and isinstance(chunk, bytearray):
                self._buffers.give_back(chunk)
            self._slots.release()

        fut.add_done_callback(done)
        self._parts.append(fut)

    def _upload_part(self, number: int, chunk: bytes | bytearray) -> dict[str, Any]:
        assert self._upload_id is not None
        extra = {k: v for k, v in self._extra.items() if k in ("SSECustomerKey", "ExpectedBucketOwner")}
        resp = self._s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=chunk,  # type: ignore[arg-type]  # botocore takes a bytearray as it is
            ChecksumAlgorithm="CRC32",
            **extra,
        )
        part: dict[str, Any] = {"PartNumber": number, "ETag": resp["ETag"]}
        if "ChecksumCRC32" in resp:
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part

    def complete(self) -> str:
        """Upload what is left, finish the object and return its ETag (without quotes)."""
        if self._done:
            raise ValueError(f"{self.uri}: already finished")
        try:
            if self._upload_id is None:
                resp: Any = self._s3.put_object(
                    Bucket=self.bucket, Key=self.key, Body=self._tail(), **self._extra
                )
            else:
                tail = self._tail()
                if tail:
                    self._submit(tail)
                parts = [f.result() for f in self._parts]
                owner = {k: v for k, v in self._extra.items() if k == "ExpectedBucketOwner"}
                resp = self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    **owner,
                )
        except BaseException:
            self.abort()
            raise
        self._finish()
        return str(resp.get("ETag", "")).strip('"')

    def abort(self) -> None:
        """Drop the upload: wait for parts in flight, then abort the multipart upload (if any)."""
        if self._done:
            return
        self._aborted = True
        for fut in self._parts:
            fut.cancel()
        for fut in self._parts:
            with contextlib.suppress(Exception):  # cancelled futures; the abort below is what matters
                fut.exception()
        if self._upload_id is not None:
            try:
                owner = {k: v for k, v in self._extra.items() if k == "ExpectedBucketOwner"}
                self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, **owner
                )
            except ClientError as exc:  # the next load's cleanup aborts leftovers under the day
                log.warning("could not abort multipart upload of %s: %s", self.uri, exc)
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if self._buf is not None:
            self._buffers.give_back(self._buf)
        self._buf, self._fill = None, 0
        self._parts = []
        # a part's error, raised through pyarrow, keeps its traceback's frames and so the Parquet
        # writer holding this sink: a cycle through C++ that no collector sees, left to be torn down
        # at interpreter exit (where pyarrow aborts the process); dropping it here breaks the cycle
        self._error = None
        if self._own_pool:
            self._pool.shutdown(wait=False)
