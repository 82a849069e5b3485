"""Command line: ``s3-parquet-assets load --event '<json>'`` (or ``--event @file.json``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _read_event(text: str) -> Any:
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    return json.loads(text)


def _load(args: argparse.Namespace) -> int:
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
    print(json.dumps(response, default=str))
    return 0 if response["statusCode"] == 200 else 1


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # type: ignore[import-not-found]

    return int(run_demo(days=args.days))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s3-parquet-assets", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", help="run one load and print the response JSON")
    load.add_argument("--event", required=True, help="the event JSON, or @path/to/event.json")
    load.set_defaults(func=_load)
    demo = sub.add_parser("demo", help="run the local demo against an embedded S3/Glue emulator")
    demo.add_argument("--days", type=int, default=7)
    demo.set_defaults(func=_demo)
    # `load` also accepts the event as a trailing positional (the bench harness appends it).
    args, rest = parser.parse_known_args(argv)
    if rest:
        if args.command == "load" and len(rest) == 1:
            args.event = rest[0]
        else:
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
