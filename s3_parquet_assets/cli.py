"""Command line:

    s3-parquet-assets load --event '<json>'            # or --event @file.json: one load, as the Lambda
    s3-parquet-assets load --tables FILE --table NAME  # yesterday (UTC), or --day D, or --from D1 --to D2
    s3-parquet-assets tables FILE [--json]             # validate a tables file and list its tables
    s3-parquet-assets demo                             # the local demo

``load`` prints one JSON response per day on stdout (one line each) and its progress on stderr.
Exit status: 0 every day loaded; 1 a day failed, or the tables file is unreadable or invalid, or the
table is not declared in it (the error on stderr names the file, table and field); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import AwsClients, Tables, TableSpec

__all__ = ["MAX_DAYS", "day_range", "describe_table", "main", "render_table", "table_row"]

PROG = "s3-parquet-assets"
MAX_DAYS = 366  # one run of `load --from --to` loads at most a year; split longer backfills

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Days.


def _day(text: str) -> str:
    """argparse type of ``--day``/``--from``/``--to``: a real calendar day as YYYYMMDD."""
    from .core.contract import PARTITION_KEY, FieldError, field

    try:
        return str(field(PARTITION_KEY).check(text, PARTITION_KEY))
    except FieldError as exc:
        raise argparse.ArgumentTypeError(exc.rule) from None


def day_range(first: str, last: str, *, max_days: int = MAX_DAYS) -> list[str]:
    """Every day from ``first`` to ``last`` (YYYYMMDD, both included), oldest first.

    Raises ``ValueError`` when ``first`` is after ``last`` or the range holds more than ``max_days``."""
    from .core.catchup import as_date, window

    span = (as_date(last) - as_date(first)).days + 1
    if span < 1:
        raise ValueError(f"--from {first} is after --to {last}")
    if span > max_days:
        raise ValueError(
            f"--from {first} --to {last} is {span} days; one run loads at most {max_days} "
            "(split the range into several runs)"
        )
    return window(last, span)


# --------------------------------------------------------------------------------------------------
# The tables file.


def _read_tables(location: str, clients: Callable[[], AwsClients]) -> Tables:
    """The validated tables file at a path or an ``s3://bucket/key`` URI (read with ``clients().s3``)."""
    from .core import read_tables

    return read_tables(location, s3=clients().s3 if location.startswith("s3://") else None)


def table_row(spec: TableSpec) -> dict[str, str]:
    """The columns ``tables`` shows for one table."""
    ev = spec.probe
    return {
        "name": spec.name,
        "source": f"s3://{ev.bucket_src}/{ev.prefix}",
        "substr": ev.substr,
        "destination": f"s3://{ev.bucket_dstn}/{ev.table_root}",
        "glue_table": f"{ev.database}.{ev.table}",
        "schedule": spec.schedule,
        "start_date": spec.start_date,
        "catchup_days": str(spec.catchup_days),
    }


def describe_table(spec: TableSpec) -> dict[str, Any]:
    """One table for ``tables --json``: the columns of :func:`table_row`, every table-only field of the
    contract, and the table's event settings with every default filled in."""
    from .core.contract import PARTITION_KEY, table_fields

    hints = {f.name: getattr(spec, f.name) for f in table_fields() if not f.event and f.name != "name"}
    settings = {k: v for k, v in spec.probe.to_dict().items() if k != PARTITION_KEY}
    row: dict[str, Any] = table_row(spec)
    return {**row, **hints, "settings": settings}


def render_table(rows: Sequence[dict[str, str]]) -> str:
    """Rows as a plain-text table: upper-case headers, columns aligned, two spaces apart."""
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [[h.upper().replace("_", " ") for h in headers], *[[r[h] for h in headers] for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


# --------------------------------------------------------------------------------------------------
# Commands.


def _read_event(text: str) -> Any:
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    return json.loads(text)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _load_event(args: argparse.Namespace) -> int:
    from .core import handle_event

    try:
        event = _read_event(args.event)
    except (OSError, json.JSONDecodeError) as exc:
        response: dict[str, Any] = {
            "statusCode": 500,
            "body": f"Error: validate: cannot read the event: {exc}",
        }
    else:
        response = handle_event(event)
    _print_json(response)
    return 0 if response["statusCode"] == 200 else 1


def _days(args: argparse.Namespace) -> list[str]:
    from .core import yesterday

    if args.first:
        return day_range(args.first, args.last)
    return [args.day or yesterday()]


def load_days(spec: TableSpec, days: Sequence[str], clients: AwsClients) -> Iterator[dict[str, Any]]:
    """Load ``days`` of ``spec`` in order, each on its own (a failed day does not stop the next);
    yields each day's ``handle_event`` response with ``table`` (the declared name) and ``data_ref``."""
    from .core import handle_event

    for n, day in enumerate(days, 1):
        log.info("%s %s (%d/%d): loading", spec.name, day, n, len(days))
        response = handle_event(spec.event(day), clients)
        if response["statusCode"] == 200:
            log.info("%s %s: loaded %d rows", spec.name, day, response["result"]["rows"])
        else:
            log.error("%s %s: failed: %s", spec.name, day, response["body"])
        yield {"table": spec.name, "data_ref": day, **response}


def _load_tables(args: argparse.Namespace) -> int:
    from functools import cache

    from .core import LoadError, make_clients

    clients = cache(make_clients)
    try:
        spec = _read_tables(args.tables, clients).get(args.table)
    except LoadError as exc:
        return _config_error(exc)
    early = [day for day in args.days if spec.start_date and day < spec.start_date]
    if early:
        return _config_error(
            f"table {spec.name}: day {early[0]} is before its start_date {spec.start_date} "
            f"(tables file {args.tables}); no day was loaded"
        )
    failed: list[str] = []
    for response in load_days(spec, args.days, clients()):
        _print_json(response)
        if response["statusCode"] != 200:
            failed.append(response["data_ref"])
    loaded = len(args.days) - len(failed)
    summary = f"{spec.name}: {loaded} of {len(args.days)} day(s) loaded"
    if failed:
        log.error("%s; failed: %s", summary, ", ".join(failed))
        return 1
    log.info("%s", summary)
    return 0


def _load(args: argparse.Namespace) -> int:
    return _load_tables(args) if args.tables else _load_event(args)


def _tables(args: argparse.Namespace) -> int:
    from .core import LoadError, make_clients

    try:
        tables = _read_tables(args.file, make_clients)
    except LoadError as exc:
        return _config_error(exc)
    if args.json:
        print(json.dumps([describe_table(spec) for spec in tables], indent=2, default=str))
    else:
        print(render_table([table_row(spec) for spec in tables]))
    print(f"{tables.source}: {len(tables)} table(s), valid", file=sys.stderr)
    return 0


def _config_error(exc: Exception | str) -> int:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return 1


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # type: ignore[import-not-found]

    return int(run_demo(days=args.days))


# --------------------------------------------------------------------------------------------------
# Arguments.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_load(sub)
    tables = sub.add_parser("tables", help="validate a tables file and list its tables")
    tables.add_argument("file", help="the tables file: a path or s3://bucket/key")
    tables.add_argument("--json", action="store_true", help="print the tables as JSON, every field")
    tables.set_defaults(func=_tables)
    demo = sub.add_parser("demo", help="run the local demo against an embedded S3/Glue emulator")
    demo.add_argument("--days", type=int, default=7)
    demo.set_defaults(func=_demo)
    return parser


def _add_load(sub: Any) -> None:
    load = sub.add_parser(
        "load",
        help="run a load and print the response JSON (one line per day)",
        description="Run one load from an event, or a declared table's load for one day or a range.",
    )
    what = load.add_mutually_exclusive_group()
    what.add_argument("--event", help="the event JSON, or @path/to/event.json")
    what.add_argument("--tables", metavar="FILE", help="the tables file: a path or s3://bucket/key")
    load.add_argument("--table", metavar="NAME", help="the table of --tables to load")
    load.add_argument("--day", type=_day, help="the day to load, YYYYMMDD (default: yesterday, UTC)")
    load.add_argument("--from", dest="first", metavar="D1", type=_day, help="first day of a range")
    load.add_argument("--to", dest="last", metavar="D2", type=_day, help="last day of a range (included)")
    load.set_defaults(func=_load, parser=load)


def _check_load(args: argparse.Namespace, rest: list[str]) -> None:
    """The rules argparse cannot say; a broken one exits with status 2 and the usage of ``load``."""
    error = args.parser.error
    if rest:  # the event as a trailing positional (the bench harness appends it)
        if len(rest) > 1 or args.tables:
            error(f"unrecognized arguments: {' '.join(rest)}")
        args.event = rest[0]
    if args.tables is None:
        if args.event is None:
            error("give --event JSON (or @file), or --tables FILE --table NAME")
        for flag, value in (("--table", args.table), ("--day", args.day), ("--from", args.first)):
            if value is not None:
                error(f"{flag} goes with --tables (an event names its day in data_ref)")
        if args.last is not None:
            error("--to goes with --tables (an event names its day in data_ref)")
        return
    if args.table is None:
        error("--tables needs --table NAME")
    if args.day is not None and (args.first or args.last):
        error("give --day or --from/--to, not both")
    if (args.first is None) != (args.last is None):
        error("a range needs both --from and --to")
    try:
        args.days = _days(args)
    except ValueError as exc:
        error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "load":
        _check_load(args, rest)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "awswrangler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
