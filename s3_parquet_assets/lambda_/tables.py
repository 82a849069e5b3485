"""The tables the function serves: a tables file, or the single table of the environment.

Where the tables file is found, first match wins:

1. ``S3PA_TABLES``: an ``s3://bucket/key`` URI or a path (an operator's choice at deploy time, so it
   takes precedence over what the package holds);
2. ``s3pa_tables.yaml`` at the root of the deployment package (next to the ``s3_parquet_assets``
   folder), bundled by ``make lambda-zip TABLES=path``.

The file is read and validated on first use in a container (never at import) and kept for the
container's life, keyed by its location: a changed file is served by new containers. A file that
fails to read or validate is not kept, so every invocation that needs it fails with the same clear
error (naming the table and the field) until it is fixed.

With neither, the function serves one table described by the contract's environment scheme
(``S3PA_EVENT_DEFAULTS`` + ``S3PA_<FIELD>``, hints such as ``S3PA_CATCHUP_DAYS`` included); its name
is its Glue table's. Contract settings in the environment next to a tables file are refused (they
would otherwise be silently ignored): declare them in the file's ``defaults``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core import AwsClients, LoadError, Tables, TableSpec, contract, read_tables, table_from_settings
from .settings import ENV_TABLES, contract_values, setting_error

__all__ = [
    "BUNDLED_TABLES",
    "ENV_SOURCE",
    "Served",
    "bundled_tables_path",
    "env_table",
    "file_tables",
    "reset_tables",
    "served_tables",
    "tables_location",
]

log = logging.getLogger(__name__)

BUNDLED_TABLES = "s3pa_tables.yaml"
ENV_SOURCE = "the environment (S3PA_*)"

_CACHE: dict[str, Tables] = {}


def bundled_tables_path() -> Path:
    """``s3pa_tables.yaml`` at the package root (the zip's root: next to ``s3_parquet_assets/``)."""
    return Path(__file__).resolve().parents[2] / BUNDLED_TABLES


def tables_location(environ: Mapping[str, str], *, bundled: Path | None = None) -> str | None:
    """The tables file to serve: ``S3PA_TABLES`` if set, else the bundled file (default
    :func:`bundled_tables_path`) if present, else ``None`` (the single table of the environment)."""
    configured = environ.get(ENV_TABLES, "").strip()
    if configured:
        return configured
    path = bundled or bundled_tables_path()
    return str(path) if path.is_file() else None


def _read(location: str, clients: Callable[[], AwsClients]) -> Tables:
    cached = _CACHE.get(location)
    if cached is None:
        s3 = clients().s3 if location.startswith("s3://") else None
        cached = read_tables(location, s3=s3)
        log.info("serving %d table(s) from %s: %s", len(cached), location, ", ".join(cached.names))
        _CACHE[location] = cached
    return cached


def reset_tables() -> None:
    """Forget the tables read so far (tests; a changed file)."""
    _CACHE.clear()


def env_table(environ: Mapping[str, str]) -> TableSpec:
    """The single table described by the environment; a bad or missing setting is named as such
    (``setting S3PA_BUCKET_SRC: is required``)."""
    values = contract_values(environ)
    try:
        return table_from_settings(values, label="environment")
    except contract.FieldError as exc:
        top = exc.path.split(".", 1)[0].split("[", 1)[0]
        var = contract.field(top).env_var if top in {f.name for f in contract.FIELDS} else exc.path
        detail = "" if exc.path == top else f"{exc.path}: "
        raise setting_error(var, f"{detail}{exc.rule}") from None


@dataclass(frozen=True)
class Served:
    """The tables this invocation serves, and whether they come from a tables file."""

    tables: Tables
    from_file: bool

    def only(self) -> TableSpec | None:
        """The table when exactly one is served."""
        return self.tables.tables[0] if len(self.tables) == 1 else None


def file_tables(environ: Mapping[str, str], clients: Callable[[], AwsClients]) -> Tables | None:
    """The tables file's tables (read once per container), or ``None`` without a tables file."""
    location = tables_location(environ)
    if location is None:
        return None
    stray = sorted(contract_values(environ))
    if stray:
        raise LoadError(
            "validate",
            f"the environment sets table fields ({', '.join(stray)}; from {contract.ENV_EVENT_DEFAULTS} "
            f"or S3PA_<FIELD>) but the function serves the tables file {location}: declare them "
            "there (its 'defaults' apply to every table)",
        )
    return _read(location, clients)


def served_tables(environ: Mapping[str, str], clients: Callable[[], AwsClients]) -> Served:
    """The tables file's tables, or the environment's single table."""
    tables = file_tables(environ, clients)
    if tables is not None:
        return Served(tables, from_file=True)
    return Served(Tables((env_table(environ),), ENV_SOURCE), from_file=False)
