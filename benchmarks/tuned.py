"""This project's loader with some :class:`~s3_parquet_assets.core.tuning.Tuning` knobs changed, for
measuring a knob before it becomes a default.

usage: tuned.py [KNOB=VALUE ...] load --event EVENT_JSON
e.g.   run_bench.py --ours ".venv/bin/python benchmarks/tuned.py range_size=16777216 ranges_in_flight=8"

Runs with the project's own interpreter (``.venv``): it is ``s3-parquet-assets load --event EVENT``
(the same ``handle_event``, the same response and exit status) with ``Tuning(**knobs)`` instead of
the defaults. A knob Tuning does not have, or a value of the wrong kind, is refused before any AWS call.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import sys

from s3_parquet_assets.core.pipeline import handle_event
from s3_parquet_assets.core.tuning import Tuning


def knobs(args: list[str]) -> dict[str, object]:
    """``name=value`` pairs as Tuning's keyword arguments (values as Python literals)."""
    fields = {f.name: f for f in dataclasses.fields(Tuning)}
    out: dict[str, object] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"tuned.py: {arg!r} is not KNOB=VALUE with a Tuning knob ({sorted(fields)})")
        value = ast.literal_eval(text)
        kind = type(getattr(Tuning(), name))
        if type(value) is not kind and not (kind is float and isinstance(value, int)):
            raise SystemExit(f"tuned.py: {name} takes a {kind.__name__}, not {text!r}")
        out[name] = value
    return out


def main(argv: list[str]) -> int:
    if "load" not in argv or argv[-2:-1] != ["--event"]:
        raise SystemExit(__doc__)
    tuning = Tuning(**knobs(argv[: argv.index("load")]))  # type: ignore[arg-type]
    response = handle_event(json.loads(argv[-1]), tuning=tuning)
    print(json.dumps(response, default=str), flush=True)
    return 0 if response["statusCode"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
