"""The ``run_on="lambda"`` path: one day's load executed by the deployed Lambda function.

The asset calls :func:`run_day_on_lambda` once per day (up to ``LoadSettings.lambda_concurrency`` days
at once, from worker threads) instead of :func:`s3_parquet_assets.core.run_load`, and treats its result
exactly like a local load's: same metadata, same data version, same checks afterwards.

The body is implemented by issue 5 (Lambda run path through dagster-aws ``PipesLambdaClient``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster import AssetExecutionContext

    from s3_parquet_assets.core import AwsClients, LoadResult, SourceObject

__all__ = ["run_day_on_lambda"]


def run_day_on_lambda(
    context: AssetExecutionContext,
    event: Mapping[str, Any],
    *,
    function_name: str,
    clients: AwsClients,
    source: SourceObject,
    load_id: str,
) -> LoadResult:
    """Load one day by invoking the Lambda ``function_name`` with ``event`` (the event contract for
    the day, as :meth:`LoadSettings.event` builds it) and return the load's result.

    Parameters
    ----------
    context
        The running asset's context (for logs and Pipes).
    event
        The event for the day; ``event["data_ref"]`` is the day.
    function_name
        Function name or ARN (``LoadSettings.lambda_function``).
    clients
        The run's AWS clients; ``clients.session`` makes the Lambda client (same credentials/endpoint).
    source
        The source object the asset picked for the day (its ETag is the data version); the function
        lists again, and a different pick must be reported in the result.
    load_id
        The load id the asset allocated for the day.

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
    raise NotImplementedError(
        f"run_on='lambda' (function {function_name!r}, day {event.get('data_ref')}) is issue 5: "
        "the Lambda run path is not implemented yet; use run_on='local'"
    )
