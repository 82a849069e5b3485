"""Run the shared load benchmark for this project's loader beside the baselines, in one run.

usage: python benchmarks/run_bench.py [--mb 256,1024] [--fmt csv,gz,zip] [--small] [--fresh]
                                      [--out benchmarks]

Each case runs ``../shared/bench/bench.sh MB FMT LOADER...`` (moto server on loopback, one staged
export, the loader under /usr/bin/time -v) for ``s3-parquet-assets load --event``, ``seed_lambda.py``
(the original algorithm) and ``arrow_stream.py`` (naive pyarrow streaming), and prints a table with
wall time, peak RSS, rows and the ratios the performance issue targets. ``--small`` adds the 1 MiB
fixed-cost case against ``get_only.py``. Results go to ``results.json`` and ``results.md``; ``plot.py``
draws them.

A run replaces the cases it measured in ``results.json`` and keeps the others (``--fresh`` drops them
all), so ``make bench`` then ``BENCH_MB=4096 make bench`` leave one table and one plot with every size.
Every loader of a case runs in the same run, so a row's ratios always come from one run; each row
names its run (commit and time). The table ends with the targets and whether this run meets them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("BENCH_SHARED", ROOT.parent / "shared" / "bench"))
RSS_BOUND_MB = 400
LOADER_PATHS = ("s3_parquet_assets", "pyproject.toml", "constraints.txt")
LINE = re.compile(r"wall=(?P<wall>[\d:.]+) max_rss_mb=(?P<rss>\d+) rows_out=(?P<rows>\d+)")


def seconds(wall: str) -> float:
    parts = [float(p) for p in wall.split(":")]
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total


def harness() -> Path:
    """bench.sh with its failure path fixed (``tail -5 a b`` is rejected by GNU tail)."""
    text = (SHARED / "bench.sh").read_text().replace("tail -5", "tail -n 5")
    work = Path(tempfile.mkdtemp(prefix="s3pa-bench-"))
    for name in ("gen_csv.py", "seed_lambda.py", "arrow_stream.py", "get_only.py", "polars_stream.py"):
        if (SHARED / name).exists():
            shutil.copy(SHARED / name, work / name)
    script = work / "bench.sh"
    script.write_text(text)
    script.chmod(0o755)
    return script


def run_case(script: Path, mb: float, fmt: str, loader: list[str]) -> dict[str, object]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", str(script), str(mb), fmt, *loader], capture_output=True, text=True, env=env, check=False
    )
    m = LINE.search(proc.stdout)
    if not m:
        return {"ok": False, "error": (proc.stdout + proc.stderr)[-800:]}
    return {"ok": True, "wall": seconds(m["wall"]), "rss_mb": int(m["rss"]), "rows": int(m["rows"])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", default=os.environ.get("BENCH_MB", "256,1024"))
    ap.add_argument("--fmt", default=os.environ.get("BENCH_FMT", "csv,gz,zip"))
    ap.add_argument("--small", action="store_true", help="add the 1 MiB fixed-cost case")
    ap.add_argument("--loaders", default="ours,seed,arrow")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--fresh", action="store_true", help="drop the earlier runs' cases from results.json")
    args = ap.parse_args()
    stamp = run_stamp()
    script = harness()
    bench_dir = script.parent
    ours = shutil.which("s3-parquet-assets", path=str(Path(sys.executable).parent)) or "s3-parquet-assets"
    loaders = {
        "ours": [ours, "load", "--event"],
        "seed": [sys.executable, str(bench_dir / "seed_lambda.py")],
        "arrow": [sys.executable, str(bench_dir / "arrow_stream.py")],
    }
    chosen = [name for name in args.loaders.split(",") if name]
    results: list[dict[str, object]] = []
    cases = [(float(mb), fmt) for mb in args.mb.split(",") for fmt in args.fmt.split(",")]
    if args.small:
        cases.insert(0, (1.0, "csv"))
    for mb, fmt in cases:
        names = chosen if mb > 1 else ["ours", "get_only"]
        for name in names:
            loader = loaders.get(name) or [sys.executable, str(bench_dir / f"{name}.py")]
            r = run_case(script, mb, fmt, loader)
            r.update({"mb": mb, "fmt": fmt, "loader": name, "run": stamp})
            results.append(r)
            shown = (
                f"{r['wall']:.2f}s {r['rss_mb']} MB rows={r['rows']}" if r["ok"] else f"FAILED {r['error']}"
            )
            print(f"{mb:>6g} MB {fmt:<4} {name:<9} {shown}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    merged = results if args.fresh else merge(out / "results.json", results)
    (out / "results.json").write_text(json.dumps(merged, indent=1))
    table = render(merged)
    (out / "results.md").write_text(table)
    print()
    print(table)
    # a baseline that cannot run a case (arrow_stream.py on .gz: pyarrow's S3 stream already inflates
    # it, then its GzipFile fails) is shown as '-'; only this project's loader failing fails the bench
    return 0 if all(r["ok"] for r in results if r["loader"] == "ours") else 1


def run_stamp() -> str:
    """The commit (with ``+`` when the loader's code or pins differ from it) and UTC time of this run.
    Changes elsewhere (these results, the docs) do not mark it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", *LOADER_PATHS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    return f"{head}{'+' if dirty else ''} {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}"


def merge(path: Path, new: list[dict[str, object]]) -> list[dict[str, object]]:
    """The earlier results at ``path`` with every case this run measured replaced by its new rows."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = []
    measured = {(r["mb"], r["fmt"]) for r in new}
    kept = [r for r in old if (r.get("mb"), r.get("fmt")) not in measured]
    return sorted(kept + new, key=lambda r: (r["mb"], str(r["fmt"]), str(r["loader"])))  # type: ignore[arg-type]


Results = dict[tuple[object, object, object], dict[str, object]]


def ratio(by: Results, mb: float, fmt: str, other: str) -> float | None:
    """This loader's wall time over ``other``'s for one case (None when either did not run)."""
    o, b = by.get((mb, fmt, "ours")), by.get((mb, fmt, other))
    return o["wall"] / b["wall"] if o and b else None  # type: ignore[operator]


def targets(by: Results) -> list[str]:
    """The performance issue's targets, each with whether the table meets it."""

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "MISSED")

    lines = ["", "Targets:"]
    a, s = ratio(by, 1024.0, "csv", "arrow"), ratio(by, 1024.0, "csv", "seed")
    lines.append(f"- 1 GiB csv wall <= 0.75 x arrow_stream.py: {verdict(None if a is None else a <= 0.75)}")
    lines.append(f"- 1 GiB csv wall <= 0.5 x seed_lambda.py: {verdict(None if s is None else s <= 0.5)}")
    ours = [r for (mb, _, loader), r in by.items() if loader == "ours" and mb > 1]  # type: ignore[operator]
    peak = max((int(r["rss_mb"]) for r in ours), default=None)  # type: ignore[call-overload]
    sizes = ", ".join(f"{mb:g}" for mb in sorted({r["mb"] for r in ours}))  # type: ignore[type-var]
    lines.append(
        f"- peak RSS <= {RSS_BOUND_MB} MB for every size and format ({sizes} MiB; highest {peak} MB): "
        f"{verdict(None if peak is None else peak <= RSS_BOUND_MB)}"
    )
    small = ratio(by, 1.0, "csv", "get_only")
    lines.append(f"- 1 MiB csv < 2 x get_only.py: {verdict(None if small is None else small < 2)}")
    return lines


def render(results: list[dict[str, object]]) -> str:
    by: Results = {(r["mb"], r["fmt"], r["loader"]): r for r in results if r["ok"]}
    lines = [
        "| MB | fmt | ours wall | ours RSS | seed wall | seed RSS | arrow wall | arrow RSS "
        "| ours/arrow | ours/seed | rows | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mb, fmt in sorted({(r["mb"], r["fmt"]) for r in results if r["mb"] > 1}):  # type: ignore[operator]
        o, s, a = by.get((mb, fmt, "ours")), by.get((mb, fmt, "seed")), by.get((mb, fmt, "arrow"))

        def cell(r: dict[str, object] | None, key: str, fmt_: str) -> str:
            return fmt_.format(r[key]) if r else "-"

        ra, rs = ratio(by, mb, fmt, "arrow"), ratio(by, mb, fmt, "seed")  # type: ignore[arg-type]
        ratio_a = "-" if ra is None else f"{ra:.2f}"
        ratio_s = "-" if rs is None else f"{rs:.2f}"
        rows = o["rows"] if o else "-"
        run = o.get("run", "-") if o else "-"
        lines.append(
            f"| {mb:g} | {fmt} | {cell(o, 'wall', '{:.2f} s')} | {cell(o, 'rss_mb', '{} MB')} "
            f"| {cell(s, 'wall', '{:.2f} s')} | {cell(s, 'rss_mb', '{} MB')} | {cell(a, 'wall', '{:.2f} s')} "
            f"| {cell(a, 'rss_mb', '{} MB')} | {ratio_a} | {ratio_s} | {rows} | {run} |"
        )
    small_o, small_g = by.get((1.0, "csv", "ours")), by.get((1.0, "csv", "get_only"))
    small = ratio(by, 1.0, "csv", "get_only")
    if small_o and small_g and small is not None:
        lines.append("")
        lines.append(
            f"1 MiB csv: ours {small_o['wall']:.2f} s vs get_only.py {small_g['wall']:.2f} s "
            f"(ratio {small:.2f}; target < 2; run {small_o.get('run', '-')})"
        )
    lines.extend(targets(by))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
