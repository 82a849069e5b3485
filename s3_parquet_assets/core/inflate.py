"""Decompression of ``.gz`` and ``.zip`` sources, with ISA-L when it is installed.

ISA-L (the ``isal`` package) inflates about 2.7 x faster than zlib (measured: 256 MiB of CSV in
0.33 s against 0.89 s), and decompression is most of the extra CPU of a compressed load. Without it
(the Lambda zip, which adds no compiled code) the standard library's zlib and gzip are used.

A zip member is read straight from its local header with a raw-deflate decompressor over one
sequential stream of the archive, checked against the CRC-32 and size of the central directory.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from types import ModuleType
from typing import Any

__all__ = ["DECOMPRESS_ERRORS", "ZipMemberReader", "gzip_reader", "open_zip_member"]

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
# Above S3SeekableReader's 1 MiB small-read limit, so the member streams through one ranged GET.
_CHUNK = 2 << 20


def gzip_reader(stream: Any) -> io.IOBase:
    """A file object that yields the decompressed bytes of a gzip stream (all members)."""
    reader: io.IOBase = _gzip.GzipFile(fileobj=stream, mode="rb")
    return reader


class ZipMemberReader(io.RawIOBase):
    """Stream one stored or deflated member of a zip archive from a seekable raw file."""

    def __init__(self, raw: Any, info: zipfile.ZipInfo) -> None:
        super().__init__()
        self._raw = raw
        self._info = info
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise zipfile.BadZipFile(f"truncated local header of {info.filename!r}")
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header signature for {info.filename!r}")
        name_len, extra_len = fields[9], fields[10]
        raw.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
        self._left = info.compress_size
        self._inflate = _zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._crc = 0
        self._out = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        while self._pending_size < want and not self._eof:
            chunk = self._raw.read(min(_CHUNK, self._left)) if self._left else b""
            self._left -= len(chunk)
            if not chunk and self._left:
                raise EOFError(f"zip member {self._info.filename!r} is truncated")
            if self._inflate is not None:
                data = self._inflate.decompress(chunk) if chunk else self._inflate.flush()
            else:
                data = chunk
            if data:
                self._crc = _zlib.crc32(data, self._crc)
                self._out += len(data)
                self._pending.append(data)
                self._pending_size += len(data)
            if not self._left and (self._inflate is None or not chunk):
                self._finish()

    def _finish(self) -> None:
        self._eof = True
        if self._inflate is not None and not self._inflate.eof:
            raise EOFError(f"zip member {self._info.filename!r}: the deflate stream ends early")
        if self._out != self._info.file_size or (self._crc & 0xFFFFFFFF) != self._info.CRC:
            raise zipfile.BadZipFile(f"zip member {self._info.filename!r} fails its CRC-32/size check")

    def read(self, size: int = -1) -> bytes:
        want = self._info.file_size if size is None or size < 0 else size
        self._fill(want)
        data = b"".join(self._pending)
        out, rest = data[:want], data[want:]
        self._pending = [rest] if rest else []
        self._pending_size = len(rest)
        return out

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_zip_member(archive: zipfile.ZipFile, raw: Any, name: str) -> io.IOBase:
    """Open ``name`` for streaming: the fast reader for stored/deflated members, zipfile otherwise."""
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise zipfile.BadZipFile(f"zip member {name!r} is encrypted")
    if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return ZipMemberReader(raw, info)
    member: io.IOBase = archive.open(name)  # type: ignore[assignment]
    return member
