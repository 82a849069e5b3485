"""Every step of a load reports the stage it belongs to, by construction.

A step is a function marked ``@step("write")`` (or a block under :func:`reported_as`): any exception
raised inside it that is not already a :class:`LoadError` becomes a ``LoadError`` of that stage. A
``LoadError`` raised inside keeps its own stage, so an error from an inner step (the rows a write step
pulls from the read step, see :func:`pulled_as`) is reported where it happened, not where it surfaced.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .errors import LoadError, Stage

__all__ = ["AwsErrorText", "pulled_as", "reported_as", "step"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

AwsErrorText = Callable[[ClientError | BotoCoreError], LoadError]
"""Turns an AWS error into the step's own ``LoadError`` (one that names the object at fault)."""


@contextlib.contextmanager
def reported_as(stage: Stage, *, aws: AwsErrorText | None = None) -> Iterator[None]:
    """Report any failure of the block as a ``LoadError`` of ``stage``: an AWS error through ``aws``
    (default: its type and text), anything else with its type and text, logged with its traceback
    (a bug, not a bad input). A ``LoadError`` passes through with its own stage."""
    try:
        yield
    except LoadError:
        raise
    except (ClientError, BotoCoreError) as exc:
        if aws is not None:
            raise aws(exc) from exc
        raise LoadError(stage, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        log.exception("unexpected failure in stage %s", stage)
        raise LoadError(stage, f"{type(exc).__name__}: {exc}") from exc


def step(stage: Stage) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a step of ``stage``: whatever it raises is reported in that stage
    (:func:`reported_as`). The function must return a value, not a lazy iterator: rows pulled later
    are reported through :func:`pulled_as`."""

    def mark(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with reported_as(stage):
                return fn(*args, **kwargs)

        return run

    return mark


def pulled_as(stage: Stage, items: Iterable[T], *, aws: AwsErrorText | None = None) -> Iterator[T]:
    """``items``, each pull reported in ``stage`` (:func:`reported_as`), whichever step consumes them:
    only the pull, never what the consumer does between two pulls."""
    source = iter(items)
    while True:
        with reported_as(stage, aws=aws):
            try:
                item = next(source)
            except StopIteration:
                return
        yield item
