"""Run the load benchmark for this project's loader beside its peers, in one run.

usage: python benchmarks/run_bench.py [--mb 256,1024] [--fmt csv,gz,zip] [--small] [--fresh]
                                      [--loaders ours,seed,arrow,polars,duckdb] [--ours COMMAND]
                                      [--link s3] [--out benchmarks]

Run from the benchmark's own environment (``.venv-bench``, ``make bench``): the peers and the harness
use its packages; this project's loader runs as ``--ours`` (default: ``s3-parquet-assets`` beside the
project's ``.venv`` python). Each (MB, fmt) is generated and staged once (``harness.py``: the shared
generator, a moto server on loopback) and every loader runs on it in turn under ``/usr/bin/time -v``:
``s3-parquet-assets load --event``, ``seed_lambda.py`` (the original algorithm), ``arrow_stream.py``
(naive pyarrow streaming), ``polars_stream.py`` and ``duckdb_stream.py`` (peers from
``../shared/bench``). ``--small`` adds the 1 MiB fixed-cost case against ``get_only.py``.

``--link s3`` (or ``BENCH_LINK=s3``) points the loaders at the S3 link model (``s3link.py``;
``BENCH_LINK_LATENCY_MS``, default 30, and ``BENCH_LINK_MBPS``, default 90, 0 = no cap) while
staging and the row count stay direct. Rows are keyed by mode (``direct`` or ``s3link <latency>
<bandwidth>``), so both modes live in ``results.json`` / ``results.md``; ``plot.py`` draws them.

A run replaces the (mode, MB, fmt) cases it measured in ``results.json`` and keeps the others
(``--fresh`` drops them all). Each row names its run (commit and time); ratios within a case always
come from one run. The table ends with the performance issue's targets, met or missed.
``reference.json`` holds the rows of the last runs before that issue, the reference for "no slower
than today".
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from harness import Case, LinkModel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RSS_BOUND_MB = 400
RSS_SIZES = (256.0, 1024.0, 4096.0)
LOADER_PATHS = ("s3_parquet_assets", "pyproject.toml", "constraints.txt")
PEERS = ("seed", "arrow", "polars", "duckdb")
SCRIPTS = {
    "seed": "seed_lambda.py",
    "arrow": "arrow_stream.py",
    "polars": "polars_stream.py",
    "duckdb": "duckdb_stream.py",
    "get_only": "get_only.py",
}
Row = dict[str, object]
# what a peer cannot do at all, so it is not run (README: "What a peer cannot do")
CANNOT = {
    ("polars", "zip"): "polars reads no zip archive (it scans the archive's bytes as CSV)",
    ("duckdb", "zip"): "DuckDB reads no zip archive (duckdb_stream.py exits)",
}
# what a peer can do but too slowly to wait for: run only at the sizes up to the bound (MiB)
SLOW = {
    ("arrow", "gz"): (
        64,
        "not run above 64 MiB: GzipFile over pyarrow's unbuffered S3 stream makes one ranged GET per "
        "small read (64 MiB: 43 s direct, 111 s through the link)",
    ),
}


def shared_dir() -> Path:
    """``../shared/bench`` beside the clone (or beside the worktree folder), or ``BENCH_SHARED``."""
    if "BENCH_SHARED" in os.environ:
        return Path(os.environ["BENCH_SHARED"])
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared" / "bench" / "gen_csv.py").exists():
            return base / "shared" / "bench"
    raise SystemExit("../shared/bench not found (set BENCH_SHARED)")


def link_model(arg: str | None) -> LinkModel | None:
    kind = arg if arg is not None else os.environ.get("BENCH_LINK", "")
    if kind in ("", "direct"):
        return None
    if kind != "s3":
        raise SystemExit(f"BENCH_LINK must be s3 or empty, got {kind!r}")
    return LinkModel(
        latency_ms=float(os.environ.get("BENCH_LINK_LATENCY_MS", "30")),
        mbps=float(os.environ.get("BENCH_LINK_MBPS", "90")),
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", default=os.environ.get("BENCH_MB", "256,1024"))
    ap.add_argument("--fmt", default=os.environ.get("BENCH_FMT", "csv,gz,zip"))
    ap.add_argument("--small", action="store_true", help="add the 1 MiB fixed-cost case")
    ap.add_argument("--loaders", default=os.environ.get("BENCH_LOADERS", "ours," + ",".join(PEERS)))
    ap.add_argument("--ours", default=str(ROOT / ".venv" / "bin" / "s3-parquet-assets"))
    ap.add_argument("--link", default=None, help="s3: through the S3 link model (default: BENCH_LINK)")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", "900")))
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--fresh", action="store_true", help="drop the earlier runs' cases from results.json")
    args = ap.parse_args()
    shared = shared_dir()
    link = link_model(args.link)
    mode = link.mode if link else "direct"
    stamp = run_stamp()
    commands = {name: [sys.executable, str(shared / script)] for name, script in SCRIPTS.items()}
    commands["ours"] = [*shlex.split(args.ours), "load", "--event"]
    chosen = [name for name in args.loaders.split(",") if name]
    cases = [(float(mb), fmt) for mb in args.mb.split(",") for fmt in args.fmt.split(",")]
    if args.small:
        cases.insert(0, (1.0, "csv"))
    print(f"mode: {mode}", flush=True)
    results: list[Row] = []
    for mb, fmt in cases:
        names = chosen if mb > 1 else ["ours", "get_only"]
        with Case(shared, mb, fmt, link, args.timeout) as case:
            for name in names:
                why = CANNOT.get((name, fmt))
                bound, slow = SLOW.get((name, fmt), (None, ""))
                if bound is not None and mb > bound:
                    why = slow
                r: Row = {"ok": False, "error": why, "cannot": True} if why else case.run(commands[name])
                r.update({"mode": mode, "mb": mb, "fmt": fmt, "loader": name, "run": stamp})
                results.append(r)
                print(f"{mb:>6g} MB {fmt:<4} {name:<9} {shown(r)}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    merged = results if args.fresh else merge(out / "results.json", results)
    (out / "results.json").write_text(json.dumps(merged, indent=1))
    table = render(merged, reference(out / "reference.json"))
    (out / "results.md").write_text(table)
    print()
    print(table)
    # a peer that cannot run a case is shown as '-' (README says why); only ours failing fails the bench
    return 0 if all(r["ok"] for r in results if r["loader"] == "ours") else 1


def shown(r: Row) -> str:
    if not r["ok"]:
        return f"{'not run' if r.get('cannot') else 'FAILED'}: {r['error']}"
    link = f" link: {requests(r)}" if "link" in r else ""
    return f"{r['wall']:.2f}s {r['rss_mb']} MB {r['cpu_s']} CPU-s rows={r['rows']}{link}"


def requests(r: Row) -> str:
    """What a loader asked of the link: requests, of which object GETs (ranged), and MB each way."""
    s: dict[str, int] = r.get("link") or {}  # type: ignore[assignment]
    if not s:
        return "-"
    gets = s.get("get", 0) + s.get("ranged_get", 0)
    cpu = f", link {r['link_cpu_s']} CPU-s" if "link_cpu_s" in r else ""
    return (
        f"{s.get('requests', 0)} req, {gets} GET ({s.get('ranged_get', 0)} ranged), "
        f"{s.get('bytes_out', 0) / 1e6:.0f} MB down, {s.get('bytes_in', 0) / 1e6:.0f} MB up{cpu}"
    )


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


def mode_of(r: Row) -> str:
    return str(r.get("mode", "direct"))  # rows from before the link model are direct


def merge(path: Path, new: list[Row]) -> list[Row]:
    """The earlier results at ``path`` with every (mode, MB, fmt) this run measured replaced."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = []
    for r in old:
        r.setdefault("mode", "direct")
    measured = {(mode_of(r), r["mb"], r["fmt"]) for r in new}
    kept = [r for r in old if (mode_of(r), r.get("mb"), r.get("fmt")) not in measured]
    return sorted(
        kept + new,
        key=lambda r: (mode_of(r) != "direct", mode_of(r), r["mb"], str(r["fmt"]), str(r["loader"])),
    )  # type: ignore[arg-type]


def reference(path: Path) -> list[Row]:
    try:
        rows: list[Row] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return rows


Index = dict[tuple[str, float, str, str], Row]


def key(r: Row) -> tuple[str, float, str, str]:
    return (mode_of(r), float(r["mb"]), str(r["fmt"]), str(r["loader"]))  # type: ignore[arg-type]


def index(rows: list[Row]) -> Index:
    return {key(r): r for r in rows if r["ok"]}


def wall_ratio(by: Index, mode: str, mb: float, fmt: str, other: str) -> float | None:
    o, b = by.get((mode, mb, fmt, "ours")), by.get((mode, mb, fmt, other))
    return float(o["wall"]) / float(b["wall"]) if o and b else None  # type: ignore[arg-type]


def cpu_per_gib(r: Row) -> float | None:
    return float(r["cpu_s"]) / (float(r["mb"]) / 1024) if "cpu_s" in r else None  # type: ignore[arg-type]


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "MISSED")


def target(claim: str, figures: str, ok: bool | None) -> str:
    return f"- {claim} ({figures}): {verdict(ok)}"


def at_most(v: float | None, bound: float) -> bool | None:
    return None if v is None else v <= bound


def targets(rows: list[Row], ref: list[Row]) -> list[str]:
    """Issue 15's targets, each with the figures it was judged on and met / MISSED."""
    by, old = index(rows), index(ref)
    lines = ["", "Targets (issue 15):"]
    a, s = (wall_ratio(by, "direct", 1024.0, "csv", p) for p in ("arrow", "seed"))
    lines.append(target("direct, 1 GiB csv: wall <= 0.5 x arrow_stream.py", fmt_ratio(a), at_most(a, 0.5)))
    lines.append(target("direct, 1 GiB csv: wall <= 0.35 x seed_lambda.py", fmt_ratio(s), at_most(s, 0.35)))
    for fmt in ("gz", "zip"):
        now, was = by.get(("direct", 1024.0, fmt, "ours")), old.get(("direct", 1024.0, fmt, "ours"))
        r_now, r_was = (wall_ratio(x, "direct", 1024.0, fmt, "seed") for x in (by, old))
        figures = "no figures"
        if now and was:
            figures = (
                f"ours {float(now['wall']):.2f} s, {fmt_ratio(r_now)} x seed; "  # type: ignore[arg-type]
                f"before {float(was['wall']):.2f} s, {fmt_ratio(r_was)} x seed"  # type: ignore[arg-type]
            )
        ok = None if r_now is None or r_was is None else r_now <= r_was * 1.05
        lines.append(
            target(f"direct, 1 GiB {fmt}: no slower than before (ours/seed within 5 %)", figures, ok)
        )
    direct = by.get(("direct", 1024.0, "csv", "ours"))
    for mode in sorted({mode_of(r) for r in rows if mode_of(r) != "direct"}):
        through = by.get((mode, 1024.0, "csv", "ours"))
        ratio = float(through["wall"]) / float(direct["wall"]) if through and direct else None  # type: ignore[arg-type]
        lines.append(
            target(f"{mode}, 1 GiB csv: wall <= 1.3 x ours direct", fmt_ratio(ratio), at_most(ratio, 1.3))
        )
        ran = {p: v for p in PEERS if (v := wall_ratio(by, mode, 1024.0, "csv", p)) is not None}
        figures = ", ".join(f"{fmt_ratio(v)} x {p}" for p, v in ran.items()) or "no peer ran"
        ok = None if not ran else all(v < 1 for v in ran.values())
        lines.append(target(f"{mode}, 1 GiB csv: ahead of every peer through the same link", figures, ok))
    cpu = cpu_per_gib(direct) if direct else None
    lines.append(target("direct, 1 GiB csv: CPU-s per GiB <= 10", fmt_ratio(cpu), at_most(cpu, 10)))
    ours = [r for k, r in by.items() if k[3] == "ours" and k[1] in RSS_SIZES]
    peak = max((int(r["rss_mb"]) for r in ours), default=None)  # type: ignore[call-overload]
    sizes = ", ".join(f"{mb:g}" for mb in sorted({float(r["mb"]) for r in ours}))  # type: ignore[arg-type]
    lines.append(
        target(
            f"peak RSS <= {RSS_BOUND_MB} MB at 256 MiB, 1 GiB and 4 GiB, every format and mode",
            f"measured at {sizes or 'no size'} MiB; highest {peak} MB",
            at_most(peak, RSS_BOUND_MB),
        )
    )
    small = wall_ratio(by, "direct", 1.0, "csv", "get_only")
    lines.append(
        target("direct, 1 MiB csv < 2 x get_only.py", fmt_ratio(small), None if small is None else small < 2)
    )
    return lines


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def render(rows: list[Row], ref: list[Row]) -> str:
    """One table per mode: a row per (MB, fmt, loader), ours first, then the peers with ours/peer."""
    by = index(rows)
    failed = {key(r): r for r in rows if not r["ok"]}
    out: list[str] = []
    for mode in sorted({mode_of(r) for r in rows}, key=lambda m: (m != "direct", m)):
        out += [
            f"### {mode}",
            "",
            "| MB | fmt | loader | wall | peak RSS | CPU-s | CPU-s/GiB | ours / loader | rows | run |"
            + (" through the link |" if mode != "direct" else ""),
            "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if mode != "direct" else ""),
        ]
        extra = mode != "direct"
        cases = sorted({(float(r["mb"]), str(r["fmt"])) for r in rows if mode_of(r) == mode})  # type: ignore[arg-type]
        for mb, fmt in cases:
            for loader in ("ours", *PEERS, "get_only"):
                r = by.get((mode, mb, fmt, loader))
                if r is None:
                    bad = failed.get((mode, mb, fmt, loader))
                    if bad is not None:
                        why = " ".join(str(bad["error"]).replace("|", "/").split())[:120]
                        what = "cannot" if bad.get("cannot") else "failed"
                        out.append(
                            f"| {mb:g} | {fmt} | {loader} | - | - | - | - | - | {what}: {why} "
                            f"| {bad['run']} |" + (" - |" if extra else "")
                        )
                    continue
                cpu = f"{r['cpu_s']:.1f}" if "cpu_s" in r else "-"
                per = cpu_per_gib(r)
                ratio = "" if loader == "ours" else fmt_ratio(wall_ratio(by, mode, mb, fmt, loader))
                out.append(
                    f"| {mb:g} | {fmt} | {loader} | {float(r['wall']):.2f} s | {r['rss_mb']} MB | {cpu} "  # type: ignore[arg-type]
                    f"| {'-' if per is None or mb < 64 else f'{per:.1f}'} | {ratio} | {r['rows']} "
                    f"| {r['run']} |" + (f" {requests(r)} |" if extra else "")
                )
        out.append("")
    out.extend(targets(rows, ref))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
