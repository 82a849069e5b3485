"""The one contract: every field a load event, a tables-file entry and the environment may set.

:data:`FIELDS` is the single table of fields. Each row says what the field is, whether it is
required, its default, how it is read from text (an environment variable), where it may appear
(a load event, a tables-file entry, the environment) and how one value is validated. Event
validation (:mod:`.event`), the tables file (:mod:`.tables`) and environment settings
(:func:`settings_from_env`) are all driven by it; no adapter lists fields by hand.

A rule broken by one value raises :class:`FieldError`, which carries the path of the value
(``schema[2].type``) and the rule separately, so each reader can name it in its own terms:
``field 'schema[2].type': ...`` for an event, ``tables[sales].schema[2].type: ...`` for the tables
file, ``setting S3PA_SCHEMA: ...`` for the environment.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from .errors import LoadError

__all__ = [
    "ENV_EVENT_DEFAULTS",
    "ENV_PREFIX",
    "FIELDS",
    "GLUE_TYPES",
    "PARTITION_KEY",
    "Column",
    "Field",
    "FieldError",
    "event_fields",
    "field",
    "header_key",
    "parse_text",
    "settings_from_env",
    "table_fields",
    "validate_bucket",
    "validate_glue_name",
]

PARTITION_KEY = "data_ref"
ENV_PREFIX = "S3PA_"
ENV_EVENT_DEFAULTS = "S3PA_EVENT_DEFAULTS"

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
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_ACCOUNT = re.compile(r"^\d{12}$")


class FieldError(LoadError):
    """One value breaks one rule. ``path`` names the value (``schema[2].type``), ``rule`` the rule."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__("validate", f"field {path!r}: {rule}")
        self.path = path
        self.rule = rule


@dataclass(frozen=True)
class Column:
    """One column of the declared schema: a Glue name and a Glue type (``None`` = untyped, read as text).

    ``source`` names the export's header column it is read from when that is not ``name`` (a header
    that is no valid Glue name, ``"Contact Phone Number"``); only typed columns may set it.
    """

    name: str
    type: str | None = None
    source: str | None = None

    @property
    def glue_type(self) -> str:
        return self.type or "string"

    @property
    def header_key(self) -> str:
        """What a header field must read as (:func:`header_key`) to be this column."""
        return header_key(self.source or self.name)


def header_key(text: str) -> str:
    """A header field as matched to the schema: byte-order mark and surrounding blanks dropped, any case."""
    return text.lstrip("\ufeff").strip().casefold()


# --------------------------------------------------------------------------------------------------
# Validators: (value, path) -> normalized value, or FieldError(path, rule).

Check = Callable[[Any, str], Any]
Text = Literal["str", "bool", "list", "int", "object"]


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, got {type(value).__name__}")
    return value


def _optional_string(value: Any, path: str) -> str | None:
    return _string(value, path) or None


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(path, f"must be true or false, got {value!r}")
    return value


def validate_bucket(raw: Any, path: str) -> str:
    """S3 bucket naming rules (general purpose buckets)."""
    value = _string(raw, path)
    if not _BUCKET.match(value):
        raise FieldError(
            path,
            f"{value!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit)",
        )
    if ".." in value or ".-" in value or "-." in value:
        raise FieldError(path, f"{value!r} is not a valid S3 bucket name (no adjacent dots or dot-hyphen)")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise FieldError(path, f"{value!r} is not a valid S3 bucket name (must not look like an IP address)")
    if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        raise FieldError(path, f"{value!r} is not a valid S3 bucket name (reserved prefix or suffix)")
    return value


def validate_glue_name(raw: Any, path: str) -> str:
    """Glue/Athena names: lowercase letters, digits and underscore, 1-255 characters."""
    value = _string(raw, path)
    if not _GLUE_NAME.match(value):
        raise FieldError(
            path,
            f"{value!r} is not a valid Glue name (only lowercase letters, digits and underscore, "
            "1-255 characters)",
        )
    return value


def _key_path(value: str, path: str, *, allow_empty: bool) -> str:
    if not value:
        if allow_empty:
            return value
        raise FieldError(path, "must not be empty")
    if value.startswith("/"):
        raise FieldError(path, f"{value!r} must not start with '/'")
    if "//" in value:
        raise FieldError(path, f"{value!r} must not contain an empty path segment ('//')")
    segments = value.strip("/").split("/")
    if any(seg in (".", "..") for seg in segments):
        raise FieldError(path, f"{value!r} must not contain '.' or '..' path segments")
    return value


def _pathoutput(raw: Any, path: str) -> str:
    value = _key_path(_string(raw, path), path, allow_empty=False)
    if not _PATH_CHARS.match(value):
        raise FieldError(
            path,
            f"{value!r} may only hold letters, digits and . _ - / = + (no quotes, spaces or wildcards)",
        )
    if f"{PARTITION_KEY}=" in value:
        raise FieldError(path, f"{value!r} must be the table root, not a partition folder")
    return value.rstrip("/")


def _prefix(raw: Any, path: str) -> str:
    value = _key_path(_string(raw, path), path, allow_empty=True)
    leftover = value.replace("{data_ref}", "")
    if "{" in leftover or "}" in leftover:
        raise FieldError(path, f"{value!r}: the only placeholder allowed is {{data_ref}}")
    return value


def _day(value: Any, path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DATA_REF.match(value):
        raise FieldError(path, f"{value!r} must be a day as YYYYMMDD")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise FieldError(path, f"{value!r} is not a real calendar date") from None
    return value


def _glue_type(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, got {type(value).__name__}")
    t = value.strip().lower()
    if t in GLUE_TYPES:
        return t
    m = _DECIMAL.match(t)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise FieldError(path, f"{value!r}: decimal needs 1 <= p <= 38 and 0 <= s <= p")
        return f"decimal({precision},{scale})"
    allowed = ", ".join(sorted(GLUE_TYPES))
    raise FieldError(path, f"{value!r} is not a supported type ({allowed}, decimal(p,s))")


def _column(item: Any, path: str) -> Column:
    if isinstance(item, str):
        return Column(validate_glue_name(item, path))
    if isinstance(item, dict):
        unknown = set(item) - {"name", "type", "source"}
        if unknown:
            raise FieldError(path, f"unknown key(s) {sorted(unknown)}; allowed: name, type, source")
        name = item.get("name")
        if not isinstance(name, str):
            raise FieldError(f"{path}.name", "is required and must be a string")
        return Column(
            validate_glue_name(name, f"{path}.name"),
            _glue_type(item.get("type"), f"{path}.type"),
            _source(item.get("source"), f"{path}.source"),
        )
    raise FieldError(path, f"must be a column name or a {{name, type}} object, got {item!r}")


def _source(value: Any, path: str) -> str | None:
    """The header name a typed column is read from (absent: its ``name``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not header_key(value):
        raise FieldError(
            path, f"{value!r} must be the column's name in the export's header (a non-empty string)"
        )
    if any(ch in value for ch in "\r\n"):
        raise FieldError(path, f"{value!r} must be one line")
    return value


def _schema(value: Any, path: str) -> tuple[Column, ...]:
    if not isinstance(value, list) or not value:
        raise FieldError(path, "must be a non-empty list of column names or of {name, type} objects")
    if len({type(item) for item in value}) > 1:
        raise FieldError(path, "mixes plain names and {name, type} objects; use one form")
    columns = tuple(_column(item, f"{path}[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for col in columns:
        if col.name in seen:
            raise FieldError(path, f"column name {col.name!r} appears more than once (names must be unique)")
        seen.add(col.name)
    if PARTITION_KEY in seen:
        raise FieldError(path, f"must not declare {PARTITION_KEY!r}: the loader adds it as the partition key")
    _unique_header_keys(columns, path)
    return columns


def _unique_header_keys(columns: tuple[Column, ...], path: str) -> None:
    """Two columns must not be read from the same header field (names and sources, in any case)."""
    owner: dict[str, str] = {}
    for col in columns:
        other = owner.setdefault(col.header_key, col.name)
        if other != col.name:
            raise FieldError(
                path, f"columns {other!r} and {col.name!r} would both be read from header {col.header_key!r}"
            )


def _partitions(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise FieldError(path, "must be a non-empty list of column names")
    if value[0] != PARTITION_KEY:
        raise FieldError(path, f"must start with {PARTITION_KEY!r} (the day is the unit of replacement)")
    if len(set(value)) != len(value):
        raise FieldError(path, f"{value!r} repeats a column")
    return tuple(value)


def _single_char(raw: Any, path: str) -> str:
    value = _string(raw, path)
    if len(value) != 1 or value in "\r\n":
        raise FieldError(path, f"{value!r} must be exactly one character (not a line break)")
    return value


def _encoding(raw: Any, path: str) -> str:
    value = _string(raw, path)
    try:
        codecs.lookup(value)
    except LookupError:
        raise FieldError(path, f"{value!r} is not a known text encoding") from None
    return value


def _transform(value: Any, path: str) -> str | None:
    text = _optional_string(value, path)
    if text is not None and not _DOTTED.match(text):
        raise FieldError(path, f"{text!r} must be a dotted path to a function, e.g. 'my_pkg.hooks:clean'")
    return text


def _sse(raw: Any, path: str) -> str:
    value = _string(raw, path)
    if value not in ("AES256", "aws:kms"):
        raise FieldError(path, f"{value!r} must be 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS)")
    return value


def _account(value: Any, path: str) -> str | None:
    text = _optional_string(value, path)
    if text is not None and not _ACCOUNT.match(text):
        raise FieldError(path, f"{text!r} must be a 12-digit AWS account id")
    return text


def _table_name(raw: Any, path: str) -> str:
    value = _string(raw, path)
    if not _TABLE_NAME.match(value):
        raise FieldError(
            path, f"{value!r} must be 1-64 letters, digits, '_' or '-' (it names the table everywhere)"
        )
    return value


def _hhmm(raw: Any, path: str) -> str:
    value = _string(raw, path)
    if not _HHMM.match(value):
        raise FieldError(path, f"{value!r} must be a time of day as HH:MM (24-hour, UTC)")
    return value


def _int_between(low: int, high: int) -> Check:
    def check(value: Any, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise FieldError(path, f"{value!r} must be a whole number from {low} to {high}")
        return value

    return check


def _names(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FieldError(path, "must be a list of non-empty strings")
    return tuple(value)


def _tags(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise FieldError(path, "must be a mapping of non-empty string keys to string values")
    return dict(value)


def _choice(*allowed: str) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in allowed:
            raise FieldError(path, f"{value!r} must be one of {', '.join(allowed)}")
        return str(value)

    return check


# --------------------------------------------------------------------------------------------------
# The table of fields.


@dataclass(frozen=True)
class Field:
    """One field of the contract.

    ``event``: part of a load event (``LoadEvent`` has an attribute of the same name).
    ``table``: allowed in a tables-file entry and its ``defaults``.
    ``env``: settable as ``S3PA_<NAME>`` (parsed from text as ``text`` says).
    ``default``: the value when absent (``None`` = absent); ``required`` fields have none.
    """

    name: str
    doc: str
    check: Check
    required: bool = False
    default: Any = None
    text: Text = "str"
    event: bool = True
    table: bool = True
    env: bool = True

    @property
    def env_var(self) -> str:
        return f"{ENV_PREFIX}{self.name.upper()}"


FIELDS: tuple[Field, ...] = (
    # Where the export is, where the table goes.
    Field("bucket_src", "Bucket the daily exports land in.", validate_bucket, required=True),
    Field("bucket_dstn", "Bucket of the Parquet table.", validate_bucket, required=True),
    Field(
        "prefix",
        "Listing prefix of a day's exports; '{data_ref}' is replaced by the day (exports/{data_ref}/).",
        _prefix,
        default="",
    ),
    Field("substr", "A day's export key contains this substring.", _string, required=True),
    Field(
        "schema",
        'Column names (["id", "name"]) or typed columns ([{"name": "id", "type": "bigint"}]); a typed '
        'column may name its header column with "source".',
        _schema,
        required=True,
        text="list",
    ),
    Field(
        "infer_types",
        "With a names-only schema and no Glue table yet: type the columns from the export's first block "
        "(bigint, double, boolean, timestamp or string, as pandas would) instead of reading them as text.",
        _boolean,
        default=False,
        text="bool",
    ),
    Field("pathoutput", "Table root in bucket_dstn (no leading '/', no '..').", _pathoutput, required=True),
    Field("table", "Glue table (created or extended).", validate_glue_name, required=True),
    Field("database", "Glue database (must exist).", validate_glue_name, required=True),
    Field(
        "data_ref",
        "The day, YYYYMMDD; default yesterday in UTC.",
        _day,
        table=False,
        env=False,
    ),
    Field(
        "partitions_cols",
        "Partition columns: data_ref first, then columns of the schema.",
        _partitions,
        default=(PARTITION_KEY,),
        text="list",
    ),
    # How the CSV is read.
    Field("delimiter", "Field delimiter, one character.", _single_char, default=","),
    Field("quotechar", "Quote character, one character.", _single_char, default='"'),
    Field("encoding", "Text encoding of the export (any Python codec name).", _encoding, default="utf-8"),
    Field(
        "header",
        "The export's first row is a header: columns are matched to the schema by name, in any order.",
        _boolean,
        default=False,
        text="bool",
    ),
    Field(
        "extra_columns",
        "Header columns the schema does not declare: fail (before writing), ignore, or add (as string).",
        _choice("fail", "ignore", "add"),
        default="fail",
    ),
    Field(
        "missing_columns",
        "Declared columns absent from the header: fail, or null (loaded as nulls).",
        _choice("fail", "null"),
        default="fail",
    ),
    Field("zip_member", "Member to read from a .zip holding several files.", _optional_string),
    Field("transform", "package.module:function applied to each batch (a pandas DataFrame).", _transform),
    Field(
        "allow_empty",
        "An export with zero data rows may replace the day.",
        _boolean,
        default=False,
        text="bool",
    ),
    # How the table is written.
    Field("sse", "Server-side encryption: AES256 or aws:kms.", _sse, default="AES256"),
    Field("kms_key_id", "KMS key for sse aws:kms.", _optional_string),
    Field("expected_bucket_owner", "12-digit account id that must own both buckets.", _account),
    # Tables file only: the table's identity and the orchestrators' hints.
    Field("name", "Unique name of the table in the tables file.", _table_name, event=False, env=False),
    Field(
        "description",
        "What the table holds (shown in the Dagster UI).",
        _string,
        default="",
        event=False,
    ),
    Field(
        "start_date",
        "First day (YYYYMMDD) the orchestrators know about (first Dagster partition).",
        _day,
        default="20240101",
        event=False,
    ),
    Field(
        "schedule",
        "Time of day (HH:MM, UTC) of the daily scheduled run.",
        _hhmm,
        default="06:00",
        event=False,
    ),
    Field(
        "catchup_days",
        "Trailing days a scheduled run re-checks and loads if their source changed (1 = yesterday only).",
        _int_between(1, 366),
        default=7,
        text="int",
        event=False,
    ),
    Field(
        "owners",
        "Owners shown in the Dagster UI (emails or team:name).",
        _names,
        default=(),
        text="list",
        event=False,
    ),
    Field(
        "tags",
        "Tags shown in the Dagster UI (string keys and values).",
        _tags,
        default={},
        text="object",
        event=False,
    ),
    Field(
        "run_on",
        "Where Dagster runs a load: local (in the run) or lambda (invokes lambda_function).",
        _choice("local", "lambda"),
        default="local",
        event=False,
    ),
    Field(
        "lambda_function", "Lambda function name or ARN (run_on: lambda).", _string, default="", event=False
    ),
    Field(
        "lambda_concurrency",
        "Days invoked at once on Lambda during a multi-day Dagster run.",
        _int_between(1, 100),
        default=4,
        text="int",
        event=False,
    ),
)

_BY_NAME = {f.name: f for f in FIELDS}


def field(name: str) -> Field:
    """The contract's field ``name``."""
    return _BY_NAME[name]


def event_fields() -> tuple[Field, ...]:
    """The fields of a load event, in the contract's order."""
    return tuple(f for f in FIELDS if f.event)


def table_fields() -> tuple[Field, ...]:
    """The fields a tables-file entry may hold (every field but ``data_ref``)."""
    return tuple(f for f in FIELDS if f.table)


# --------------------------------------------------------------------------------------------------
# Text (environment variables) -> values.


def parse_text(f: Field, raw: str, where: str) -> Any:
    """``raw`` read as the field's value; a bad text raises ``FieldError(where, ...)``."""
    text = raw.strip()
    if f.text == "bool":
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise FieldError(where, f"{raw!r} must be true or false")
    if f.text == "int":
        try:
            return int(text)
        except ValueError:
            raise FieldError(where, f"{raw!r} must be a whole number") from None
    if f.text == "list":
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        value = _json(text, where)
        if not isinstance(value, list):
            raise FieldError(where, "must be a JSON list or comma-separated names")
        return value
    if f.text == "object":
        value = _json(text, where)
        if not isinstance(value, dict):
            raise FieldError(where, "must be a JSON object")
        return value
    return raw


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FieldError(where, f"is not valid JSON: {exc}") from None


class SettingError(LoadError):
    """A bad environment setting, named as such (``setting S3PA_X: rule``)."""

    def __init__(self, var: str, rule: str) -> None:
        super().__init__("validate", f"setting {var}: {rule}")
        self.var = var
        self.rule = rule


def settings_from_env(
    environ: Mapping[str, str], *, reserved: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The contract's fields set in the environment: ``S3PA_EVENT_DEFAULTS`` (a JSON object of
    fields) overridden by one ``S3PA_<FIELD>`` variable per field. Empty values count as unset.

    ``reserved`` names other ``S3PA_*`` variables the caller reads itself; any other unknown
    ``S3PA_*`` variable is an error, so a typo cannot go unnoticed. Values are parsed from text but
    not validated (that is the event's or the table's job, which names the field).
    """
    out: dict[str, Any] = {}
    defaults = environ.get(ENV_EVENT_DEFAULTS, "").strip()
    if defaults:
        try:
            parsed = json.loads(defaults)
        except json.JSONDecodeError as exc:
            raise SettingError(ENV_EVENT_DEFAULTS, f"is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise SettingError(ENV_EVENT_DEFAULTS, "must be a JSON object of event fields")
        if PARTITION_KEY in parsed:
            raise SettingError(ENV_EVENT_DEFAULTS, "must not set data_ref (it comes from each event)")
        unknown = sorted(k for k in parsed if k not in _BY_NAME or not _BY_NAME[k].env)
        if unknown:
            raise SettingError(ENV_EVENT_DEFAULTS, f"unknown field(s) {unknown}")
        out.update(parsed)
    by_var = {f.env_var: f for f in FIELDS if f.env}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in reserved or var == ENV_EVENT_DEFAULTS:
            continue
        f = by_var.get(var)
        if f is None:
            known = sorted([ENV_EVENT_DEFAULTS, *reserved, *by_var])
            raise SettingError(var, f"is not a known setting; known: {', '.join(known)}")
        raw = environ[var]
        if raw.strip() == "":
            continue
        try:
            out[f.name] = parse_text(f, raw, var)
        except FieldError as exc:
            raise SettingError(var, exc.rule) from None
    return out
