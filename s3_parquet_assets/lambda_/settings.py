"""The function's settings, read from the environment at every call (never at import).

The handler's own variables (:data:`HANDLER_SETTINGS`) plus the contract's environment scheme
(``S3PA_EVENT_DEFAULTS`` and one ``S3PA_<FIELD>`` per field, :func:`core.contract.settings_from_env`),
which describes the single table of a function without a tables file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from ..core import LoadError, contract

__all__ = [
    "DEFAULT_DATA_REF_PATTERN",
    "ENV_DATA_REF_PATTERN",
    "ENV_EVENT_DEFAULTS",
    "ENV_LOG_LEVEL",
    "ENV_RAISE_ON_ERROR",
    "ENV_TABLES",
    "HANDLER_SETTINGS",
    "RaisePolicy",
    "configure_logging",
    "contract_values",
    "data_ref_pattern",
    "raise_policy",
    "setting_error",
    "settings_from_env",
]

ENV_EVENT_DEFAULTS = contract.ENV_EVENT_DEFAULTS
ENV_TABLES = "S3PA_TABLES"
ENV_DATA_REF_PATTERN = "S3PA_DATA_REF_PATTERN"
ENV_RAISE_ON_ERROR = "S3PA_RAISE_ON_ERROR"
ENV_LOG_LEVEL = "S3PA_LOG_LEVEL"
HANDLER_SETTINGS = frozenset({ENV_TABLES, ENV_DATA_REF_PATTERN, ENV_RAISE_ON_ERROR, ENV_LOG_LEVEL})

DEFAULT_DATA_REF_PATTERN = r"(?<!\d)(?P<data_ref>\d{8})(?!\d)"

RaisePolicy = Literal["auto", "always", "never"]


def setting_error(name: str, rule: str) -> LoadError:
    return LoadError("validate", f"setting {name}: {rule}")


def contract_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every contract field set in the environment (parsed from text, not yet validated)."""
    return contract.settings_from_env(environ, reserved=HANDLER_SETTINGS)


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The load-event fields set in the environment: ``S3PA_EVENT_DEFAULTS`` overridden by
    ``S3PA_<FIELD>``, event fields only (the table-only hints such as ``S3PA_CATCHUP_DAYS`` are left
    out)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in contract_values(env).items() if contract.field(k).event}


def data_ref_pattern(environ: Mapping[str, str]) -> re.Pattern[str]:
    """``S3PA_DATA_REF_PATTERN``: where an S3 key spells its day (for a source prefix without
    ``{data_ref}``)."""
    text = environ.get(ENV_DATA_REF_PATTERN, "").strip() or DEFAULT_DATA_REF_PATTERN
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise setting_error(
            ENV_DATA_REF_PATTERN, f"{text!r} is not a valid regular expression: {exc}"
        ) from None
    groups = set(pattern.groupindex)
    if "data_ref" not in groups and not {"year", "month", "day"} <= groups:
        raise setting_error(
            ENV_DATA_REF_PATTERN,
            f"{text!r} needs a named group (?P<data_ref>...) or the groups year, month and day",
        )
    return pattern


def raise_policy(environ: Mapping[str, str]) -> RaisePolicy:
    """``S3PA_RAISE_ON_ERROR``: ``auto`` (default), ``always`` or ``never``."""
    value = environ.get(ENV_RAISE_ON_ERROR, "").strip().lower() or "auto"
    if value == "auto":
        return "auto"
    if value == "always":
        return "always"
    if value == "never":
        return "never"
    raise setting_error(ENV_RAISE_ON_ERROR, f"{value!r} must be auto, always or never")


def configure_logging(environ: Mapping[str, str]) -> None:
    """``S3PA_LOG_LEVEL``: level of the ``s3_parquet_assets`` loggers (default ``INFO``)."""
    level = environ.get(ENV_LOG_LEVEL, "").strip().upper() or "INFO"
    logging.getLogger("s3_parquet_assets").setLevel(
        level if level in logging.getLevelNamesMapping() else "INFO"
    )
