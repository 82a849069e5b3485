"""AWS Lambda entry point: ``s3_parquet_assets.lambda_handler.handler``.

A thin entry point; the adapter lives in :mod:`s3_parquet_assets.lambda_` (one job per module) and
the load itself is the core's. The function serves every table of a tables file (or the single
table of its environment) and accepts four kinds of event:

``direct``
    The core's event contract, used as is; or, with a tables file, ``{"table": "<name>", ...}``
    naming a declared table (any other field overrides the file's), see :mod:`.lambda_.events`.
``scheduled``
    An EventBridge ``"Scheduled Event"`` with a top-level ``"table"``: catches up that table's last
    ``catchup_days`` days ending with the day before the event's ``time``.
``s3``
    An S3 ``ObjectCreated:*`` notification: each created key loads the day of every table whose
    source it matches (:mod:`.lambda_.routing`); a key matching none is ignored.
``pipes``
    Any of the above carrying Dagster Pipes bootstrap parameters: run inside a Pipes session
    (:mod:`.lambda_.pipes`).

Settings (:mod:`.lambda_.settings`, :mod:`.lambda_.tables`): ``S3PA_TABLES`` (tables file, an
``s3://`` URI or a path; wins over the ``s3pa_tables.yaml`` bundled in the zip), the contract's
``S3PA_EVENT_DEFAULTS`` / ``S3PA_<FIELD>`` (the single table without a tables file),
``S3PA_DATA_REF_PATTERN``, ``S3PA_RAISE_ON_ERROR``, ``S3PA_LOG_LEVEL``; read at every call, never at
import.

Runtime (:mod:`.lambda_.runtime`): the first invocation of a container logs the versions it runs on
(python, boto3, botocore, pyarrow, pandas, numpy, awswrangler); on a runtime whose botocore is older
than ``MIN_BOTOCORE`` every invocation fails (``validate``, naming the found and the minimum botocore)
before any AWS call of its own.

Failures: a failed load yields ``{"statusCode": 500, "body": "Error: <stage>: <message>"}``. Direct and
Pipes invocations are synchronous, so it is returned; scheduled and S3 invocations are asynchronous,
so (``S3PA_RAISE_ON_ERROR=auto``) it is logged and raised as :class:`LoadFailedError`: Lambda counts
an error, retries, then sends the event to the dead-letter queue. Any other exception (a bug) is
logged with its traceback and re-raised.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .lambda_.clients import get_clients, reset_clients
from .lambda_.context import invocation_deadline
from .lambda_.dispatch import invoke
from .lambda_.events import EventKind, classify
from .lambda_.failures import LoadFailedError
from .lambda_.pipes import PIPES_TAIL_BUDGET, pipes_metadata, run_with_pipes, split_pipes_params
from .lambda_.runtime import MIN_BOTOCORE, cold_start, reset_runtime
from .lambda_.settings import (
    ENV_DATA_REF_PATTERN,
    ENV_RAISE_ON_ERROR,
    ENV_TABLES,
    configure_logging,
    settings_from_env,
)
from .lambda_.tables import reset_tables

__all__ = [
    "ENV_DATA_REF_PATTERN",
    "ENV_RAISE_ON_ERROR",
    "ENV_TABLES",
    "MIN_BOTOCORE",
    "PIPES_TAIL_BUDGET",
    "EventKind",
    "LoadFailedError",
    "classify",
    "get_clients",
    "handler",
    "pipes_metadata",
    "reset_clients",
    "reset_runtime",
    "reset_tables",
    "settings_from_env",
]

log = logging.getLogger(__name__)


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda handler. Returns the response dict (see the module docstring for the event kinds
    and for when a failure is raised instead of returned)."""
    environ = dict(os.environ)
    configure_logging(environ)
    cold_start()  # the first invocation of a container logs the versions it runs on
    request_id: str | None = getattr(context, "aws_request_id", None)
    deadline = invocation_deadline(context)
    pipes = split_pipes_params(event)
    if pipes is not None:
        params, payload = pipes
        return run_with_pipes(params, lambda session: invoke(payload, environ, session, request_id, deadline))
    try:
        return invoke(event, environ, None, request_id, deadline)
    except LoadFailedError:
        raise
    except Exception:
        log.exception("invocation %s: unexpected failure (re-raised)", request_id)
        raise
