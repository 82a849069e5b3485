"""Measure Tuning knobs: one staged export, this project's loader run with each set of knobs in turn.

usage: python benchmarks/sweep.py [--mb 1024] [--fmt csv] [--link s3] [--rounds 2]
                                  "range_size=4194304 ranges_in_flight=4" "ranges_in_flight=8" ...

Each argument is one set of knobs (``KNOB=VALUE`` pairs for ``tuned.py``; ``""`` is the defaults).
The export is generated and staged once; the sets run alternately, ``--rounds`` times each, so every
set sees the machine in the same state. ``--link s3`` (or ``BENCH_LINK=s3``) runs them through the S3
link model (``BENCH_LINK_LATENCY_MS``, ``BENCH_LINK_MBPS``). Prints one line per run (wall, peak RSS,
the loader's, the emulator's and the link's CPU-seconds, the link's request counts) and, per set,
the median wall and CPU-seconds. Run from ``.venv-bench`` (``make bench-venv``), like run_bench.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from harness import Case
from run_bench import ROOT, link_model, shared_dir

TUNED = Path(__file__).resolve().parent / "tuned.py"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="+", help='knob sets, e.g. "ranges_in_flight=8" ("" = defaults)')
    ap.add_argument("--mb", type=float, default=1024)
    ap.add_argument("--fmt", default="csv", choices=("csv", "gz", "zip"))
    ap.add_argument("--link", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = ap.parse_args()
    walls: dict[str, list[float]] = {s: [] for s in args.sets}
    cpus: dict[str, list[float]] = {s: [] for s in args.sets}
    link = link_model(args.link)
    mode = link.mode if link else "direct"
    with Case(shared_dir(), args.mb, args.fmt, link, 900) as case:
        for i in range(args.rounds):
            for knobs in args.sets:
                r = case.run([args.python, str(TUNED), *knobs.split(), "load", "--event"])
                name = knobs or "(defaults)"
                if not r["ok"]:
                    print(f"{name}: run {i + 1} FAILED: {r['error']}", flush=True)
                    return 1
                walls[knobs].append(float(r["wall"]))  # type: ignore[arg-type]
                cpus[knobs].append(float(r["cpu_s"]))  # type: ignore[arg-type]
                print(
                    f"{mode} {args.mb:g} MiB {args.fmt} | {name} | run {i + 1}: {r['wall']:.2f} s, "
                    f"{r['rss_mb']} MB, {r['cpu_s']} CPU-s (moto {r['moto_cpu_s']}, link "
                    f"{r.get('link_cpu_s', '-')}), requests {r.get('link', '-')}, rows {r['rows']}",
                    flush=True,
                )
    for knobs in args.sets:
        print(
            f"{knobs or '(defaults)'}: median {statistics.median(walls[knobs]):.2f} s, "
            f"{statistics.median(cpus[knobs]):.2f} CPU-s over {len(walls[knobs])} runs"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
