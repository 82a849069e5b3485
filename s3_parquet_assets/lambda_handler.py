"""AWS Lambda entry point: ``s3_parquet_assets.lambda_handler.handler``.

A thin adapter around :func:`s3_parquet_assets.core.handle_event`; the load itself is the core's.
It accepts four kinds of event:

``direct``
    The core's event contract (``bucket_src``, ``bucket_dstn``, ``schema``, ...), used as is.
``scheduled``
    An EventBridge ``"Scheduled Event"``: the load settings come from environment variables and
    ``data_ref`` is the day before the event's ``time`` (UTC).
``s3``
    An S3 ``ObjectCreated:*`` notification (the classic ``Records`` shape, or the EventBridge
    ``"Object Created"`` shape): settings from the environment, ``data_ref`` taken from the object
    key with ``S3PA_DATA_REF_PATTERN``. A key outside the day's source prefix, or without ``substr``,
    is ignored (200, ``"Ignored: ..."``); a key the pattern does not match is an error.
``pipes``
    Any of the above carrying Dagster Pipes bootstrap parameters (``DAGSTER_PIPES_CONTEXT`` /
    ``DAGSTER_PIPES_MESSAGES`` keys, as ``dagster_aws.pipes.PipesLambdaClient`` sends them): the load
    runs inside a Pipes session (package ``dagster-pipes`` only) and reports the materialization with
    the same metadata and data version (the source ETag) as the ``parquet_table`` asset.

Settings (environment variables, read at every call, never at import)
---------------------------------------------------------------------
``S3PA_EVENT_DEFAULTS``
    A JSON object of event fields (the core contract), the base for scheduled and S3 events.
``S3PA_<FIELD>``
    One event field each, overriding ``S3PA_EVENT_DEFAULTS``: ``S3PA_BUCKET_SRC``,
    ``S3PA_BUCKET_DSTN``, ``S3PA_PREFIX``, ``S3PA_SUBSTR``, ``S3PA_SCHEMA``, ``S3PA_PATHOUTPUT``,
    ``S3PA_TABLE``, ``S3PA_DATABASE``, ``S3PA_PARTITIONS_COLS``, ``S3PA_DELIMITER``,
    ``S3PA_QUOTECHAR``, ``S3PA_ENCODING``, ``S3PA_HEADER``, ``S3PA_ZIP_MEMBER``, ``S3PA_TRANSFORM``,
    ``S3PA_ALLOW_EMPTY``, ``S3PA_SSE``, ``S3PA_KMS_KEY_ID``, ``S3PA_EXPECTED_BUCKET_OWNER``.
    ``S3PA_SCHEMA`` / ``S3PA_PARTITIONS_COLS`` take a JSON list or comma-separated names;
    ``S3PA_HEADER`` / ``S3PA_ALLOW_EMPTY`` take true/false. Empty values count as unset.
    ``data_ref`` is never a setting (it comes from the event). An unknown ``S3PA_*`` variable is an
    error, so a typo cannot be silently ignored.
``S3PA_DATA_REF_PATTERN``
    Regular expression searched in S3 object keys, with a named group ``data_ref`` (``YYYYMMDD``) or
    the three groups ``year``, ``month``, ``day``. Default: ``(?<!\\d)(?P<data_ref>\\d{8})(?!\\d)``.
``S3PA_RAISE_ON_ERROR``
    ``auto`` (default), ``always`` or ``never``; see *Failures* below.
``S3PA_LOG_LEVEL``
    Level of the ``s3_parquet_assets`` loggers (default ``INFO``).

Failures
--------
A failed load (a :class:`~s3_parquet_assets.core.LoadError`: bad event, missing source, ...) yields
``{"statusCode": 500, "body": "Error: <stage>: <message>", "stage": ...}``. Direct and Pipes
invocations are synchronous (a person, a script or Dagster reads that response), so it is returned.
Scheduled and S3 invocations are asynchronous: nobody reads the response, so with ``auto`` the
handler logs it and raises :class:`LoadFailedError` instead; Lambda then counts an error (the
CloudWatch alarm), retries (``MaximumRetryAttempts``) and finally sends the event to the dead-letter
queue. A load replaces its day atomically, so a retry is safe. Any other exception (a bug) is logged
with its traceback and re-raised, for every kind of event.

Pipes messages
--------------
By default (``PipesLambdaLogsMessageReader`` on the Dagster side) messages are buffered and written to
stderr as the very last output of the invocation, and the Dagster side reads them from the 4 KB log
tail that a synchronous invoke returns. The handler keeps them small (three messages, long strings
shortened so the whole batch stays under :data:`PIPES_TAIL_BUDGET` bytes) and logs nothing after the
flush. If the Dagster side uses ``PipesS3MessageReader`` instead, the messages parameters name a
bucket and the handler writes them there (``PipesS3MessageWriter``) with the same S3 client.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

from .core import AwsClients, LoadError, contract, error_response, handle_event, make_clients, yesterday

if TYPE_CHECKING:
    from dagster_pipes import PipesContext, PipesException

__all__ = [
    "DEFAULT_DATA_REF_PATTERN",
    "ENV_DATA_REF_PATTERN",
    "ENV_EVENT_DEFAULTS",
    "ENV_LOG_LEVEL",
    "ENV_RAISE_ON_ERROR",
    "PIPES_TAIL_BUDGET",
    "EventKind",
    "LoadFailedError",
    "classify",
    "get_clients",
    "handler",
    "pipes_metadata",
    "reset_clients",
    "settings_from_env",
]

log = logging.getLogger(__name__)

ENV_EVENT_DEFAULTS = contract.ENV_EVENT_DEFAULTS
ENV_DATA_REF_PATTERN = "S3PA_DATA_REF_PATTERN"
ENV_RAISE_ON_ERROR = "S3PA_RAISE_ON_ERROR"
ENV_LOG_LEVEL = "S3PA_LOG_LEVEL"
_HANDLER_SETTINGS = frozenset({ENV_DATA_REF_PATTERN, ENV_RAISE_ON_ERROR, ENV_LOG_LEVEL})

DEFAULT_DATA_REF_PATTERN = r"(?<!\d)(?P<data_ref>\d{8})(?!\d)"

# Dagster Pipes bootstrap keys (dagster_pipes.DAGSTER_PIPES_CONTEXT_ENV_VAR / ..._MESSAGES_ENV_VAR),
# spelled out so that importing this module does not import dagster_pipes.
PIPES_CONTEXT_KEY = "DAGSTER_PIPES_CONTEXT"
PIPES_MESSAGES_KEY = "DAGSTER_PIPES_MESSAGES"

# Bytes the buffered Pipes messages may take in the log tail. PipesLambdaLogsMessageReader parses the
# last 4096 bytes of the log; after the flush Lambda still appends its END and REPORT lines (~350
# bytes, more with an init duration), so this leaves a margin.
PIPES_TAIL_BUDGET = 3000

EventKind = Literal["direct", "scheduled", "s3"]
RaisePolicy = Literal["auto", "always", "never"]


class LoadFailedError(RuntimeError):
    """Raised for an asynchronous invocation whose load failed, so Lambda sees a function error
    (alarm, retries, dead-letter queue). The message is the response body."""

    def __init__(self, response: Mapping[str, Any]) -> None:
        super().__init__(str(response.get("body", "Error")))
        self.response = dict(response)


# --------------------------------------------------------------------------------------------------
# Clients: made once per container, on first use (never at import, never before validation).

_CLIENTS: AwsClients | None = None


def get_clients() -> AwsClients:
    """The container's AWS clients, made on first use and then reused by every invocation."""
    global _CLIENTS  # noqa: PLW0603 - the per-container cache is the point
    if _CLIENTS is None:
        _CLIENTS = make_clients()
    return _CLIENTS


def reset_clients() -> None:
    """Forget the cached clients (tests; a changed environment)."""
    global _CLIENTS  # noqa: PLW0603
    _CLIENTS = None


# --------------------------------------------------------------------------------------------------
# Settings from the environment.


def _setting_error(name: str, rule: str) -> LoadError:
    return LoadError("validate", f"setting {name}: {rule}")


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The event fields configured for scheduled and S3 events: the contract's environment scheme
    (``S3PA_EVENT_DEFAULTS`` overridden by ``S3PA_<FIELD>``), event fields only."""
    env = os.environ if environ is None else environ
    values = contract.settings_from_env(env, reserved=_HANDLER_SETTINGS)
    return {k: v for k, v in values.items() if contract.field(k).event}


def _data_ref_pattern(environ: Mapping[str, str]) -> re.Pattern[str]:
    text = environ.get(ENV_DATA_REF_PATTERN, "").strip() or DEFAULT_DATA_REF_PATTERN
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise _setting_error(
            ENV_DATA_REF_PATTERN, f"{text!r} is not a valid regular expression: {exc}"
        ) from None
    groups = set(pattern.groupindex)
    if "data_ref" not in groups and not {"year", "month", "day"} <= groups:
        raise _setting_error(
            ENV_DATA_REF_PATTERN,
            f"{text!r} needs a named group (?P<data_ref>...) or the groups year, month and day",
        )
    return pattern


def _raise_policy(environ: Mapping[str, str]) -> RaisePolicy:
    value = environ.get(ENV_RAISE_ON_ERROR, "").strip().lower() or "auto"
    if value == "auto":
        return "auto"
    if value == "always":
        return "always"
    if value == "never":
        return "never"
    raise _setting_error(ENV_RAISE_ON_ERROR, f"{value!r} must be auto, always or never")


# --------------------------------------------------------------------------------------------------
# Event kinds.


def _is_s3_records(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records)
    )


def classify(event: Any) -> EventKind:
    """Which kind of event this is (see the module docstring). Raises ``LoadError("validate")`` for
    AWS event shapes the handler does not serve."""
    if not isinstance(event, Mapping):
        return "direct"  # the core names the problem
    if event.get("detail-type") == "Scheduled Event" and event.get("source") == "aws.events":
        return "scheduled"
    if event.get("detail-type") == "Object Created" and event.get("source") == "aws.s3":
        return "s3"
    if _is_s3_records(event) or event.get("Event") == "s3:TestEvent":
        return "s3"
    if "Records" in event:
        sources = sorted({str(r.get("eventSource")) for r in event["Records"] if isinstance(r, dict)})
        raise LoadError(
            "validate",
            f"unsupported notification (Records from {sources or 'nothing'}); this function serves "
            "direct load events, EventBridge scheduled events and S3 ObjectCreated notifications",
        )
    if "detail-type" in event and "source" in event:
        raise LoadError(
            "validate",
            f"unsupported EventBridge event {event.get('source')!r} / {event.get('detail-type')!r}; "
            "expected a 'Scheduled Event' from aws.events or an 'Object Created' from aws.s3",
        )
    return "direct"


def _scheduled_event(event: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    stamp = event.get("time")
    if not isinstance(stamp, str):
        raise LoadError("validate", "scheduled event without a 'time' (ISO 8601) to count yesterday from")
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise LoadError(
            "validate", f"scheduled event 'time' {stamp!r} is not an ISO 8601 timestamp"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return {**settings_from_env(environ), "data_ref": yesterday(moment)}


def _s3_objects(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every ObjectCreated record, keys URL-decoded."""
    if event.get("source") == "aws.s3":
        detail = event.get("detail") or {}
        try:
            return [(str(detail["bucket"]["name"]), str(detail["object"]["key"]))]
        except (KeyError, TypeError):
            raise LoadError(
                "validate", "S3 'Object Created' event without detail.bucket.name/object.key"
            ) from None
    out: list[tuple[str, str]] = []
    for i, record in enumerate(event.get("Records", [])):
        name = str(record.get("eventName", ""))
        if not name.startswith("ObjectCreated:"):
            log.info("ignoring S3 record %d: event %s", i, name or "?")
            continue
        try:
            bucket = str(record["s3"]["bucket"]["name"])
            key = unquote_plus(str(record["s3"]["object"]["key"]))
        except (KeyError, TypeError):
            raise LoadError("validate", f"S3 record {i} without s3.bucket.name/s3.object.key") from None
        out.append((bucket, key))
    return out


def _day_from_key(key: str, pattern: re.Pattern[str]) -> str:
    match = pattern.search(key)
    if match is None:
        raise LoadError(
            "validate",
            f"S3 key {key!r} does not match {ENV_DATA_REF_PATTERN} {pattern.pattern!r}; cannot tell its day",
        )
    groups = match.groupdict()
    if groups.get("data_ref"):
        return re.sub(r"\D", "", groups["data_ref"])
    return f"{groups['year']}{int(groups['month']):02d}{int(groups['day']):02d}"


def _s3_events(
    event: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """One load event per distinct day among the created objects, plus why other objects were
    ignored."""
    if event.get("Event") == "s3:TestEvent":
        return [], ["s3:TestEvent (sent when the notification is configured)"]
    settings = settings_from_env(environ)
    pattern = _data_ref_pattern(environ)
    loads: dict[str, dict[str, Any]] = {}
    ignored: list[str] = []
    for bucket, key in _s3_objects(event):
        configured = settings.get("bucket_src")
        if configured and configured != bucket:
            raise LoadError(
                "validate",
                f"notification for bucket {bucket!r}, but the function loads from {configured!r} "
                "(S3PA_BUCKET_SRC)",
            )
        if key.endswith("/"):
            ignored.append(f"s3://{bucket}/{key}: a folder marker")
            continue
        day = _day_from_key(key, pattern)
        ev = {**settings, "bucket_src": bucket, "data_ref": day}
        prefix = str(ev.get("prefix") or "").replace("{data_ref}", day)
        substr = ev.get("substr")
        if not key.startswith(prefix):
            ignored.append(f"s3://{bucket}/{key}: outside the day's source prefix {prefix!r}")
            continue
        if isinstance(substr, str) and substr and substr not in key:
            ignored.append(f"s3://{bucket}/{key}: key does not contain {substr!r}")
            continue
        loads.setdefault(day, ev)
    return [loads[d] for d in sorted(loads)], ignored


# --------------------------------------------------------------------------------------------------
# Dagster Pipes.

# The Dagster asset the function materializes, and its metadata as s3_parquet_assets.defs.assets
# .table_metadata builds it for a local load: key -> (LoadResult field, Pipes metadata type).
PIPES_ASSET_KEY = "parquet_table"
_PIPES_METADATA: tuple[tuple[str, str, str], ...] = (
    ("dagster/row_count", "rows", "int"),
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


def _pipes_data_ref(pipes: PipesContext) -> str | None:
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


def _run_with_pipes(
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


# --------------------------------------------------------------------------------------------------
# The handler.


def _configure_logging(environ: Mapping[str, str]) -> None:
    level = environ.get(ENV_LOG_LEVEL, "").strip().upper() or "INFO"
    logging.getLogger("s3_parquet_assets").setLevel(
        level if level in logging.getLevelNamesMapping() else "INFO"
    )


def _combine(responses: list[dict[str, Any]], ignored: list[str]) -> dict[str, Any]:
    if not responses:
        body = "Ignored: " + ("; ".join(ignored) if ignored else "no ObjectCreated record")
        return {"statusCode": 200, "body": body, "ignored": ignored}
    if len(responses) == 1:
        return {**responses[0], "ignored": ignored} if ignored else responses[0]
    failed = [r for r in responses if r.get("statusCode") != 200]
    return {
        "statusCode": 500 if failed else 200,
        "body": "; ".join(str(r["body"]) for r in failed) if failed else "Success",
        "results": [r.get("result") for r in responses if "result" in r],
        "ignored": ignored,
    }


def _dispatch(
    event: Any, environ: Mapping[str, str], pipes: PipesContext | None
) -> tuple[EventKind, dict[str, Any]]:
    kind = classify(event)
    if kind == "direct":
        ev = event
        if pipes is not None and isinstance(event, Mapping) and not event.get("data_ref"):
            day = _pipes_data_ref(pipes)
            if day:
                ev = {**event, "data_ref": day}
        return kind, handle_event(ev, make=get_clients)
    if kind == "scheduled":
        return kind, handle_event(_scheduled_event(event, environ), make=get_clients)
    loads, ignored = _s3_events(event, environ)
    for reason in ignored:
        log.info("ignored %s", reason)
    return kind, _combine([handle_event(ev, make=get_clients) for ev in loads], ignored)


def _safe_kind(event: Any) -> EventKind:
    try:
        return classify(event)
    except LoadError:
        return "direct"


def _invoke(
    event: Any, environ: Mapping[str, str], pipes: PipesContext | None, request_id: str | None
) -> dict[str, Any]:
    """Run the event; return the response, or raise LoadFailedError when the policy says so."""
    policy: RaisePolicy = "auto"
    try:
        policy = _raise_policy(environ)
        kind, response = _dispatch(event, environ, pipes)
    except LoadError as exc:  # a bad setting or event shape (the core turns its own into responses)
        log.error("invocation %s failed: %s", request_id, exc)
        kind, response = _safe_kind(event), error_response(exc)
    if response.get("statusCode") != 200 and (
        policy == "always" or (policy == "auto" and kind in ("scheduled", "s3"))
    ):
        log.error("invocation %s (%s event) failed, raising for Lambda's retries and DLQ", request_id, kind)
        raise LoadFailedError(response)
    return response


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda handler. Returns the core's response dict (see the module docstring for the event
    kinds and for when a failure is raised instead of returned)."""
    environ = dict(os.environ)
    _configure_logging(environ)
    request_id: str | None = getattr(context, "aws_request_id", None)
    if isinstance(event, Mapping) and PIPES_CONTEXT_KEY in event:
        params = {k: event[k] for k in (PIPES_CONTEXT_KEY, PIPES_MESSAGES_KEY) if k in event}
        payload = {k: v for k, v in event.items() if k not in params}
        return _run_with_pipes(params, lambda pipes: _invoke(payload, environ, pipes, request_id))
    try:
        return _invoke(event, environ, None, request_id)
    except LoadFailedError:
        raise
    except Exception:
        log.exception("invocation %s: unexpected failure (re-raised)", request_id)
        raise
