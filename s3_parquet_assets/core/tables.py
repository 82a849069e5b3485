"""The tables file: every table a team loads, declared once, validated against the contract.

.. code-block:: yaml

    defaults:                 # any contract field but name and data_ref; a table's own value wins
      bucket_src: acme-exports
      bucket_dstn: acme-lake
      database: lake
    tables:
      - name: sales
        prefix: "sales/{data_ref}/"
        substr: sales_
        schema: [id, customer, amount]
        pathoutput: warehouse/sales
        table: sales
        start_date: "20240101"
        schedule: "06:00"
        catchup_days: 7

Validation names the table and the field (``tables[sales].schema[2].type: ...``), rejects unknown
keys, duplicate names, and two tables writing the same Glue table or the same (or a nested) table
path. The Lambda, the CLI and Dagster read the same file through :func:`read_tables`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import FIELDS, PARTITION_KEY, FieldError, field, table_fields
from .errors import LoadError
from .event import LoadEvent, parse_event

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "TableSpec",
    "Tables",
    "parse_tables",
    "read_tables",
    "table_from_settings",
]

_TOP_KEYS = ("defaults", "tables")


class TablesFileError(LoadError):
    """A tables file breaks the contract: ``where`` names the table and field."""

    def __init__(self, source: str, where: str, rule: str) -> None:
        super().__init__(
            "validate", f"tables file {source}: {where}: {rule}" if where else f"{source}: {rule}"
        )
        self.where = where
        self.rule = rule


@dataclass(frozen=True)
class TableSpec:
    """One declared table: its load settings (contract event fields, as declared) and the hints the
    orchestrators use. The hint attributes are exactly the contract's table-only fields."""

    name: str
    settings: Mapping[str, Any]
    description: str
    start_date: str
    schedule: str
    catchup_days: int
    owners: tuple[str, ...]
    tags: Mapping[str, str]
    run_on: str
    lambda_function: str
    lambda_concurrency: int

    def event(self, data_ref: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The load event for one day: the table's settings, then ``overrides``, then the day."""
        return {**self.settings, **(overrides or {}), PARTITION_KEY: data_ref}

    def load_event(self, data_ref: str) -> LoadEvent:
        """The validated event for one day."""
        return parse_event(self.event(data_ref))

    @cached_property
    def probe(self) -> LoadEvent:
        """The table's settings validated (as the event of its first day): typed access to them."""
        return self.load_event(self.start_date)

    @property
    def hhmm(self) -> tuple[int, int]:
        hours, minutes = self.schedule.split(":")
        return int(hours), int(minutes)

    def key_day(self, bucket: str, key: str) -> str | None:
        """The day a created object ``s3://bucket/key`` is this table's export for, or ``None``.

        The key must be in the source bucket, start with the prefix (``{data_ref}`` matching a real
        YYYYMMDD day) and contain ``substr``. A prefix without ``{data_ref}`` gives no day (``""``:
        the caller decides, e.g. from the key's digits)."""
        ev = self.probe
        if bucket != ev.bucket_src or key.endswith("/") or ev.substr not in key:
            return None
        parts = [re.escape(p) for p in ev.prefix.split("{data_ref}")]
        match = re.match(r"(?P<data_ref>\d{8})".join(parts), key)
        if match is None:
            return None
        day = match.groupdict().get(PARTITION_KEY)
        if day is None:
            return ""
        try:
            field(PARTITION_KEY).check(day, PARTITION_KEY)
        except FieldError:
            return None
        return str(day)


_HINTS = tuple(f for f in table_fields() if not f.event and f.name != "name")


@dataclass(frozen=True)
class Tables:
    """The validated tables file, in declaration order."""

    tables: tuple[TableSpec, ...]
    source: str = "<tables>"

    def __iter__(self) -> Iterator[TableSpec]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def get(self, name: str) -> TableSpec:
        """The table ``name``; a clear ``validate`` error listing the declared names otherwise."""
        for spec in self.tables:
            if spec.name == name:
                return spec
        raise LoadError(
            "validate", f"table {name!r} is not declared in {self.source} (tables: {', '.join(self.names)})"
        )

    def match(self, bucket: str, key: str) -> list[tuple[TableSpec, str]]:
        """Every table whose source ``s3://bucket/key`` is, with the day (``""``: the prefix has no
        ``{data_ref}``)."""
        out: list[tuple[TableSpec, str]] = []
        for spec in self.tables:
            day = spec.key_day(bucket, key)
            if day is not None:
                out.append((spec, day))
        return out


def _where_from(path: str, label: str, entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    if top not in entry and top in defaults:
        return f"defaults.{path} (used by {label})"
    return f"{label}.{path}"


def _check_keys(source: str, where: str, mapping: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in allowed:
            raise TablesFileError(
                source, f"{where}.{key}", f"unknown field; allowed: {', '.join(sorted(allowed))}"
            )


def table_from_settings(values: Mapping[str, Any], *, label: str = "table") -> TableSpec:
    """A :class:`TableSpec` from contract fields (the entry merged with its defaults).

    Raises ``FieldError`` naming the field: the caller says where it was declared."""
    event_names = {f.name for f in FIELDS if f.event}
    settings = {k: v for k, v in values.items() if k in event_names and k != PARTITION_KEY}
    hints: dict[str, Any] = {}
    for f in _HINTS:
        raw = values.get(f.name)
        hints[f.name] = f.default if raw is None else f.check(raw, f.name)
    name = values.get("name")
    if name is None:
        name = settings.get("table") or label
    spec = TableSpec(name=field("name").check(name, "name"), settings=settings, **hints)
    spec.probe  # noqa: B018 - validates every event field now, naming it
    return spec


def _spec(source: str, index: int, entry: Any, defaults: Mapping[str, Any]) -> TableSpec:
    if not isinstance(entry, Mapping):
        raise TablesFileError(source, f"tables[{index}]", "must be a mapping of contract fields")
    name = entry.get("name")
    label = f"tables[{name}]" if isinstance(name, str) and name else f"tables[{index}]"
    if name is None:
        raise TablesFileError(source, f"{label}.name", "is required")
    allowed = tuple(f.name for f in table_fields())
    _check_keys(source, label, entry, allowed)
    try:
        return table_from_settings({**defaults, **entry}, label=label)
    except FieldError as exc:
        raise TablesFileError(source, _where_from(exc.path, label, entry, defaults), exc.rule) from None


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _check_unique(source: str, specs: list[TableSpec]) -> None:
    seen: dict[str, TableSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise TablesFileError(source, f"tables[{spec.name}].name", "is declared more than once")
        seen[spec.name] = spec
    for i, a in enumerate(specs):
        ea = a.probe
        for b in specs[:i]:
            eb = b.probe
            if (ea.database, ea.table) == (eb.database, eb.table):
                raise TablesFileError(
                    source,
                    f"tables[{a.name}].table",
                    f"Glue table {ea.database}.{ea.table} is also written by tables[{b.name}]",
                )
            if ea.bucket_dstn == eb.bucket_dstn and _nested(ea.table_root, eb.table_root):
                raise TablesFileError(
                    source,
                    f"tables[{a.name}].pathoutput",
                    f"s3://{ea.bucket_dstn}/{ea.table_root} overlaps s3://{eb.bucket_dstn}/{eb.table_root} "
                    f"of tables[{b.name}] (each table needs a path of its own)",
                )


def parse_tables(doc: Any, source: str = "<tables>") -> Tables:
    """Validate a decoded tables file (``defaults`` and ``tables``) into :class:`Tables`.

    Raises ``LoadError("validate", "tables file <source>: tables[<name>].<field>: <rule>")``."""
    if not isinstance(doc, Mapping):
        raise TablesFileError(source, "", "must be a mapping with 'tables' (and optionally 'defaults')")
    for key in doc:
        if key not in _TOP_KEYS:
            raise TablesFileError(source, str(key), f"unknown key; allowed: {', '.join(_TOP_KEYS)}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise TablesFileError(source, "defaults", "must be a mapping of contract fields")
    _check_keys(source, "defaults", defaults, tuple(f.name for f in table_fields() if f.name != "name"))
    entries = doc.get("tables")
    if not isinstance(entries, list) or not entries:
        raise TablesFileError(source, "tables", "must be a non-empty list of tables")
    specs = [_spec(source, i, entry, defaults) for i, entry in enumerate(entries)]
    _check_unique(source, specs)
    return Tables(tuple(specs), source)


def _yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise TablesFileError(source, "", f"is not valid YAML: {where}{problem}") from None


def read_tables(
    location: str | Path, s3: S3Client | None = None, *, reader: Callable[[str], str] | None = None
) -> Tables:
    """Read and validate a tables file from a local path or an ``s3://bucket/key`` URI (with ``s3``)."""
    text_of = reader or (lambda loc: _read_text(loc, s3))
    source = str(location)
    return parse_tables(_yaml(text_of(source), source), source)


def _read_text(location: str, s3: S3Client | None) -> str:
    if location.startswith("s3://"):
        bucket, _, key = location[5:].partition("/")
        if not bucket or not key:
            raise TablesFileError(location, "", "an S3 location must be s3://bucket/key")
        if s3 is None:
            raise TablesFileError(location, "", "reading from S3 needs an S3 client")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise LoadError("validate", f"cannot read the tables file {location}: {exc}") from exc
        return bytes(body).decode("utf-8")
    try:
        return Path(location).read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadError("validate", f"cannot read the tables file {location}: {exc}") from None


def _spec_fields_match_contract() -> bool:
    """TableSpec's hint attributes are exactly the contract's table-only fields (checked by a test)."""
    own = {f.name for f in fields(TableSpec)} - {"name", "settings"}
    return own == {f.name for f in _HINTS}
