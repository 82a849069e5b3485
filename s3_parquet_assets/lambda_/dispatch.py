"""One invocation: classify the event, run what it asks for, combine the responses, and decide
whether a failure is returned or raised (``S3PA_RAISE_ON_ERROR``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core import LoadError, TableSpec, catch_up, error_response, handle_event
from .clients import get_clients
from .events import EventKind, by_name_load, classify, is_by_name, scheduled_day, scheduled_table
from .failures import LoadFailedError, must_raise
from .pipes import pipes_data_ref
from .routing import route
from .runtime import require_supported_runtime
from .settings import RaisePolicy, data_ref_pattern, raise_policy
from .settle import already_being_loaded, load_unless_current
from .tables import Served, file_tables, served_tables

if TYPE_CHECKING:
    from dagster_pipes import PipesContext

__all__ = ["combine", "invoke"]

log = logging.getLogger(__name__)

_TEST_EVENT = "s3:TestEvent"


def combine(labelled: list[tuple[str, dict[str, Any]]], ignored: list[str]) -> dict[str, Any]:
    """The response of an S3 notification: the one load's response as is, or every load's result
    (``results``) with a 500 naming each failed ``table day`` when any failed."""
    if not labelled:
        body = "Ignored: " + ("; ".join(ignored) if ignored else "no ObjectCreated record")
        return {"statusCode": 200, "body": body, "ignored": ignored}
    if len(labelled) == 1:
        response = labelled[0][1]
        return {**response, "ignored": ignored} if ignored else response
    failed = [(label, r) for label, r in labelled if r.get("statusCode") != 200]
    return {
        "statusCode": 500 if failed else 200,
        "body": "; ".join(f"{label}: {r['body']}" for label, r in failed) if failed else "Success",
        "results": [r["result"] for _, r in labelled if "result" in r],
        "ignored": ignored,
    }


def _direct(
    event: Any, environ: Mapping[str, str], pipes: PipesContext | None, deadline: float | None
) -> dict[str, Any]:
    ev = event
    if is_by_name(event):
        tables = file_tables(environ, get_clients)
        if tables is not None:
            ev = by_name_load(event, tables)
    if pipes is not None and isinstance(ev, Mapping) and not ev.get("data_ref"):
        day = pipes_data_ref(pipes)
        if day:
            ev = {**ev, "data_ref": day}
    return handle_event(ev, make=get_clients, deadline=deadline)


def _pick(served: Served, name: str | None) -> TableSpec:
    if name is not None:
        return served.tables.get(name)
    only = served.only()
    if only is None:
        raise LoadError(
            "validate",
            f"scheduled event without a 'table', but {served.tables.source} declares "
            f"{len(served.tables)} tables ({', '.join(served.tables.names)}); the rule's input must "
            'name one: {"table": "<name>"}',
        )
    return only


def _scheduled(
    event: Mapping[str, Any], environ: Mapping[str, str], deadline: float | None
) -> dict[str, Any]:
    day = scheduled_day(event)
    spec = _pick(served_tables(environ, get_clients), scheduled_table(event))
    log.info("scheduled run of %s: catching up %d day(s) up to %s", spec.name, spec.catchup_days, day)
    clients = get_clients()
    response = catch_up(
        spec,
        day,
        clients,
        load=lambda ev: already_being_loaded(handle_event(ev, clients, deadline=deadline)),
    )
    log.info("scheduled run of %s: %s", spec.name, response["days"])
    return response


def _s3(event: Mapping[str, Any], environ: Mapping[str, str], deadline: float | None) -> dict[str, Any]:
    if event.get("Event") == _TEST_EVENT:
        return combine([], [f"{_TEST_EVENT} (sent when the notification is configured)"])
    served = served_tables(environ, get_clients)
    loads, ignored = route(event, served.tables, data_ref_pattern(environ))
    for reason in ignored:
        log.info("ignored %s", reason)
    if not loads:
        return combine([], ignored)
    clients = get_clients()
    return combine(
        [
            (f"{name} {ev['data_ref']}", load_unless_current(ev, clients, deadline=deadline))
            for name, ev in loads
        ],
        ignored,
    )


def _run(
    event: Any, environ: Mapping[str, str], pipes: PipesContext | None, deadline: float | None
) -> tuple[EventKind, dict[str, Any]]:
    kind = classify(event)
    if kind == "scheduled":
        return kind, _scheduled(event, environ, deadline)
    if kind == "s3":
        return kind, _s3(event, environ, deadline)
    return kind, _direct(event, environ, pipes, deadline)


def _safe_kind(event: Any) -> EventKind:
    try:
        return classify(event)
    except LoadError:
        return "direct"


def invoke(
    event: Any,
    environ: Mapping[str, str],
    pipes: PipesContext | None,
    request_id: str | None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Run the event; return the response, or raise :class:`LoadFailedError` when the policy says so.
    ``deadline`` (``time.monotonic()``): every load stops cleanly before it (the invocation's timeout).
    A runtime that cannot run the function (:mod:`.runtime`) fails every event, before any AWS call."""
    policy: RaisePolicy = "auto"
    try:
        policy = raise_policy(environ)
        require_supported_runtime()
        kind, response = _run(event, environ, pipes, deadline)
    except LoadError as exc:  # a bad setting, runtime, tables file or event shape (the core answers its own)
        log.error("invocation %s failed: %s", request_id, exc)
        kind, response = _safe_kind(event), error_response(exc)
    if must_raise(response, kind, policy):
        log.error("invocation %s (%s event) failed, raising for Lambda's retries and DLQ", request_id, kind)
        raise LoadFailedError(response)
    return response
