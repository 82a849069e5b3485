"""Plot wall time and peak RSS against file size for the three loaders (from results.json); the peak RSS
plots are on a log scale, with the 400 MB target drawn in."""

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
    fig, axes = plt.subplots(2, len(fmts), figsize=(5 * len(fmts), 7), squeeze=False)
    labels = {"ours": "s3-parquet-assets", "seed": "seed_lambda.py", "arrow": "arrow_stream.py"}
    for col, fmt in enumerate(fmts):
        for loader, label in labels.items():
            pts = sorted(
                (r["mb"], r["wall"], r["rss_mb"])
                for r in results
                if r["fmt"] == fmt and r["loader"] == loader
            )
            if not pts:
                continue
            axes[0][col].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            axes[1][col].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=label)
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
            ax.legend()
    fig.tight_layout()
    out = src.with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
