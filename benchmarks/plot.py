"""Plot wall time and peak RSS against file size for every loader and mode (from results.json): one
colour per loader, one line style and marker per mode (direct solid, through the S3 link model dashed,
other link parameters dotted); the peak RSS plots are on a log scale, with the 400 MB target drawn in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
RSS_BOUND_MB = 400


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    results = [r for r in json.loads(src.read_text()) if r["ok"] and r["mb"] > 1]
    fmts = sorted({r["fmt"] for r in results})
    fig, axes = plt.subplots(2, len(fmts), figsize=(6 * len(fmts), 9), squeeze=False)
    labels = {
        "ours": "s3-parquet-assets",
        "seed": "seed_lambda.py",
        "arrow": "arrow_stream.py",
        "polars": "polars_stream.py",
        "duckdb": "duckdb_stream.py",
    }
    colours = dict(zip(labels, ("C0", "C1", "C2", "C3", "C4"), strict=True))
    modes = sorted({r.get("mode", "direct") for r in results}, key=lambda m: (m != "direct", m))
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "v")]
    for col, fmt in enumerate(fmts):
        for m, mode in enumerate(modes):
            line, marker = styles[min(m, len(styles) - 1)]
            for loader, label in labels.items():
                pts = sorted(
                    (r["mb"], r["wall"], r["rss_mb"])
                    for r in results
                    if r["fmt"] == fmt and r["loader"] == loader and r.get("mode", "direct") == mode
                )
                if not pts:
                    continue
                style = {"color": colours[loader], "linestyle": line, "marker": marker}
                name = label if mode == "direct" else f"{label}, {mode}"
                axes[0][col].plot([p[0] for p in pts], [p[1] for p in pts], label=name, **style)
                axes[1][col].plot([p[0] for p in pts], [p[2] for p in pts], label=name, **style)
        axes[0][col].set_title(f"{fmt}: wall time")
        axes[0][col].set_ylabel("seconds")
        axes[1][col].axhline(RSS_BOUND_MB, color="grey", linestyle="--", label=f"{RSS_BOUND_MB} MB target")
        axes[1][col].set_title(f"{fmt}: peak RSS")
        axes[1][col].set_ylabel("MB (log scale)")
        axes[1][col].set_yscale("log")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xlabel("export size (MiB)")
            ax.set_xscale("log", base=2)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    out = src.with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
