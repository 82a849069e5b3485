"""Streaming read of one source object (plain, gzip or zip CSV) into Arrow record batches.

Memory is bounded by the CSV block size: the object is never read whole. Bad rows fail the load with
the line number, found by a second, diagnostic pass over the object (only on the error path, so the
fast path keeps pyarrow's threaded, typed CSV parser).
"""

from __future__ import annotations

import importlib
import io
import logging
import re
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import LoadError
from .event import Column, LoadEvent, validate_glue_name
from .header import Layout, read_layout
from .inflate import DECOMPRESS_ERRORS, gzip_reader, open_zip_member
from .ranged import RangedReader
from .s3io import S3SeekableReader
from .source import SourceObject
from .tuning import DEFAULTS, MIN_READ_AHEAD_BLOCKS, check_read_ahead

if TYPE_CHECKING:
    import pandas as pd
    from mypy_boto3_s3 import S3Client

__all__ = [
    "MIN_READ_AHEAD_BLOCKS",
    "arrow_schema",
    "arrow_type",
    "check_read_ahead",
    "glue_type_of",
    "iter_batches",
    "load_transform",
    "open_source",
    "read_first_block",
]

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = DEFAULTS.block_size
_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")
_ROW = re.compile(r"Row #(\d+): (.*)", re.S)


def arrow_type(glue_type: str | None) -> pa.DataType:
    """The Arrow type a Glue type is read as (untyped columns are text)."""
    t = (glue_type or "string").lower()
    simple: dict[str, pa.DataType] = {
        "string": pa.string(),
        "varchar": pa.string(),
        "bigint": pa.int64(),
        "int": pa.int32(),
        "integer": pa.int32(),
        "smallint": pa.int16(),
        "tinyint": pa.int8(),
        "double": pa.float64(),
        "float": pa.float32(),
        "boolean": pa.bool_(),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
    }
    if t in simple:
        return simple[t]
    m = _DECIMAL.match(t)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    raise ValueError(f"unsupported Glue type {glue_type!r}")


def glue_type_of(dtype: pa.DataType) -> str:
    """The Glue type for an Arrow type (for columns a transform derives)."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_boolean(dtype):
        return "boolean"
    ints = {8: "tinyint", 16: "smallint", 32: "int", 64: "bigint"}
    if pa.types.is_integer(dtype):
        return ints[dtype.bit_width] if pa.types.is_signed_integer(dtype) else "bigint"
    if pa.types.is_float32(dtype):
        return "float"
    if pa.types.is_floating(dtype):
        return "double"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "binary"
    raise ValueError(f"no Glue type for Arrow type {dtype}")


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in columns])


# ---------------------------------------------------------------------------------------------------
# Opening the object
# ---------------------------------------------------------------------------------------------------
def _extra(ev: LoadEvent) -> dict[str, Any]:
    return {"ExpectedBucketOwner": ev.expected_bucket_owner} if ev.expected_bucket_owner else {}


def open_source(
    s3: S3Client,
    src: SourceObject,
    ev: LoadEvent,
    *,
    on_read: Callable[[int], None] | None = None,
    range_size: int = DEFAULTS.range_size,
    ranges_in_flight: int = DEFAULTS.ranges_in_flight,
) -> io.IOBase:
    """Open the source object as a stream of CSV bytes, decompressing ``.gz`` and ``.zip`` on the fly.

    The bytes come from a :class:`.ranged.RangedReader` (one streaming GET, then up to
    ``ranges_in_flight`` ranged GETs of ``range_size`` bytes when the parser waits on the link); for a
    zip, the central directory and the member's local header are read first through small ranged GETs,
    then the member's compressed bytes alone that way (never the whole archive). ``on_read`` is told
    the size of every read handed to the parser or inflater.
    """

    def span(start: int = 0, stop: int | None = None) -> RangedReader:
        return RangedReader(
            s3,
            src.bucket,
            src.key,
            etag=src.etag,
            size=src.size,
            start=start,
            end=stop,
            extra=_extra(ev),
            range_size=range_size,
            ranges_in_flight=ranges_in_flight,
            on_read=on_read,
        )

    key = src.key.lower()
    if key.endswith(".zip"):
        raw = S3SeekableReader(s3, src.bucket, src.key, etag=src.etag, size=src.size, extra=_extra(ev))
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise LoadError("read", f"{src.uri} is not a readable zip archive: {exc}") from exc
        members = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        names = [m.filename for m in members]
        if ev.zip_member is not None:
            if ev.zip_member not in names:
                raise LoadError(
                    "read",
                    f"{src.uri}: zip_member {ev.zip_member!r} is not in the archive (members: {names})",
                )
            member = ev.zip_member
        elif not members:
            raise LoadError("read", f"{src.uri}: the zip archive holds no file")
        elif len(members) == 1:
            member = names[0]  # the only file is the export, whatever its name (as the original)
        else:
            csvs = [n for n in names if n.lower().endswith(".csv")]
            if len(csvs) != 1:
                raise LoadError(
                    "read",
                    f"{src.uri}: the zip archive holds {len(names)} files {names} "
                    f"({len(csvs)} of them .csv); set zip_member to pick one",
                )
            member = csvs[0]  # one CSV beside a README or manifest
        try:
            return open_zip_member(archive, raw, member, open_span=span)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
            raise LoadError("read", f"{src.uri}: cannot open zip member {member!r}: {exc}") from exc
    stream = span()
    if key.endswith((".gz", ".gzip")):
        return gzip_reader(stream)
    return stream


# ---------------------------------------------------------------------------------------------------
# Backpressure between the byte stream and the parser
# ---------------------------------------------------------------------------------------------------
class _Gate(io.RawIOBase):
    """Hands the parser bytes no further than ``ahead`` bytes past what the consumer has taken.

    pyarrow's streaming CSV reader reads blocks ahead on its I/O thread as fast as the source gives
    them; over a fast network that is most of the object (``benchmarks/README.md``, "Memory"). Each
    batch the consumer takes stands for one block, so reads wait until the consumer
    is within ``ahead`` bytes. A wait is capped so a parser needing more never deadlocks.
    """

    def __init__(self, raw: io.IOBase, block_size: int, ahead: int, max_wait: float = 2.0) -> None:
        super().__init__()
        self._raw = raw
        self._block = block_size
        self._ahead = ahead
        self._max_wait = max_wait
        self._handed = 0
        self._taken = 0
        self._cond = threading.Condition()

    def readable(self) -> bool:
        return True

    def taken(self, batches: int = 1) -> None:
        with self._cond:
            self._taken += batches * self._block
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._handed - self._taken < self._ahead, timeout=self._max_wait)
        data: bytes = self._raw.read(size)
        with self._cond:
            self._handed += len(data)
        return data

    def close(self) -> None:
        self._raw.close()
        super().close()


# ---------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------
def _options(
    ev: LoadEvent, layout: Layout, *, block_size: int, use_threads: bool, types: dict[str, pa.DataType]
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    read = pacsv.ReadOptions(
        column_names=list(layout.read_names),
        skip_rows=1 if ev.header and not layout.header_bytes else 0,
        block_size=block_size,
        use_threads=use_threads,
        encoding=ev.encoding,
    )
    # newlines_in_values: a quoted value may hold line breaks (pandas, which the original used, reads
    # them); without it a block boundary inside such a value fails the load ("out of sync with chunker").
    parse = pacsv.ParseOptions(delimiter=ev.delimiter, quote_char=ev.quotechar, newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False, check_utf8=True)
    if layout.selects:  # by name: the schema's order, extra columns left out, missing ones as nulls
        convert.include_columns = [c.name for c in layout.columns]
        convert.include_missing_columns = bool(layout.missing)
    return read, parse, convert


_DECOMPRESS_ERRORS = DECOMPRESS_ERRORS


def iter_batches(
    open_stream: Callable[[], io.IOBase],
    ev: LoadEvent,
    uri: str,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    use_threads: bool = DEFAULTS.csv_threads,
    read_ahead_blocks: int = DEFAULTS.read_ahead_blocks,
    layout: Layout | None = None,
    origin: Mapping[str, str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the object's rows as record batches typed by the declared schema, with the columns of
    ``layout`` (default: planned here by :func:`read_layout`).

    ``open_stream`` opens the object afresh; it is called once for the read, and once more only if a
    row is bad, to find its line number. At most ``read_ahead_blocks`` blocks (at least
    ``MIN_READ_AHEAD_BLOCKS``) are read past the batches the caller has taken. ``origin`` says where a
    column's type came from (``"its type in Glue table db.t"``), for the message about a value that
    does not fit it.

    Raises
    ------
    LoadError
        Stage ``read``, naming the object and the line.
    ValueError
        ``read_ahead_blocks`` is below ``MIN_READ_AHEAD_BLOCKS``.
    """
    check_read_ahead(read_ahead_blocks)
    if layout is None:
        layout, open_stream = read_layout(open_stream, ev, uri)
    types = {c.name: arrow_type(c.type) for c in layout.columns}
    read, parse, convert = _options(ev, layout, block_size=block_size, use_threads=use_threads, types=types)
    rows = 0
    stream = _Gate(open_stream(), block_size, read_ahead_blocks * block_size)
    try:
        try:
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                log.info("%s holds no rows", uri)
                return
            raise
        for batch in reader:
            stream.taken()
            rows += batch.num_rows
            yield batch
    except LoadError:
        raise
    except _DECOMPRESS_ERRORS as exc:
        raise LoadError("read", f"{uri}: the compressed data is corrupt or truncated ({exc})") from exc
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        stream.close()
        raise _locate(open_stream, ev, layout, uri, exc, block_size, origin or {}) from exc
    finally:
        stream.close()


def read_first_block(
    open_stream: Callable[[], io.IOBase], ev: LoadEvent, uri: str, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> pa.RecordBatch | None:
    """The rows of the object's first block, every column as text (``None``: no rows). Reads about
    ``MIN_READ_AHEAD_BLOCKS + 1`` blocks of the object, then closes the stream."""
    text = replace(ev, schema=tuple(Column(c.name) for c in ev.schema))
    batches = iter_batches(open_stream, text, uri, block_size=block_size, use_threads=False)
    try:
        return next(batches, None)
    finally:
        batches.close()  # type: ignore[attr-defined]


def _line_of(ev: LoadEvent, data_row: int) -> int:
    """1-based line number of a 0-based data row (a header row counts as line 1)."""
    return data_row + 1 + (1 if ev.header else 0)


def _first_bad(values: pa.Array, target: pa.DataType) -> int | None:
    """Index of the first value of a text column that does not convert to ``target``."""

    def ok(arr: pa.Array) -> bool:
        try:
            text = pc.cast(arr, pa.string())
            if target != pa.string():
                blank = pc.equal(text, "")
                text = pc.if_else(blank, pa.scalar(None, pa.string()), text)
                pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True

    if ok(values):
        return None
    lo, hi = 0, len(values)  # invariant: the first bad value lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(values.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def _locate(
    open_stream: Callable[[], io.IOBase],
    ev: LoadEvent,
    layout: Layout,
    uri: str,
    original: Exception,
    block_size: int = DEFAULT_BLOCK_SIZE,
    origin: Mapping[str, str] | None = None,
) -> LoadError:
    """Re-read the object as raw text, serially, to name the line and column of the bad value (or the row
    longer than the read block, which the threaded parser cannot hold)."""
    too_long = "straddl" in str(original)
    log.info("%s: a row failed (%s); re-reading to find its line", uri, original)
    raw = {name: pa.binary() for name in layout.read_names}
    read, parse, convert = _options(ev, layout, block_size=DEFAULT_BLOCK_SIZE, use_threads=False, types=raw)
    convert = pacsv.ConvertOptions(column_types=raw, strings_can_be_null=False, check_utf8=False)
    rows = 0
    stream = open_stream()
    try:
        for batch in pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert):
            if too_long:
                sizes = [pc.binary_length(batch.column(name)) for name in layout.read_names]
                width = sizes[0] if len(sizes) == 1 else pc.add(sizes[0], sizes[1])
                for extra in sizes[2:]:
                    width = pc.add(width, extra)
                over = pc.indices_nonzero(pc.greater(width, block_size))
                if len(over):
                    n = over[0].as_py()
                    return LoadError(
                        "read",
                        f"{uri}: line {_line_of(ev, rows + n)}: the row is {width[n].as_py()} bytes, longer "
                        f"than the {block_size}-byte read block",
                    )
            for col in layout.read_columns:
                target = arrow_type(col.type)
                bad = _first_bad(batch.column(col.name), target)
                if bad is not None:
                    value = batch.column(col.name)[bad].as_py()
                    shown = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
                    if len(shown) > 80:
                        shown = shown[:80] + "..."
                    why = (origin or {}).get(col.name)
                    problem = (
                        "is not valid UTF-8"
                        if target == pa.string()
                        else f"value {shown!r} does not fit type {col.glue_type}"
                        + (f" ({why})" if why else "")
                    )
                    return LoadError(
                        "read", f"{uri}: line {_line_of(ev, rows + bad)}: column {col.name!r}: {problem}"
                    )
            rows += batch.num_rows
    except pa.ArrowInvalid as exc:
        m = _ROW.search(str(exc))
        if m:
            detail = m.group(2).strip()
            if len(detail) > 200:
                detail = detail[:200] + "..."
            return LoadError("read", f"{uri}: line {m.group(1)}: {detail}")
        return LoadError("read", f"{uri}: after line {_line_of(ev, rows)}: {exc}")
    except UnicodeDecodeError as exc:
        return LoadError(
            "read", f"{uri}: after line {_line_of(ev, rows)}: not valid {ev.encoding} text ({exc})"
        )
    except _DECOMPRESS_ERRORS as exc:
        return LoadError("read", f"{uri}: the compressed data is corrupt or truncated ({exc})")
    finally:
        stream.close()
    return LoadError("read", f"{uri}: {original}")


# ---------------------------------------------------------------------------------------------------
# Transform hook
# ---------------------------------------------------------------------------------------------------
TransformFn = Callable[["pd.DataFrame"], "pd.DataFrame"]


def load_transform(path: str) -> TransformFn:
    """Import a transform given as ``package.module:function`` (or ``package.module.function``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoadError(
            "validate", f"field 'transform': cannot import module {module_name!r}: {exc}"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise LoadError("validate", f"field 'transform': {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def apply_transform(
    batches: Iterator[pa.RecordBatch], fn: TransformFn, uri: str, required: tuple[str, ...]
) -> Iterator[pa.RecordBatch]:
    """Run ``fn`` on each batch as a pandas DataFrame; the first result fixes the output schema."""
    import pandas as pd

    schema: pa.Schema | None = None
    for index, batch in enumerate(batches):
        try:
            out = fn(batch.to_pandas())
        except Exception as exc:
            raise LoadError("read", f"{uri}: transform failed on batch {index}: {exc!r}") from exc
        if not isinstance(out, pd.DataFrame):
            raise LoadError("read", f"transform returned {type(out).__name__}, not a pandas DataFrame")
        if schema is None:
            table = pa.Table.from_pandas(out, preserve_index=False)
            for name in table.column_names:
                validate_glue_name(name, "transform output column")
            missing = [c for c in required if c not in table.column_names]
            if missing:
                raise LoadError("read", f"transform output lacks partition column(s) {missing}")
            for f in table.schema:
                if pa.types.is_null(f.type):
                    table = table.set_column(
                        table.schema.get_field_index(f.name), f.name, pa.nulls(len(table), pa.string())
                    )
            schema = table.schema.remove_metadata()
            for f in schema:
                glue_type_of(f.type)
        try:
            table = pa.Table.from_pandas(out, schema=schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
            raise LoadError(
                "read", f"{uri}: transform output of batch {index} does not match the first: {exc}"
            ) from exc
        yield from table.to_batches()
