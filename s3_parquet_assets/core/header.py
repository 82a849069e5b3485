"""The export's header: which of the file's columns is which (``header: true``), and the header row a
headerless export should not have.

The first record is read from the source stream itself and the bytes put back (:class:`_Replay`), so
the object is still read once, as a stream. The header's fields are matched to the schema by
:func:`~.contract.header_key` (a column's ``source``, else its name; byte-order mark and blanks
dropped, any case), and the table's ``extra_columns`` / ``missing_columns`` policies say what drift
does. The result is a :class:`Layout`: the names pyarrow's CSV reader gives the file's columns and the
columns the batches carry, selected and ordered by name.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import re
from collections.abc import Callable
from typing import Any

from .contract import PARTITION_KEY, Column, header_key
from .errors import LoadError
from .event import LoadEvent
from .inflate import DECOMPRESS_ERRORS

__all__ = ["HEADER_LIMIT", "Layout", "plan_layout", "read_layout"]

HEADER_LIMIT = 1024 * 1024
"""The longest header row read (``header: true``): a longer first row fails the load."""
_HEADERLESS_PEEK = 64 * 1024
"""How far a headerless export is looked at for a header row it should not have."""
_PEEK_CHUNK = 4 * 1024
_IGNORED = "#ignored:{}"  # the read name of a column left out: no Glue name looks like it
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the export's columns become the table's.

    ``read_names`` names each of the file's columns, in the file's order (pyarrow reads by them).
    ``columns`` are the batches' columns, in order: the schema's (``missing`` ones as nulls), then the
    ``added`` ones. ``file_columns`` is the header as found (empty without a header); ``ignored`` are
    header columns left out (``extra_columns: ignore``).
    """

    read_names: tuple[str, ...]
    columns: tuple[Column, ...]
    file_columns: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    header_bytes: int = 0  # > 0: the streams start after the header (it holds a quoted line break)

    @classmethod
    def of_schema(cls, ev: LoadEvent) -> Layout:
        """The file's columns are the schema's, in its order (no header, or no header row found)."""
        return cls(read_names=tuple(c.name for c in ev.schema), columns=ev.schema)

    @property
    def read_columns(self) -> tuple[Column, ...]:
        """The columns read from the file (not the ``missing`` ones)."""
        return tuple(c for c in self.columns if c.name not in self.missing)

    @property
    def selects(self) -> bool:
        """Whether the batches differ from the file's columns (left out, reordered or missing)."""
        return self.read_names != tuple(c.name for c in self.columns)


class _Replay(io.RawIOBase):
    """The bytes the header peek took, then the rest of the stream: the object is read only once."""

    def __init__(self, head: bytes, rest: io.IOBase) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            data: bytes = self._rest.read(size)
            return data
        if size is None or size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:  # a full read: a short one reads as the end of a block to the parser
            data += self._rest.read(size - len(data))
        return data

    def close(self) -> None:
        self._rest.close()
        super().close()


def _record_end(text: str, quote: str) -> int | None:
    """Index of the line break ending the first CSV record of ``text`` (``None``: not in ``text``)."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == quote:
            quoted = not quoted
        elif not quoted and ch in "\r\n":
            return i
    return None


def _peek_first_record(
    stream: io.IOBase, ev: LoadEvent, uri: str, limit: int
) -> tuple[bytes, list[str] | None, int]:
    """Read the stream up to the end of its first record (at most ``limit`` bytes). Returns the bytes
    read (to be replayed), the record's fields (``None``: empty object, or no record end within
    ``limit`` bytes) and, for a record holding a quoted line break, its length in bytes (else 0)."""
    decoder = codecs.getincrementaldecoder(ev.encoding)(errors="replace")
    strict: Any = codecs.getincrementaldecoder(ev.encoding)()  # None once the bytes are not valid text
    head: list[bytes] = []
    size, chunk, text = 0, _PEEK_CHUNK, ""
    while True:
        data: bytes = stream.read(chunk)
        head.append(data)
        size += len(data)
        text += decoder.decode(data, final=not data)
        if strict is not None:
            try:
                strict.decode(data, final=not data)
            except UnicodeDecodeError:
                strict = None
        end = _record_end(text, ev.quotechar)
        if end is not None or not data:
            break
        if size >= limit:
            return b"".join(head), None, 0
        chunk = min(chunk * 2, limit)
    record = text[:end].removeprefix("\ufeff")
    if not record and end is None:
        return b"".join(head), None, 0  # an empty object
    if ev.header and strict is None and "\ufffd" in record:
        raise LoadError("read", f"{uri}: line 1 (the header) is not valid {ev.encoding} text")
    fields = next(csv.reader([record], delimiter=ev.delimiter, quotechar=ev.quotechar), [])
    data = b"".join(head)
    return (
        data,
        fields,
        _record_bytes(data, text, end, ev.encoding) if "\n" in record or "\r" in record else 0,
    )


def _record_bytes(data: bytes, text: str, end: int | None, encoding: str) -> int:
    """Bytes of the first record and its line break (0 when they cannot be told exactly). pyarrow's
    ``skip_rows`` skips lines, not records: a header with a quoted line break is cut off instead."""
    stop = len(text) if end is None else end + (2 if text[end : end + 2] == "\r\n" else 1)
    prefix = text[:stop]
    size = len(prefix.encode(encoding))
    return size if data[:size].decode(encoding, errors="replace") == prefix else 0


def read_layout(
    open_stream: Callable[[], io.IOBase], ev: LoadEvent, uri: str
) -> tuple[Layout, Callable[[], io.IOBase]]:
    """Open the object, read its first record and plan its columns (:func:`plan_layout`; without a
    header, refuse a first row that is the schema's names).

    Returns the layout and an opener whose first call gives the opened stream, the peeked bytes put
    back (the object is read once), and later calls open it afresh.

    Raises
    ------
    LoadError
        Stage ``read``, naming the object and the columns.
    """
    stream = open_stream()
    try:
        head, fields, cut = _peek_first_record(
            stream, ev, uri, HEADER_LIMIT if ev.header else _HEADERLESS_PEEK
        )
        if ev.header:
            if fields is None and head:
                raise LoadError(
                    "read", f"{uri}: line 1 (the header) does not end within {HEADER_LIMIT} bytes"
                )
            layout = plan_layout(ev, fields, uri)
        else:
            _refuse_header_row(ev, fields, uri)
            layout = Layout.of_schema(ev)
    except DECOMPRESS_ERRORS as exc:
        stream.close()
        raise LoadError("read", f"{uri}: the compressed data is corrupt or truncated ({exc})") from exc
    except BaseException:
        stream.close()
        raise
    if not (ev.header and cut):
        pending = [_Replay(head, stream)]
        return layout, lambda: pending.pop() if pending else open_stream()
    # the header is cut off here, not skipped by the parser
    layout = dataclasses.replace(layout, header_bytes=cut)
    first = [_Replay(head[cut:], stream)]

    def reopen() -> io.IOBase:
        if first:
            return first.pop()
        again = open_stream()
        again.read(cut)
        return again

    return layout, reopen


def _refuse_header_row(ev: LoadEvent, fields: list[str] | None, uri: str) -> None:
    """``header: false``, yet the first row is the schema's names (in any order): say so."""
    if fields is not None and sorted(map(header_key, fields)) == sorted(c.header_key for c in ev.schema):
        raise LoadError(
            "read",
            f"{uri}: line 1 {fields} holds the schema's column names but header is false; "
            'set "header": true to read it as the header',
        )


def plan_layout(ev: LoadEvent, header: list[str] | None, uri: str) -> Layout:
    """Match the header's fields to the schema (by :func:`~.contract.header_key`: a column's
    ``source``, else its name) and apply ``extra_columns`` and ``missing_columns``.

    Raises
    ------
    LoadError
        Stage ``read``: the header repeats a declared column, holds none, or drifts against a ``fail``
        policy (naming the object and the columns), or extra columns cannot be added.
    """
    if header is None:
        return Layout.of_schema(ev)  # an empty object: no rows, which the read reports
    keys = [header_key(h) for h in header]
    by_key = {c.header_key: c for c in ev.schema}
    repeated = sorted(
        {h.strip() for h, k in zip(header, keys, strict=True) if k in by_key and keys.count(k) > 1}
    )
    if repeated:
        raise LoadError("read", f"{uri}: the header names column(s) {repeated} more than once")
    shown = [h.strip() for h in header]
    missing = tuple(c.name for c in ev.schema if c.header_key not in keys)
    extra = [h for h, k in zip(shown, keys, strict=True) if k not in by_key]
    if len(missing) == len(ev.schema):
        raise LoadError(
            "read", f"{uri}: none of the schema's columns is in the header {shown}; is line 1 a header?"
        )
    _check_drift(ev, uri, shown, missing, extra)
    added = tuple(_added_names(ev, uri, extra)) if ev.extra_columns == "add" else ()
    by_extra = dict(zip(extra, added, strict=False))
    read_names = tuple(
        by_key[k].name if k in by_key else by_extra.get(h, _IGNORED.format(i))
        for i, (h, k) in enumerate(zip(shown, keys, strict=True))
    )
    return Layout(
        read_names=read_names,
        columns=ev.schema + tuple(Column(name) for name in added),
        file_columns=tuple(shown),
        ignored=tuple(extra) if ev.extra_columns == "ignore" else (),
        added=added,
        missing=missing,
    )


def _check_drift(
    ev: LoadEvent, uri: str, header: list[str], missing: tuple[str, ...], extra: list[str]
) -> None:
    """Fail on drift the policies refuse, naming every offending column at once."""
    problems: list[str] = []
    if extra and ev.extra_columns == "fail":
        problems.append(
            f"the header has column(s) {extra} the schema does not declare "
            "(extra_columns: fail; ignore drops them, add adds them to the table)"
        )
    if missing and ev.missing_columns == "fail":
        problems.append(
            f"the header lacks the declared column(s) {list(missing)} "
            "(missing_columns: fail; null loads them as nulls)"
        )
    partition = [name for name in missing if name in ev.extra_partitions]
    if partition and ev.missing_columns == "null":
        problems.append(f"the header lacks the partition column(s) {partition}, which cannot be null")
    if problems:
        raise LoadError("read", f"{uri}: {'; '.join(problems)}; header: {header}")


def _added_names(ev: LoadEvent, uri: str, extra: list[str]) -> list[str]:
    """The Glue names extra columns are added under (``extra_columns: add``): the header name in lower
    case, which must be a valid Glue name not taken by the schema or the partition key."""
    names = [h.lower() for h in extra]
    taken = {c.name for c in ev.schema} | {PARTITION_KEY}
    bad = [
        h
        for h, n in zip(extra, names, strict=True)
        if not _GLUE_NAME.match(n) or n in taken or names.count(n) > 1
    ]
    if bad:
        raise LoadError(
            "read",
            f"{uri}: extra_columns: add cannot add header column(s) {bad}: each needs a unique, valid Glue "
            "name (lowercase letters, digits, '_') not in the schema; declare them in the schema "
            '(typed columns may name their header with "source") or set extra_columns: ignore',
        )
    return names
