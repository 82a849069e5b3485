"""The ``run_on="lambda"`` path: one day's load executed by the deployed Lambda function.

The asset calls :func:`run_day_on_lambda` once per day (up to the table's ``lambda_concurrency`` days
at once, from worker threads) instead of :func:`s3_parquet_assets.core.run_load`, and treats its result
exactly like a local load's: same metadata, same data version, same checks afterwards.

Each call is one synchronous invocation through dagster-aws ``PipesLambdaClient``: the Pipes context
(run id, asset, partition) travels in the event, and the function reports the table asset's
materialization (the metadata of ``table_metadata`` and the source ETag as data version) back through
the 4 KB log tail the invoke returns. The function's response payload carries the full
``LoadResult``; both are read, and they must agree.

Pipes results are not yielded as the op's outputs: the op reports per-day ``AssetMaterialization``
events itself (see :mod:`.assets`). So the Pipes session is opened on a view of the context that
keeps Pipes from switching the step to "typed event stream" mode, and scopes the external process to
the table asset ``[<database>, <table>]`` (the only asset the function materializes; with one asset in
scope the function reports that key).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, get_args

from botocore.config import Config

from s3_parquet_assets.core import LoadError, LoadResult, Stage

if TYPE_CHECKING:
    from dagster import AssetExecutionContext, AssetKey

    from s3_parquet_assets.core import AwsClients, SourceObject

__all__ = ["lambda_client_config", "run_day_on_lambda", "set_lambda_client_factory"]

LambdaClientFactory = Callable[["AwsClients"], Any]


def lambda_client_config(timeout_seconds: int = 900) -> Config:
    """A synchronous invoke waits for the whole load: the read timeout must outlast the function's
    (at most 15 minutes). Retries re-invoke, which is safe because a load replaces its day atomically."""
    return Config(
        read_timeout=timeout_seconds + 60,
        connect_timeout=10,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=32,
        tcp_keepalive=True,
    )


def _default_factory(clients: AwsClients) -> Any:
    return clients.session.client("lambda", config=lambda_client_config())


_factory: LambdaClientFactory = _default_factory
_factory_lock = threading.Lock()


def set_lambda_client_factory(factory: LambdaClientFactory | None) -> LambdaClientFactory:
    """Use ``factory(clients)`` to make the Lambda client (``None``: boto3's, from the run's session).
    Returns the previous factory. For tests and for special endpoints."""
    global _factory
    with _factory_lock:
        previous, _factory = _factory, factory or _default_factory
    return previous


class _RecordingClient:
    """Passes ``invoke`` through and keeps the response payload (PipesLambdaClient only reads it when
    the function raised)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.payload: bytes | None = None
        self.function_error: str | None = None

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        response = dict(self._client.invoke(**kwargs))
        stream = response.get("Payload")
        self.payload = stream.read() if stream is not None else b""
        response["Payload"] = io.BytesIO(self.payload)
        self.function_error = response.get("FunctionError")
        return response


class _PipesContextView:
    """The asset context as the Pipes session sees it: only the table asset selected, and no switch
    to typed-event-stream mode (the op yields its own per-day materializations)."""

    def __init__(self, context: AssetExecutionContext, table: AssetKey) -> None:
        self._context = context
        self._table = table

    @property
    def selected_asset_keys(self) -> set[AssetKey]:
        return {self._table}

    def set_requires_typed_event_stream(self, *, error_message: str | None = None) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _stage(value: Any) -> Stage:
    return value if value in get_args(Stage) else "write"


def _result(payload: Mapping[str, Any]) -> LoadResult:
    names = {f.name for f in fields(LoadResult)}
    data = payload.get("result")
    if not isinstance(data, Mapping) or not names.issuperset(data) or "rows" not in data:
        raise LoadError("write", f"the function returned no load result: {json.dumps(payload)[:500]}")
    return LoadResult(**{k: data[k] for k in data if k in names})


def _check_reported(
    context: AssetExecutionContext, day: str, result: LoadResult, reported: list[Any]
) -> None:
    """The Pipes materialization must say what the payload says (they come from one LoadResult)."""
    if not reported:
        context.log.warning(
            f"{day}: [pipes] the function reported no materialization (log tail lost?); "
            "using the load result of its response"
        )
        return
    mat = reported[-1]
    meta = {k: getattr(v, "value", v) for k, v in (mat.metadata or {}).items()}
    version = mat.data_version.value if mat.data_version is not None else None
    expected = {"rows": result.rows, "load_id": result.load_id, "files": result.files}
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if version != result.etag:
        wrong["data_version"] = (version, result.etag)
    if wrong:
        raise LoadError(
            "write",
            f"{day}: the Pipes materialization and the response disagree: "
            + ", ".join(f"{k}: reported {a!r}, response {b!r}" for k, (a, b) in wrong.items()),
        )


def run_day_on_lambda(
    context: AssetExecutionContext,
    event: Mapping[str, Any],
    *,
    function_name: str,
    clients: AwsClients,
    source: SourceObject,
    load_id: str,
    table: AssetKey,
) -> LoadResult:
    """Load one day by invoking the Lambda ``function_name`` with ``event`` (the event contract for
    the day, as ``TableSpec.event`` builds it) and return the load's result.

    Parameters
    ----------
    context
        The running asset's context (for logs and Pipes).
    event
        The event for the day (``TableSpec.event``); ``event["data_ref"]`` is the day.
    function_name
        Function name or ARN (the table's ``lambda_function``).
    clients
        The run's AWS clients; ``clients.session`` makes the Lambda client (same credentials/endpoint).
    source
        The source object the asset picked for the day (its ETag is the data version); the function
        lists again, and a different pick must be reported in the result.
    load_id
        The load id the asset allocated for the day. The event contract has no load id, so the
        function allocates its own; the result carries that one (the checks use the result's).
    table
        The table asset's key: the one asset in the Pipes session's scope.

    Returns
    -------
    LoadResult
        The handler's ``result`` (``LoadResult(**response["result"])``).

    Raises
    ------
    LoadError
        When the function reports ``statusCode`` 500 (keep its stage and message) or cannot be
        invoked (stage ``"write"``), so the day fails alone and the others of the range still load.
    """
    from dagster import MaterializeResult
    from dagster_aws.pipes import PipesLambdaClient

    day = str(event.get("data_ref"))
    with _factory_lock:
        factory = _factory
    recorder = _RecordingClient(factory(clients))
    pipes = PipesLambdaClient(client=recorder)
    view: Any = _PipesContextView(context, table)
    try:
        invocation = pipes.run(function_name=function_name, event=dict(event), context=view)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if recorder.function_error and recorder.payload:
            try:
                err = json.loads(recorder.payload)
                detail = f"{err.get('errorType', 'Error')}: {err.get('errorMessage', '')}"
            except (ValueError, AttributeError):
                pass
        raise LoadError("write", f"invoking Lambda {function_name!r} for {day} failed: {detail}") from exc

    try:
        payload = json.loads(recorder.payload or b"null")
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or "statusCode" not in payload:
        raise LoadError("write", f"Lambda {function_name!r} for {day}: unexpected response {payload!r:.500}")
    if payload["statusCode"] != 200:
        stage = _stage(payload.get("stage"))
        message = str(payload.get("body", "")).removeprefix("Error: ").removeprefix(f"{stage}: ")
        raise LoadError(stage, f"(Lambda {function_name}) {message}")
    result = _result(payload)
    reported = [
        r
        for r in invocation.get_results(implicit_materializations=False)
        if isinstance(r, MaterializeResult) and r.asset_key == table
    ]
    _check_reported(context, day, result, reported)
    if result.etag != source.etag or result.source_key != source.key:
        context.log.warning(
            f"{day}: the function loaded {result.source_uri} (ETag {result.etag}), not the object the "
            f"asset picked ({source.uri}, ETag {source.etag}): a newer export arrived in between"
        )
    context.log.info(
        f"{day}: Lambda {function_name} loaded {result.rows} rows (load id {result.load_id}; "
        f"the asset's {load_id} is not used by the function)"
    )
    return result
