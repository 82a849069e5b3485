"""Dagster Pipes: an event carrying Pipes bootstrap parameters runs inside a Pipes session.

Only the package ``dagster-pipes`` is used (imported when a Pipes event arrives, never at import).
The load reports the materialization with the same metadata and data version (the source ETag) as
the Dagster ``parquet_table`` asset.

By default (``PipesLambdaLogsMessageReader`` on the Dagster side) messages are buffered and written to
stderr as the very last output of the invocation, and the Dagster side reads them from the 4 KB log
tail that a synchronous invoke returns. The session keeps them small (three messages, long strings
shortened so the whole batch stays under :data:`PIPES_TAIL_BUDGET` bytes) and nothing is logged
after the flush. If the Dagster side uses ``PipesS3MessageReader`` instead, the messages parameters
name a bucket and the session writes them there (``PipesS3MessageWriter``) with the same S3 client.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.pipeline import COLUMN_REPORTS
from .clients import get_clients
from .failures import LoadFailedError

if TYPE_CHECKING:
    from dagster_pipes import PipesContext, PipesException

__all__ = [
    "PIPES_ASSET_KEY",
    "PIPES_CONTEXT_KEY",
    "PIPES_MESSAGES_KEY",
    "PIPES_TAIL_BUDGET",
    "pipes_data_ref",
    "pipes_metadata",
    "run_with_pipes",
    "split_pipes_params",
]

log = logging.getLogger(__name__)

# Dagster Pipes bootstrap keys (dagster_pipes.DAGSTER_PIPES_CONTEXT_ENV_VAR / ..._MESSAGES_ENV_VAR),
# spelled out so that importing this module does not import dagster_pipes.
PIPES_CONTEXT_KEY = "DAGSTER_PIPES_CONTEXT"
PIPES_MESSAGES_KEY = "DAGSTER_PIPES_MESSAGES"

# Bytes the buffered Pipes messages may take in the log tail. PipesLambdaLogsMessageReader parses the
# last 4096 bytes of the log; after the flush Lambda still appends its END and REPORT lines (~350
# bytes, more with an init duration), so this leaves a margin.
PIPES_TAIL_BUDGET = 3000


def split_pipes_params(event: Any) -> tuple[dict[str, Any], Any] | None:
    """``(bootstrap parameters, the event without them)`` for a Pipes event, else ``None``."""
    if not isinstance(event, Mapping) or PIPES_CONTEXT_KEY not in event:
        return None
    params = {k: event[k] for k in (PIPES_CONTEXT_KEY, PIPES_MESSAGES_KEY) if k in event}
    return params, {k: v for k, v in event.items() if k not in params}


# The Dagster asset the function materializes, and its metadata as s3_parquet_assets.defs.assets
# .table_metadata builds it for a local load: key -> (LoadResult field, Pipes metadata type).
PIPES_ASSET_KEY = "parquet_table"
_PIPES_METADATA: tuple[tuple[str, str, str], ...] = (
    ("dagster/partition_row_count", "rows", "int"),
    ("dagster/uri", "partition_location", "text"),
    ("rows", "rows", "int"),
    ("bytes", "bytes", "int"),
    ("files", "files", "int"),
    ("output_location", "output_location", "path"),
    ("partition_location", "partition_location", "path"),
    ("glue_table", "table", "text"),
    ("source_key", "source_key", "text"),
    ("source_etag", "etag", "text"),
    ("seconds", "seconds", "float"),
    ("load_id", "load_id", "text"),
    ("previous_location", "previous_location", "text"),
    ("removed_objects", "removed_objects", "int"),
)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = max(limit - 3, 8)
    return f"{text[: keep // 2]}...{text[-(keep - keep // 2) :]}"


def pipes_metadata(result: Mapping[str, Any], budget: int = PIPES_TAIL_BUDGET - 800) -> dict[str, Any]:
    """The materialization metadata reported through Pipes (the same keys and types as the Dagster
    ``parquet_table`` asset), with long strings shortened so its JSON stays within ``budget`` bytes."""
    meta: dict[str, Any] = {
        key: {"raw_value": result.get(field), "type": kind} for key, field, kind in _PIPES_METADATA
    }
    meta["seconds"]["raw_value"] = float(meta["seconds"]["raw_value"] or 0.0)
    meta["previous_location"]["raw_value"] = meta["previous_location"]["raw_value"] or "-"
    for name in COLUMN_REPORTS:
        meta[name] = {"raw_value": ", ".join(result.get(name) or []) or "-", "type": "text"}
    meta["skipped"] = {"raw_value": False, "type": "bool"}
    limit = 512
    while len(json.dumps(meta)) > budget and limit > 16:
        for entry in meta.values():
            if isinstance(entry["raw_value"], str):
                entry["raw_value"] = _shorten(entry["raw_value"], limit)
        limit //= 2
    return meta


def _pipes_exception(message: str, name: str) -> PipesException:
    return {"message": _shorten(message, 800), "stack": [], "name": name, "cause": None, "context": None}


def pipes_data_ref(pipes: PipesContext) -> str | None:
    """The day of a partitioned Dagster run (``2024-01-15`` or ``20240115`` -> ``20240115``)."""
    try:
        key = pipes.partition_key
    except Exception:  # not a single-partition run
        return None
    digits = re.sub(r"\D", "", key or "")
    return digits if len(digits) == 8 else None


def _pipes_asset_key(pipes: PipesContext) -> str | None:
    """``parquet_table`` when it is in scope (the Dagster op may also hold ``latest_source_object``),
    else the only asset in scope."""
    if not pipes.is_asset_step:
        return None
    keys = list(pipes.asset_keys)
    if PIPES_ASSET_KEY in keys:
        return PIPES_ASSET_KEY
    return keys[0] if len(keys) == 1 else None


def run_with_pipes(
    params: Mapping[str, Any], run: Callable[[PipesContext], dict[str, Any]]
) -> dict[str, Any]:
    from dagster_pipes import (
        PipesContext,
        PipesDefaultContextLoader,
        PipesDefaultMessageWriter,
        PipesMappingParamsLoader,
        PipesS3ContextLoader,
        PipesS3MessageWriter,
        open_dagster_pipes,
    )

    loader = PipesMappingParamsLoader(params)
    if PipesContext.is_initialized():  # left over from an earlier invocation of this container
        PipesContext._instance = None
    context_params = loader.load_context_params()
    messages_params = loader.load_messages_params()
    context_loader = (
        PipesS3ContextLoader(get_clients().s3) if "bucket" in context_params else PipesDefaultContextLoader()
    )
    writer = (
        PipesS3MessageWriter(get_clients().s3, interval=5)
        if "bucket" in messages_params
        else PipesDefaultMessageWriter()
    )
    pipes = open_dagster_pipes(params_loader=loader, context_loader=context_loader, message_writer=writer)
    failure: PipesException | None = None
    try:
        response = run(pipes)
        if response.get("statusCode") == 200 and "result" in response:
            result = response["result"]
            key = _pipes_asset_key(pipes)
            if key is None:
                log.warning("Pipes: no asset in scope to report the materialization for")
            else:
                pipes.report_asset_materialization(
                    metadata=pipes_metadata(result), data_version=str(result["etag"]), asset_key=key
                )
        else:
            failure = _pipes_exception(str(response.get("body", "Error")), "LoadError")
        return response
    except BaseException as exc:
        if not isinstance(exc, LoadFailedError):  # logged before the flush, so the tail keeps the messages
            log.exception("unexpected failure in a Pipes invocation (re-raised)")
        failure = _pipes_exception(f"{type(exc).__name__}: {exc}", type(exc).__name__)
        raise
    finally:
        # The buffered messages are flushed here, as the invocation's last output.
        pipes.close(failure)
        PipesContext._instance = None
