"""Decompression of ``.gz`` and ``.zip`` sources, with ISA-L when it is installed.

ISA-L (the ``isal`` package) inflates several times faster than zlib (``benchmarks/README.md``,
"Memory"), and decompression is most of the extra CPU of a compressed load. Without it (the Lambda
zip, which adds no compiled code) the standard library's zlib and gzip are used.

A zip member is read with a raw-deflate decompressor over one sequential stream of its compressed
bytes (found from its local header; :func:`open_zip_member` can open that byte span as a stream of
its own), checked against the CRC-32 and size of the central directory.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["DECOMPRESS_ERRORS", "ZipMemberReader", "gzip_reader", "member_data_offset", "open_zip_member"]

_zlib: ModuleType
_gzip: ModuleType
try:  # pragma: no branch - depends on the environment
    from isal import igzip as _gzip_isal
    from isal import isal_zlib as _zlib_isal

    _zlib, _gzip = _zlib_isal, _gzip_isal
    _isal_error: type[BaseException] = getattr(_zlib_isal, "error")  # noqa: B009 - typed as an instance
    DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
        EOFError,
        zlib.error,
        _isal_error,
        gzip.BadGzipFile,
        zipfile.BadZipFile,
    )
except ImportError:  # pragma: no cover - the Lambda package
    _zlib, _gzip = zlib, gzip
    DECOMPRESS_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile)

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
# Above S3SeekableReader's 1 MiB small-read limit, so a member read from the archive's seekable
# reader streams through one ranged GET.
_CHUNK = 2 << 20


def gzip_reader(stream: Any) -> io.IOBase:
    """A file object that yields the decompressed bytes of a gzip stream (all members)."""
    reader: io.IOBase = _gzip.GzipFile(fileobj=stream, mode="rb")
    return reader


def member_data_offset(raw: Any, info: zipfile.ZipInfo) -> int:
    """Where ``info``'s compressed bytes start in the archive ``raw`` (a seekable file): after its
    local header, whose name and extra field lengths may differ from the central directory's."""
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise zipfile.BadZipFile(f"truncated local header of {info.filename!r}")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header signature for {info.filename!r}")
    name_len, extra_len = fields[9], fields[10]
    return int(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)


class ZipMemberReader(io.RawIOBase):
    """Stream one stored or deflated member of a zip archive from ``data``, a file positioned at the
    member's compressed bytes (read sequentially, ``compress_size`` bytes of it)."""

    def __init__(self, data: Any, info: zipfile.ZipInfo) -> None:
        super().__init__()
        self._raw = data
        self._info = info
        self._left = info.compress_size
        self._inflate = _zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        self._crc = 0
        self._out = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _next_input(self) -> bytes:
        """The deflate input still to feed: what the decompressor left over, else the next chunk."""
        assert self._inflate is not None
        tail: bytes = self._inflate.unconsumed_tail
        if tail or not self._left:
            return tail
        chunk: bytes = self._raw.read(min(_CHUNK, self._left))
        if not chunk:
            raise EOFError(f"zip member {self._info.filename!r} is truncated")
        self._left -= len(chunk)
        return chunk

    def _produce(self, limit: int) -> bytes:
        """Up to ``limit`` more bytes of the member (at least one unless it is finished)."""
        if self._inflate is None:  # stored
            data: bytes = self._raw.read(min(limit, self._left)) if self._left else b""
            if not data and self._left:
                raise EOFError(f"zip member {self._info.filename!r} is truncated")
            self._left -= len(data)
            if not self._left:
                self._finish()
            return data
        src = self._next_input()
        # bounded output: one read never holds more than ``limit`` inflated bytes
        data = self._inflate.decompress(src, limit) if src else self._inflate.flush()
        if self._inflate.eof or (not src and not data):
            self._finish()
        return data

    def _finish(self) -> None:
        self._eof = True
        if self._inflate is not None and not self._inflate.eof:
            raise EOFError(f"zip member {self._info.filename!r}: the deflate stream ends early")

    def _check_sizes(self) -> None:
        if self._out != self._info.file_size or (self._crc & 0xFFFFFFFF) != self._info.CRC:
            raise zipfile.BadZipFile(f"zip member {self._info.filename!r} fails its CRC-32/size check")

    def read(self, size: int = -1) -> bytes:
        want = self._info.file_size - self._out if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while got < want and not self._eof:
            data = self._produce(want - got)
            if data:
                self._crc = _zlib.crc32(data, self._crc)
                self._out += len(data)
                parts.append(data)
                got += len(data)
            if self._eof:
                self._check_sizes()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_zip_member(
    archive: zipfile.ZipFile,
    raw: Any,
    name: str,
    *,
    open_span: Callable[[int, int], Any] | None = None,
) -> io.IOBase:
    """Open ``name`` for streaming: the fast reader for stored/deflated members, zipfile otherwise.

    ``open_span(start, stop)`` opens bytes ``[start, stop)`` of the archive as a sequential stream for
    the fast reader (default: ``raw`` itself, seeked to ``start``)."""
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise zipfile.BadZipFile(f"zip member {name!r} is encrypted")
    if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        start = member_data_offset(raw, info)
        if open_span is not None:
            return ZipMemberReader(open_span(start, start + info.compress_size), info)
        raw.seek(start)
        return ZipMemberReader(raw, info)
    member: io.IOBase = archive.open(name)  # type: ignore[assignment]
    return member
