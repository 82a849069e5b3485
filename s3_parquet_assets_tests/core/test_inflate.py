"""The streaming zip member reader (ISA-L or zlib), on archives built in memory."""

from __future__ import annotations

import io
import zipfile

import pytest

from s3_parquet_assets.core.inflate import DECOMPRESS_ERRORS, ZipMemberReader, gzip_reader, open_zip_member

DATA = b"".join(b"%d,customer-%d,%d.5\n" % (i, i % 97, i) for i in range(200_000))


def _archive(method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("a.csv", DATA)
    return buf.getvalue()


def _read_all(stream: io.IOBase, size: int = 1 << 20) -> bytes:
    out = []
    while chunk := stream.read(size):
        out.append(chunk)
    return b"".join(out)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_members_stream_back_exactly(method: int) -> None:
    raw = io.BytesIO(_archive(method))
    archive = zipfile.ZipFile(raw)
    stream = open_zip_member(archive, raw, "a.csv")
    assert isinstance(stream, ZipMemberReader) == (method != zipfile.ZIP_BZIP2)
    assert _read_all(stream, 12345) == DATA


def test_corrupt_member_fails_its_check() -> None:
    data = bytearray(_archive(zipfile.ZIP_STORED))
    data[100] ^= 0xFF  # a byte of the stored CSV
    raw = io.BytesIO(bytes(data))
    with pytest.raises(zipfile.BadZipFile, match="fails its CRC-32/size check"):
        _read_all(open_zip_member(zipfile.ZipFile(raw), raw, "a.csv"))


def test_damaged_deflate_stream_raises_a_decompression_error() -> None:
    data = bytearray(_archive(zipfile.ZIP_DEFLATED))
    for i in range(200, 260):
        data[i] = 0
    raw = io.BytesIO(bytes(data))
    with pytest.raises(DECOMPRESS_ERRORS):
        _read_all(open_zip_member(zipfile.ZipFile(raw), raw, "a.csv"))


def test_gzip_reader_reads_all_members() -> None:
    import gzip

    raw = io.BytesIO(gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:]))
    assert _read_all(gzip_reader(raw)) == DATA


def test_truncated_gzip_raises() -> None:
    import gzip

    raw = io.BytesIO(gzip.compress(DATA)[:5000])
    with pytest.raises(DECOMPRESS_ERRORS):
        _read_all(gzip_reader(raw))
