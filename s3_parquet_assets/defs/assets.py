"""One table's two daily-partitioned assets: its source objects and its Parquet table.

For each table of the tables file, :func:`build_load_assets` makes one op (a ``multi_asset`` that can
be subset) computing ``["s3_source", <name>]`` and ``[<database>, <table>]`` (see :mod:`.keys`),
because a multi-day run must isolate days: the op walks ``context.partition_keys`` (one day, or the
range of a backfill run) and for each day

1. picks the day's newest matching source object -> a source materialization of that day, data
   version = the object's ETag;
2. loads it with the core unless that ETag is already the one the day's Glue partition was loaded
   from (then it skips, saying so, unless ``force``) -> a table materialization of that day with the
   load's metadata, data version = the source ETag;
3. evaluates the checks of :mod:`.checks` for the day.

Materializations are reported per day as they happen, so a bad day (its own error, logged) does not
take the good days of the range with it; the run fails at the end naming the bad days, and a backfill
retries only those. Dagster's single ``Output`` per range could not express either per-day data
versions or partial success, hence explicit per-day events (the internals that needs are in
:mod:`.dagster_internals`).
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
    TableColumn,
    TableSchema,
    multi_asset,
)
from pydantic import Field

from s3_parquet_assets.core import (
    AwsClients,
    LoadError,
    LoadEvent,
    LoadResult,
    SourceObject,
    TableSpec,
    find_latest,
    loaded_etag,
    new_load_id,
    run_load,
)
from s3_parquet_assets.core.pipeline import COLUMN_REPORTS, PARAM_LOAD_ID, PARAM_ROWS

from . import lambda_run
from .checks import CHECK_NAMES, DayState, check_specs, evaluate_checks, inspect_day
from .dagster_internals import check_target, version_tags
from .keys import TableKeys
from .resources import S3Resource, aws_clients

__all__ = [
    "DEFAULT_DAYS_PER_RUN",
    "LoadConfig",
    "build_load_assets",
    "definition_metadata",
    "table_metadata",
]

DEFAULT_DAYS_PER_RUN = 10
ROW_COUNT_KEY = "dagster/partition_row_count"


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
    """A load's per-day metadata (``dagster/partition_row_count``: the day's rows, not the table's)."""
    return {
        ROW_COUNT_KEY: MetadataValue.int(result.rows),
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
        **{name: ", ".join(getattr(result, name)) or "-" for name in COLUMN_REPORTS},
        "skipped": False,
    }


def skipped_metadata(ev: LoadEvent, src: SourceObject, state: DayState, reason: str) -> dict[str, Any]:
    rows = sum(int(p.parameters.get(PARAM_ROWS, "0")) for p in state.partitions)
    locations = sorted({p.location for p in state.partitions})
    load_ids = sorted({p.parameters.get(PARAM_LOAD_ID, "") for p in state.partitions})
    return {
        ROW_COUNT_KEY: MetadataValue.int(rows),
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


def column_schema(ev: LoadEvent) -> TableSchema:
    """The table's columns as a catalog reader sees them: the declared schema (untyped columns are
    strings), then ``data_ref`` and the other partition columns."""
    columns = [
        TableColumn(
            c.name,
            c.type or "string",
            description="partition column" if c.name in ev.partitions_cols else None,
        )
        for c in ev.schema
    ]
    declared = {c.name for c in ev.schema}
    columns += [
        TableColumn(p, "string", description="partition column (the day, YYYYMMDD)")
        for p in ev.partitions_cols
        if p not in declared
    ]
    return TableSchema(columns=columns)


def definition_metadata(spec: TableSpec) -> dict[str, Any]:
    """What the UI shows on the table asset's definition."""
    ev = spec.probe
    meta: dict[str, Any] = {
        "dagster/table_name": f"{ev.database}.{ev.table}",
        "dagster/uri": f"s3://{ev.bucket_dstn}/{ev.table_root}/",
        "source": f"s3://{ev.bucket_src}/{ev.prefix} (keys containing {ev.substr!r})",
        "partitions_cols": ", ".join(ev.partitions_cols),
        "start_date": spec.start_date,
        "schedule": f"{spec.schedule} UTC, catching up {spec.catchup_days} day(s)",
        "run_on": spec.run_on if spec.run_on != "lambda" else f"lambda ({spec.lambda_function})",
    }
    if ev.transform is None:  # with a transform the declared schema is the input's, not the table's
        meta["dagster/column_schema"] = column_schema(ev)
    return meta


class _DayRunner:
    """Processes one day of one table; never raises (a day's failure is its outcome's ``error``)."""

    def __init__(
        self,
        context: AssetExecutionContext,
        spec: TableSpec,
        keys: TableKeys,
        clients: AwsClients,
        *,
        want_source: bool,
        want_table: bool,
        force: bool,
    ) -> None:
        self.context = context
        self.spec = spec
        self.keys = keys
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
        except Exception as exc:  # one day's bug fails that day (logged with its traceback), not the run
            self.context.log.error(f"{day}: unexpected failure\n{traceback.format_exc()}")
            out.error = f"{type(exc).__name__}: {exc}"
        return out

    def _run(self, out: _DayOutcome) -> None:
        ev = out.ev = self.spec.load_event(out.day)
        if not (self.want_source or self.want_table):
            return
        src = find_latest(
            self.clients.s3,
            ev.bucket_src,
            ev.source_prefix,
            ev.substr,
            expected_bucket_owner=ev.expected_bucket_owner,
        )
        self.context.log.info(f"{out.day}: source {src.uri} (ETag {src.etag}, {src.size} bytes)")
        if self.want_source:
            out.events.append(
                AssetMaterialization(
                    self.keys.source,
                    partition=out.day,
                    metadata=source_metadata(src, ev),
                    tags=version_tags(src.etag),
                )
            )
        if not self.want_table:
            return
        previous = loaded_etag(self.clients, ev)
        if previous == src.etag and not self.force:
            self._skip(out, ev, src)
            return
        if previous == src.etag:
            self.context.log.info(
                f"{out.day}: force: reloading ETag {src.etag} although it is already loaded"
            )
        result = out.result = self._load(out.day, ev, src)
        self.context.log.info(
            f"{out.day}: loaded {result.rows} rows from {result.source_uri} into {result.table} "
            f"at {result.partition_location} in {result.seconds:.2f}s"
        )
        out.events.append(
            AssetMaterialization(
                self.keys.table,
                partition=out.day,
                metadata=table_metadata(result),
                tags=version_tags(result.etag, upstream=self.keys.source),
            )
        )

    def _skip(self, out: _DayOutcome, ev: LoadEvent, src: SourceObject) -> None:
        reason = (
            f"source ETag {src.etag} of {src.uri} is already loaded into {ev.database}.{ev.table} "
            f"for {out.day}; nothing to do (set force: true to reload)"
        )
        self.context.log.info(f"{out.day}: skip: {reason}")
        state = out.state = inspect_day(self.clients, ev)
        out.events.append(
            AssetMaterialization(
                self.keys.table,
                partition=out.day,
                metadata=skipped_metadata(ev, src, state, reason),
                tags=version_tags(src.etag, upstream=self.keys.source),
            )
        )

    def _load(self, day: str, ev: LoadEvent, src: SourceObject) -> LoadResult:
        load_id = new_load_id()
        if self.spec.run_on != "lambda":
            return run_load(ev, self.clients, load_id=load_id, source=src)
        if not self.spec.lambda_function:
            raise LoadError("validate", f"table {self.spec.name}: run_on 'lambda' needs lambda_function")
        return lambda_run.run_day_on_lambda(
            self.context,
            self.spec.event(day),
            function_name=self.spec.lambda_function,
            clients=self.clients,
            source=src,
            load_id=load_id,
            table=self.keys.table,
        )


def _latest_table_materialization(context: AssetExecutionContext, table: AssetKey, day: str) -> Any | None:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=table, asset_partitions=[day]), limit=1
    ).records
    return records[0] if records else None


def _meta_text(record: Any, name: str) -> str | None:
    mat = record.asset_materialization if record is not None else None
    if mat is None or name not in mat.metadata:
        return None
    value = mat.metadata[name].value
    return str(value) if value is not None else None


def _check_events(
    context: AssetExecutionContext,
    clients: AwsClients,
    table: AssetKey,
    outcome: _DayOutcome,
    names: list[str],
) -> Iterator[AssetCheckEvaluation]:
    ev = outcome.ev
    if ev is None or not names:
        return
    record = _latest_table_materialization(context, table, outcome.day)
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
    target = check_target(record)
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
            asset_key=table,
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
    context: AssetExecutionContext, config: LoadConfig, s3: S3Resource, spec: TableSpec
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """The op body: every day of ``context.partition_keys``, isolated (see the module docstring)."""
    keys = TableKeys(spec)
    days = list(context.partition_keys)
    selected = context.selected_asset_keys
    want_source, want_table = keys.source in selected, keys.table in selected
    check_names = [
        name for name in CHECK_NAMES if any(k.name == name for k in context.selected_asset_check_keys)
    ]
    clients = aws_clients(s3)
    runner = _DayRunner(
        context, spec, keys, clients, want_source=want_source, want_table=want_table, force=config.force
    )
    workers = spec.lambda_concurrency if spec.run_on == "lambda" and want_table else 1
    context.log.info(
        f"table {spec.name}: {len(days)} day(s) {days[0]}..{days[-1]}: "
        f"{', '.join(k.to_user_string() for k in sorted(selected)) or 'checks only'}"
        f"{' (force)' if config.force else ''}, run on {spec.run_on}"
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
            yield from _check_events(context, clients, keys.table, outcome, check_names)
        except Exception as exc:  # checks of one day must not stop the others (logged, then failed)
            failures[outcome.day] = f"checks: {type(exc).__name__}: {exc}"
            context.log.error(f"{outcome.day}: checks could not run\n{traceback.format_exc()}")
    seconds = time.monotonic() - started
    if failures:
        _fail(days, failures, seconds)
    context.log.info(f"{len(days)} day(s) done in {seconds:.2f}s")


def _fail(days: list[str], failures: dict[str, str], seconds: float) -> None:
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


def _asset_specs(spec: TableSpec, keys: TableKeys) -> list[AssetSpec]:
    ev = spec.probe
    group = ev.database
    common: dict[str, Any] = {"skippable": True, "group_name": group, "owners": list(spec.owners)}
    return [
        AssetSpec(
            keys.source,
            description=(
                f"The daily export of table {spec.name}: the newest object under "
                f"s3://{ev.bucket_src}/{ev.prefix} whose key contains {ev.substr!r}. Data version = its ETag."
            ),
            kinds={"s3", "csv"},
            metadata={"dagster/uri": f"s3://{ev.bucket_src}/{ev.prefix}", "substr": ev.substr},
            tags=dict(spec.tags),
            **common,
        ),
        AssetSpec(
            keys.table,
            deps=[keys.source],
            description=(
                (spec.description.rstrip() + "\n\n" if spec.description else "")
                + f"Glue table {ev.database}.{ev.table}: one partition per day (data_ref), Parquet under "
                f"s3://{ev.bucket_dstn}/{ev.table_root}/, loaded from {keys.source.to_user_string()} "
                "by the core loader. Data version = the source ETag."
            ),
            kinds={"parquet", "glue"},
            metadata=definition_metadata(spec),
            tags=dict(spec.tags),
            **common,
        ),
    ]


def build_load_assets(
    spec: TableSpec,
    partitions_def: PartitionsDefinition[str],
    *,
    days_per_run: int = DEFAULT_DAYS_PER_RUN,
) -> AssetsDefinition:
    """The table's source and Parquet assets (and their checks) for ``partitions_def``; a backfill
    runs up to ``days_per_run`` days per run."""
    keys = TableKeys(spec)

    @multi_asset(
        name=keys.op,
        specs=_asset_specs(spec, keys),
        check_specs=check_specs(keys.table, partitions_def),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=days_per_run),
        can_subset=True,
    )
    def _load_days(
        context: AssetExecutionContext, config: LoadConfig, s3: S3Resource
    ) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
        yield from load_days(context, config, s3, spec)

    return _load_days
