"""The S3 link model's own cost: this project's loader on one staged export, alternately straight to
the emulator and through the link with no latency and no bandwidth cap.

usage: python benchmarks/link_overhead.py [--mb 1024] [--runs 2] [--ours PATH]
Prints one line per run (wall, peak RSS, the loader's CPU-seconds, the emulator's and the link's
CPU-seconds during the run) and the medians. Run from .venv-bench, like run_bench.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from harness import Case, LinkModel
from run_bench import ROOT, shared_dir


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=1024)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--ours", default=str(ROOT / ".venv" / "bin" / "s3-parquet-assets"))
    args = ap.parse_args()
    walls: dict[str, list[float]] = {"direct": [], "link 0 ms uncapped": []}
    with Case(shared_dir(), args.mb, "csv", LinkModel(0, 0), 900) as case:
        endpoints = {"direct": case.endpoint, "link 0 ms uncapped": case.link_url}
        for i in range(args.runs):
            for name, endpoint in endpoints.items():
                case.loader_endpoint = endpoint
                r = case.run([args.ours, "load", "--event"])
                if not r["ok"]:
                    print(f"{name} run {i + 1}: FAILED {r['error']}")
                    return 1
                walls[name].append(float(r["wall"]))  # type: ignore[arg-type]
                print(
                    f"{name:<20} run {i + 1}: {r['wall']:.2f} s, {r['rss_mb']} MB, {r['cpu_s']} CPU-s "
                    f"(moto {r['moto_cpu_s']}, link {r.get('link_cpu_s', 0)} CPU-s), rows {r['rows']}",
                    flush=True,
                )
    for name, w in walls.items():
        print(f"{name:<20} median {statistics.median(w):.2f} s over {len(w)} runs")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
