"""The event contract: the JSON object a load is started with, parsed and validated.

Every field is checked here, before any AWS call, and a bad one raises ``LoadError("validate", ...)``
naming the field and the rule it breaks.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .errors import LoadError

__all__ = [
    "GLUE_TYPES",
    "Column",
    "LoadEvent",
    "parse_event",
    "yesterday",
]

# Glue/Athena type names accepted in a typed schema (decimal(p,s) handled separately).
GLUE_TYPES = frozenset(
    {"string", "varchar", "bigint", "int", "integer", "smallint", "tinyint", "double", "float", "boolean"}
    | {"timestamp", "date"}
)
_DECIMAL = re.compile(r"^decimal\((\d{1,2}),\s*(\d{1,2})\)$")
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._\-/=+]+$")
_DATA_REF = re.compile(r"^\d{8}$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*([:.][A-Za-z_][A-Za-z0-9_]*)$")

PARTITION_KEY = "data_ref"

_FIELDS = {
    "bucket_src",
    "bucket_dstn",
    "substr",
    "schema",
    "pathoutput",
    "table",
    "database",
    "partitions_cols",
    "data_ref",
    "prefix",
    "delimiter",
    "quotechar",
    "encoding",
    "header",
    "zip_member",
    "transform",
    "allow_empty",
    "sse",
    "kms_key_id",
    "expected_bucket_owner",
}
_REQUIRED = ("bucket_src", "bucket_dstn", "substr", "schema", "pathoutput", "table", "database")


@dataclass(frozen=True)
class Column:
    """One column of the declared schema: a Glue name and a Glue type (``None`` = untyped, read as text)."""

    name: str
    type: str | None = None

    @property
    def glue_type(self) -> str:
        return self.type or "string"


@dataclass(frozen=True)
class LoadEvent:
    """A validated load request. Build it with :func:`parse_event`."""

    bucket_src: str
    bucket_dstn: str
    substr: str
    schema: tuple[Column, ...]
    pathoutput: str
    table: str
    database: str
    data_ref: str
    partitions_cols: tuple[str, ...] = (PARTITION_KEY,)
    prefix: str = ""
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    header: bool = False
    zip_member: str | None = None
    transform: str | None = None
    allow_empty: bool = False
    sse: str = "AES256"
    kms_key_id: str | None = None
    expected_bucket_owner: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def typed(self) -> bool:
        return any(c.type is not None for c in self.schema)

    @property
    def source_prefix(self) -> str:
        """The listing prefix with ``{data_ref}`` replaced by the day."""
        return self.prefix.replace("{data_ref}", self.data_ref)

    @property
    def table_root(self) -> str:
        """``pathoutput`` without slashes at either end: the table's key prefix in the destination."""
        return self.pathoutput.strip("/")

    @property
    def day_prefix(self) -> str:
        """Key prefix of the day's partition: ``{pathoutput}/data_ref={data_ref}/``."""
        return f"{self.table_root}/{PARTITION_KEY}={self.data_ref}/"

    @property
    def extra_partitions(self) -> tuple[str, ...]:
        """Partition columns below ``data_ref`` (taken from the data)."""
        return self.partitions_cols[1:]

    @property
    def data_columns(self) -> tuple[Column, ...]:
        """Declared columns that are stored in the Parquet files (partition columns are in the path)."""
        return tuple(c for c in self.schema if c.name not in self.extra_partitions)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-able dict with every default filled in (what was actually run)."""
        out: dict[str, Any] = {
            "bucket_src": self.bucket_src,
            "bucket_dstn": self.bucket_dstn,
            "substr": self.substr,
            "schema": [{"name": c.name, "type": c.type} if c.type else c.name for c in self.schema],
            "pathoutput": self.pathoutput,
            "table": self.table,
            "database": self.database,
            "partitions_cols": list(self.partitions_cols),
            "data_ref": self.data_ref,
            "prefix": self.prefix,
            "delimiter": self.delimiter,
            "quotechar": self.quotechar,
            "encoding": self.encoding,
            "header": self.header,
            "allow_empty": self.allow_empty,
            "sse": self.sse,
        }
        for name in ("zip_member", "transform", "kms_key_id", "expected_bucket_owner"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def yesterday(now: datetime | None = None) -> str:
    """Yesterday in UTC as ``YYYYMMDD`` (the default ``data_ref``)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment.astimezone(UTC) - timedelta(days=1)).strftime("%Y%m%d")


def _fail(name: str, rule: str) -> LoadError:
    return LoadError("validate", f"field {name!r}: {rule}")


def _str(ev: Mapping[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = ev.get(name)
    if value is None:
        if required:
            raise _fail(name, "is required")
        return default
    if not isinstance(value, str):
        raise _fail(name, f"must be a string, got {type(value).__name__}")
    return value


def _bool(ev: Mapping[str, Any], name: str) -> bool:
    value = ev.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(name, f"must be true or false, got {value!r}")
    return value


def validate_bucket(name: str, value: str) -> str:
    """S3 bucket naming rules (general purpose buckets)."""
    if not _BUCKET.match(value):
        raise _fail(
            name,
            f"{value!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit)",
        )
    if ".." in value or ".-" in value or "-." in value:
        raise _fail(name, f"{value!r} is not a valid S3 bucket name (no adjacent dots or dot-hyphen)")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise _fail(name, f"{value!r} is not a valid S3 bucket name (must not look like an IP address)")
    if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        raise _fail(name, f"{value!r} is not a valid S3 bucket name (reserved prefix or suffix)")
    return value


def validate_glue_name(name: str, value: str) -> str:
    """Glue/Athena names: lowercase letters, digits and underscore, 1-255 characters."""
    if not _GLUE_NAME.match(value):
        raise _fail(
            name,
            f"{value!r} is not a valid Glue name (only lowercase letters, digits and underscore, "
            "1-255 characters)",
        )
    return value


def _key_path(name: str, value: str, *, allow_empty: bool) -> str:
    if not value:
        if allow_empty:
            return value
        raise _fail(name, "must not be empty")
    if value.startswith("/"):
        raise _fail(name, f"{value!r} must not start with '/'")
    if "//" in value:
        raise _fail(name, f"{value!r} must not contain an empty path segment ('//')")
    segments = value.strip("/").split("/")
    if any(seg in (".", "..") for seg in segments):
        raise _fail(name, f"{value!r} must not contain '.' or '..' path segments")
    return value


def _pathoutput(value: str) -> str:
    _key_path("pathoutput", value, allow_empty=False)
    if not _PATH_CHARS.match(value):
        raise _fail(
            "pathoutput",
            f"{value!r} may only hold letters, digits and . _ - / = + (no quotes, spaces or wildcards)",
        )
    if f"{PARTITION_KEY}=" in value:
        raise _fail("pathoutput", f"{value!r} must be the table root, not a partition folder")
    return value.rstrip("/")


def _prefix(value: str) -> str:
    _key_path("prefix", value, allow_empty=True)
    leftover = value.replace("{data_ref}", "")
    if "{" in leftover or "}" in leftover:
        raise _fail("prefix", f"{value!r}: the only placeholder allowed is {{data_ref}}")
    return value


def _data_ref(ev: Mapping[str, Any], now: datetime | None) -> str:
    value = ev.get("data_ref")
    if value is None or value == "":
        return yesterday(now)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DATA_REF.match(value):
        raise _fail("data_ref", f"{value!r} must be a day as YYYYMMDD")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise _fail("data_ref", f"{value!r} is not a real calendar date") from None
    return value


def _glue_type(index: int, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"schema[{index}].type", f"must be a string, got {type(value).__name__}")
    t = value.strip().lower()
    if t in GLUE_TYPES:
        return t
    m = _DECIMAL.match(t)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise _fail(f"schema[{index}].type", f"{value!r}: decimal needs 1 <= p <= 38 and 0 <= s <= p")
        return f"decimal({precision},{scale})"
    allowed = ", ".join(sorted(GLUE_TYPES))
    raise _fail(f"schema[{index}].type", f"{value!r} is not a supported type ({allowed}, decimal(p,s))")


def _schema(value: Any) -> tuple[Column, ...]:
    if not isinstance(value, list) or not value:
        raise _fail("schema", "must be a non-empty list of column names or of {name, type} objects")
    columns: list[Column] = []
    kinds = {type(item) for item in value}
    if len(kinds) > 1:
        raise _fail("schema", "mixes plain names and {name, type} objects; use one form")
    for i, item in enumerate(value):
        if isinstance(item, str):
            columns.append(Column(validate_glue_name(f"schema[{i}]", item)))
        elif isinstance(item, dict):
            unknown = set(item) - {"name", "type"}
            if unknown:
                raise _fail(f"schema[{i}]", f"unknown key(s) {sorted(unknown)}; allowed: name, type")
            name = item.get("name")
            if not isinstance(name, str):
                raise _fail(f"schema[{i}].name", "is required and must be a string")
            columns.append(
                Column(validate_glue_name(f"schema[{i}].name", name), _glue_type(i, item.get("type")))
            )
        else:
            raise _fail(f"schema[{i}]", f"must be a column name or a {{name, type}} object, got {item!r}")
    seen: set[str] = set()
    for col in columns:
        if col.name in seen:
            raise _fail("schema", f"column name {col.name!r} appears more than once (names must be unique)")
        seen.add(col.name)
    if PARTITION_KEY in seen:
        raise _fail("schema", f"must not declare {PARTITION_KEY!r}: the loader adds it as the partition key")
    return tuple(columns)


def _partitions(value: Any, schema: tuple[Column, ...]) -> tuple[str, ...]:
    if value is None:
        return (PARTITION_KEY,)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail("partitions_cols", "must be a non-empty list of column names")
    if value[0] != PARTITION_KEY:
        raise _fail(
            "partitions_cols", f"must start with {PARTITION_KEY!r} (the day is the unit of replacement)"
        )
    if len(set(value)) != len(value):
        raise _fail("partitions_cols", f"{value!r} repeats a column")
    names = {c.name for c in schema}
    for extra in value[1:]:
        if extra not in names:
            raise _fail("partitions_cols", f"{extra!r} is not a column of the schema")
    if len(value) == len(schema) + 1:
        raise _fail("partitions_cols", "leaves no data column outside the partition columns")
    return tuple(value)


def _single_char(ev: Mapping[str, Any], name: str, default: str) -> str:
    value = _str(ev, name, default=default)
    if len(value) != 1 or value in "\r\n":
        raise _fail(name, f"{value!r} must be exactly one character (not a line break)")
    return value


def parse_event(event: Mapping[str, Any], *, now: datetime | None = None) -> LoadEvent:
    """Validate a raw event (a JSON object) into a :class:`LoadEvent`.

    Parameters
    ----------
    event
        The event as decoded JSON.
    now
        The moment "yesterday" is counted from when ``data_ref`` is absent (default: now, UTC).

    Raises
    ------
    LoadError
        Stage ``validate``, naming the field and the rule.
    """
    if not isinstance(event, Mapping):
        raise LoadError("validate", f"the event must be a JSON object, got {type(event).__name__}")
    unknown = sorted(set(event) - _FIELDS)
    if unknown:
        raise LoadError(
            "validate", f"unknown field(s) {unknown}; allowed fields: {', '.join(sorted(_FIELDS))}"
        )
    for name in _REQUIRED:
        if event.get(name) in (None, ""):
            raise _fail(name, "is required")
    schema = _schema(event["schema"])
    substr = _str(event, "substr", required=True)
    delimiter = _single_char(event, "delimiter", ",")
    quotechar = _single_char(event, "quotechar", '"')
    if delimiter == quotechar:
        raise _fail("quotechar", "must differ from the delimiter")
    encoding = _str(event, "encoding", default="utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _fail("encoding", f"{encoding!r} is not a known text encoding") from None
    zip_member = _str(event, "zip_member") or None
    transform = _str(event, "transform") or None
    if transform is not None and not _DOTTED.match(transform):
        raise _fail(
            "transform", f"{transform!r} must be a dotted path to a function, e.g. 'my_pkg.hooks:clean'"
        )
    sse = _str(event, "sse", default="AES256")
    if sse not in ("AES256", "aws:kms"):
        raise _fail("sse", f"{sse!r} must be 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS)")
    kms_key_id = _str(event, "kms_key_id") or None
    if kms_key_id and sse != "aws:kms":
        raise _fail("kms_key_id", "is only allowed with sse 'aws:kms'")
    owner = _str(event, "expected_bucket_owner") or None
    if owner is not None and not re.fullmatch(r"\d{12}", owner):
        raise _fail("expected_bucket_owner", f"{owner!r} must be a 12-digit AWS account id")
    return LoadEvent(
        bucket_src=validate_bucket("bucket_src", _str(event, "bucket_src", required=True)),
        bucket_dstn=validate_bucket("bucket_dstn", _str(event, "bucket_dstn", required=True)),
        substr=substr,
        schema=schema,
        pathoutput=_pathoutput(_str(event, "pathoutput", required=True)),
        table=validate_glue_name("table", _str(event, "table", required=True)),
        database=validate_glue_name("database", _str(event, "database", required=True)),
        data_ref=_data_ref(event, now),
        partitions_cols=_partitions(event.get("partitions_cols"), schema),
        prefix=_prefix(_str(event, "prefix")),
        delimiter=delimiter,
        quotechar=quotechar,
        encoding=encoding,
        header=_bool(event, "header"),
        zip_member=zip_member,
        transform=transform,
        allow_empty=_bool(event, "allow_empty"),
        sse=sse,
        kms_key_id=kms_key_id,
        expected_bucket_owner=owner,
        raw=dict(event),
    )
