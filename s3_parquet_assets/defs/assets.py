"""The two daily-partitioned assets, ``latest_source_object`` and ``parquet_table``.

Both are computed by one op (a ``multi_asset`` that can be subset), because a multi-day run must
isolate days: the op walks ``context.partition_keys`` (one day, or the range of a backfill run) and
for each day

1. picks the day's newest matching source object -> a ``latest_source_object`` materialization of
   that day, data version = the object's ETag;
2. loads it with the core unless that ETag is already the one the day's Glue partition was loaded
   from (then it skips, saying so, unless ``force``) -> a ``parquet_table`` materialization of that
   day with the load's metadata, data version = the source ETag;
3. evaluates the checks of :mod:`.checks` for the day.

Materializations are reported per day as they happen, so a bad day (its own error, logged) does not
take the good days of the range with it; the run fails at the end naming the bad days, and a backfill
retries only those. Dagster's single ``Output`` per range could not express either per-day data
versions or partial success, hence explicit per-day events.
"""

import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    MetadataValue,
    PartitionsDefinition,
    multi_asset,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.data_version import (
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    get_input_data_version_tag,
)
from pydantic import Field

from s3_parquet_assets.core import (
    AwsClients,
    LoadError,
    LoadEvent,
    LoadResult,
    SourceObject,
    find_latest,
    loaded_etag,
    new_load_id,
    run_load,
)
from s3_parquet_assets.core.pipeline import PARAM_LOAD_ID, PARAM_ROWS

from . import lambda_run
from .checks import CHECK_NAMES, DayState, check_specs, evaluate_checks, inspect_day
from .resources import LoadSettings, S3Resource, aws_clients

__all__ = [
    "DEFAULT_DAYS_PER_RUN",
    "GROUP",
    "SOURCE",
    "TABLE",
    "LoadConfig",
    "build_load_assets",
]

SOURCE = AssetKey("latest_source_object")
TABLE = AssetKey("parquet_table")
GROUP = "s3_parquet"
DEFAULT_DAYS_PER_RUN = 10


class LoadConfig(Config):  # type: ignore[misc]
    """Run config of the load op."""

    force: bool = Field(
        default=False, description="Reload a day even if its source ETag is the one already loaded."
    )


@dataclass
class _DayOutcome:
    day: str
    events: list[AssetMaterialization] = field(default_factory=list)
    error: str | None = None
    ev: LoadEvent | None = None
    result: LoadResult | None = None
    state: DayState | None = None  # the day as inspected for a skip (reused by the checks)


def _version_tags(etag: str, *, upstream: AssetKey | None = None) -> dict[str, str]:
    tags = {DATA_VERSION_TAG: etag, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}
    if upstream is not None:
        tags[get_input_data_version_tag(upstream)] = etag
    return tags


def source_metadata(src: SourceObject, ev: LoadEvent) -> dict[str, Any]:
    return {
        "key": src.key,
        "uri": MetadataValue.path(src.uri),
        "etag": src.etag,
        "size": MetadataValue.int(src.size),
        "last_modified": MetadataValue.timestamp(src.last_modified),
        "listed_prefix": f"s3://{ev.bucket_src}/{ev.source_prefix}",
        "substr": ev.substr,
        "dagster/uri": src.uri,
    }


def table_metadata(result: LoadResult) -> dict[str, Any]:
    return {
        "dagster/row_count": MetadataValue.int(result.rows),
        "dagster/uri": result.partition_location,
        "rows": MetadataValue.int(result.rows),
        "bytes": MetadataValue.int(result.bytes),
        "files": MetadataValue.int(result.files),
        "output_location": MetadataValue.path(result.output_location),
        "partition_location": MetadataValue.path(result.partition_location),
        "glue_table": result.table,
        "source_key": result.source_key,
        "source_etag": result.etag,
        "seconds": MetadataValue.float(float(result.seconds)),
        "load_id": result.load_id,
        "previous_location": result.previous_location or "-",
        "removed_objects": MetadataValue.int(result.removed_objects),
        "skipped": False,
    }


def skipped_metadata(ev: LoadEvent, src: SourceObject, state: DayState, reason: str) -> dict[str, Any]:
    rows = sum(int(p.parameters.get(PARAM_ROWS, "0")) for p in state.partitions)
    locations = sorted({p.location for p in state.partitions})
    load_ids = sorted({p.parameters.get(PARAM_LOAD_ID, "") for p in state.partitions})
    return {
        "dagster/row_count": MetadataValue.int(rows),
        "dagster/uri": locations[0] if len(locations) == 1 else f"s3://{ev.bucket_dstn}/{ev.day_prefix}",
        "rows": MetadataValue.int(rows),
        "files": MetadataValue.int(len(state.files)),
        "output_location": MetadataValue.path(f"s3://{ev.bucket_dstn}/{ev.day_prefix}"),
        "partition_location": MetadataValue.path(", ".join(locations)),
        "glue_table": f"{ev.database}.{ev.table}",
        "source_key": src.key,
        "source_etag": src.etag,
        "load_id": ", ".join(load_ids),
        "skipped": True,
        "skip_reason": reason,
    }


class _DayRunner:
    """Processes one day; never raises (a day's failure is its outcome's ``error``)."""

    def __init__(
        self,
        context: AssetExecutionContext,
        settings: LoadSettings,
        clients: AwsClients,
        *,
        want_source: bool,
        want_table: bool,
        force: bool,
    ) -> None:
        self.context = context
        self.settings = settings
        self.clients = clients
        self.want_source = want_source
        self.want_table = want_table
        self.force = force

    def __call__(self, day: str) -> _DayOutcome:
        out = _DayOutcome(day)
        try:
            self._run(out)
        except LoadError as exc:
            out.error = str(exc)
        except Exception as exc:
            self.context.log.error(f"{day}: unexpected failure\n{traceback.format_exc()}")
            out.error = f"{type(exc).__name__}: {exc}"
        return out

    def _run(self, out: _DayOutcome) -> None:
        log = self.context.log
        ev = out.ev = self.settings.load_event(out.day)
        if not (self.want_source or self.want_table):
            return
        src = find_latest(
            self.clients.s3,
            ev.bucket_src,
            ev.source_prefix,
            ev.substr,
            expected_bucket_owner=ev.expected_bucket_owner,
        )
        log.info(f"{out.day}: source {src.uri} (ETag {src.etag}, {src.size} bytes)")
        if self.want_source:
            out.events.append(
                AssetMaterialization(
                    SOURCE, partition=out.day, metadata=source_metadata(src, ev), tags=_version_tags(src.etag)
                )
            )
        if not self.want_table:
            return
        previous = loaded_etag(self.clients, ev)
        if previous == src.etag and not self.force:
            reason = (
                f"source ETag {src.etag} of {src.uri} is already loaded into {ev.database}.{ev.table} "
                f"for {out.day}; nothing to do (set force: true to reload)"
            )
            log.info(f"{out.day}: skip: {reason}")
            state = out.state = inspect_day(self.clients, ev)
            out.events.append(
                AssetMaterialization(
                    TABLE,
                    partition=out.day,
                    metadata=skipped_metadata(ev, src, state, reason),
                    tags=_version_tags(src.etag, upstream=SOURCE),
                )
            )
            return
        if previous == src.etag:
            log.info(f"{out.day}: force: reloading ETag {src.etag} although it is already loaded")
        load_id = new_load_id()
        if self.settings.run_on == "lambda":
            if not self.settings.lambda_function:
                raise LoadError("validate", "run_on 'lambda' needs lambda_function (the function name)")
            result = lambda_run.run_day_on_lambda(
                self.context,
                self.settings.event(out.day),
                function_name=self.settings.lambda_function,
                clients=self.clients,
                source=src,
                load_id=load_id,
            )
        else:
            result = run_load(ev, self.clients, load_id=load_id, source=src)
        out.result = result
        log.info(
            f"{out.day}: loaded {result.rows} rows from {result.source_uri} into {result.table} "
            f"at {result.partition_location} in {result.seconds:.2f}s"
        )
        out.events.append(
            AssetMaterialization(
                TABLE,
                partition=out.day,
                metadata=table_metadata(result),
                tags=_version_tags(result.etag, upstream=SOURCE),
            )
        )


def _latest_table_materialization(context: AssetExecutionContext, day: str) -> Any | None:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=TABLE, asset_partitions=[day]), limit=1
    ).records
    return records[0] if records else None


def _meta_text(record: Any, name: str) -> str | None:
    mat = record.asset_materialization if record is not None else None
    if mat is None or name not in mat.metadata:
        return None
    value = mat.metadata[name].value
    return str(value) if value is not None else None


def _check_events(
    context: AssetExecutionContext, clients: AwsClients, outcome: _DayOutcome, names: list[str]
) -> Iterator[AssetCheckEvaluation]:
    ev = outcome.ev
    if ev is None or not names:
        return
    record = _latest_table_materialization(context, outcome.day)
    expected_location = expected_rows = expected_load_id = None
    if outcome.result is not None:
        expected_location = outcome.result.partition_location
        expected_rows = outcome.result.rows
        expected_load_id = outcome.result.load_id
    elif record is not None and _meta_text(record, "skipped") != "True":
        expected_location = _meta_text(record, "partition_location")
        rows = _meta_text(record, "rows")
        expected_rows = int(rows) if rows is not None else None
        expected_load_id = _meta_text(record, "load_id")
    state = outcome.state or inspect_day(clients, ev)
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        if record is not None
        else None
    )
    for result in evaluate_checks(
        ev,
        state,
        names=names,
        expected_location=expected_location,
        expected_rows=expected_rows,
        expected_load_id=expected_load_id,
    ):
        (context.log.info if result.passed else context.log.warning)(
            f"{outcome.day}: check {result.name}: {'passed' if result.passed else 'FAILED'}: "
            f"{result.description}"
        )
        yield AssetCheckEvaluation(
            asset_key=TABLE,
            check_name=result.name,
            passed=result.passed,
            metadata=result.metadata,
            description=result.description,
            severity=AssetCheckSeverity.ERROR,
            partition=outcome.day,
            target_materialization_data=target,
            blocking=False,
        )


def _outcomes(runner: Callable[[str], _DayOutcome], days: list[str], workers: int) -> Iterator[_DayOutcome]:
    """The days' outcomes in day order; with ``workers`` > 1 the days run concurrently (Lambda)."""
    if workers <= 1 or len(days) <= 1:
        for day in days:
            yield runner(day)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3pa-day") as pool:
        futures: list[Future[_DayOutcome]] = [pool.submit(runner, day) for day in days]
        for fut in futures:
            yield fut.result()


def load_days(
    context: AssetExecutionContext, config: LoadConfig, s3: S3Resource, load_settings: LoadSettings
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """The op body: every day of ``context.partition_keys``, isolated (see the module docstring)."""
    days = list(context.partition_keys)
    selected = context.selected_asset_keys
    want_source, want_table = SOURCE in selected, TABLE in selected
    check_names = [
        name for name in CHECK_NAMES if any(k.name == name for k in context.selected_asset_check_keys)
    ]
    clients = aws_clients(s3)
    runner = _DayRunner(
        context, load_settings, clients, want_source=want_source, want_table=want_table, force=config.force
    )
    workers = load_settings.lambda_concurrency if load_settings.run_on == "lambda" and want_table else 1
    context.log.info(
        f"{len(days)} day(s) {days[0]}..{days[-1]}: "
        f"{', '.join(k.to_user_string() for k in sorted(selected)) or 'checks only'}"
        f"{' (force)' if config.force else ''}, run on {load_settings.run_on}"
    )
    started = time.monotonic()
    failures: dict[str, str] = {}
    for outcome in _outcomes(runner, days, workers):
        yield from outcome.events
        if outcome.error is not None:
            failures[outcome.day] = outcome.error
            context.log.error(f"{outcome.day}: FAILED: {outcome.error}")
            continue
        try:
            yield from _check_events(context, clients, outcome, check_names)
        except Exception as exc:  # checks of one day must not stop the others
            failures[outcome.day] = f"checks: {type(exc).__name__}: {exc}"
            context.log.error(f"{outcome.day}: checks could not run\n{traceback.format_exc()}")
    seconds = time.monotonic() - started
    if failures:
        good = [d for d in days if d not in failures]
        raise Failure(
            description=(
                f"{len(failures)} of {len(days)} day(s) failed: "
                + "; ".join(f"{day}: {msg}" for day, msg in sorted(failures.items()))
            ),
            metadata={
                "failed_days": ", ".join(sorted(failures)),
                "succeeded_days": ", ".join(good) or "-",
                "seconds": round(seconds, 3),
            },
        )
    context.log.info(f"{len(days)} day(s) done in {seconds:.2f}s")


def build_load_assets(
    partitions_def: PartitionsDefinition[str], *, days_per_run: int = DEFAULT_DAYS_PER_RUN
) -> AssetsDefinition:
    """The ``latest_source_object`` + ``parquet_table`` assets (and their checks) for ``partitions_def``;
    a backfill runs up to ``days_per_run`` days per run."""

    @multi_asset(
        name="load_days",
        specs=[
            AssetSpec(
                SOURCE,
                description="The day's export: newest object under the day's prefix whose key holds "
                "the substring. Data version = its ETag.",
                skippable=True,
                group_name=GROUP,
                kinds={"s3", "csv"},
            ),
            AssetSpec(
                TABLE,
                deps=[SOURCE],
                description="The day's partition of the Parquet table registered in Glue, loaded from "
                "latest_source_object by the core loader. Data version = the source ETag.",
                skippable=True,
                group_name=GROUP,
                kinds={"parquet", "glue"},
            ),
        ],
        check_specs=check_specs(TABLE, partitions_def),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=days_per_run),
        can_subset=True,
    )
    def _load_days(
        context: AssetExecutionContext, config: LoadConfig, s3: S3Resource, load_settings: LoadSettings
    ) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
        yield from load_days(context, config, s3, load_settings)

    return _load_days
