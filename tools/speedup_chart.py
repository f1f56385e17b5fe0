#!/usr/bin/env python3
"""Draw docs/speedup.png, measured speedup against FLOP ratio, from a criterion run.

Usage, one saved criterion baseline per instruction set measured:

    ROTOR_ISA=avx512 RAYON_NUM_THREADS=2 cargo bench --bench dense_vs_pruned -- --save-baseline avx512
    ROTOR_ISA=avx2 RAYON_NUM_THREADS=2 cargo bench --bench dense_vs_pruned -- --save-baseline avx2
    python tools/speedup_chart.py [target/criterion] avx512 avx2   (needs `pip install matplotlib`)

With no baseline named it reads criterion's latest run ("new"). It reads the medians of
the `keep_sweep_batch64` group (skipping and compacted plans at 100%, 75%, 50% and 25% of
the channels kept) and plots each plan's speedup over the 100% plan of the same kind
against the FLOP ratio of the kept widths, one pair of curves per baseline, with the line
speedup = FLOP ratio (every saved FLOP turned into time) for reference.
"""

import json
import pathlib
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FRACTIONS = [1.0, 0.75, 0.5, 0.25]
WAYS = {"skipping": "channel skipping", "compacted": "compacted"}


def kept(channels, fraction):
    """round(f C), the channel count the benchmark keeps (Rust rounds half away from 0)."""
    return int(fraction * channels + 0.5)


def mnistnet_flops(c1, c2, c3):
    """Forward FLOPs (2 per multiply-accumulate) of MnistNet at widths c1, c2, c3."""
    conv1 = 26 * 26 * 9 * 1 * c1
    conv2 = 24 * 24 * 9 * c1 * c2
    fc1 = 12 * 12 * c2 * c3
    fc2 = c3 * 10
    return 2 * (conv1 + conv2 + fc1 + fc2)


def median_ns(root, baseline, way, fraction):
    path = root / "keep_sweep_batch64" / way / f"keep{round(fraction * 100)}" / baseline
    estimates = json.loads((path / "estimates.json").read_text())
    return estimates["median"]["point_estimate"]


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    baselines = sys.argv[2:] or ["new"]
    dense = mnistnet_flops(32, 64, 128)
    ratios = [dense / mnistnet_flops(*(kept(c, f) for c in (32, 64, 128))) for f in FRACTIONS]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    top = max(ratios) * 1.05
    ax.plot([1, top], [1, top], color="0.6", linestyle="--", label="speedup = FLOP ratio")
    markers = ["o", "s", "^", "D"]
    for baseline, marker in zip(baselines, markers):
        for way, label in WAYS.items():
            times = [median_ns(root, baseline, way, f) for f in FRACTIONS]
            speedups = [times[0] / t for t in times]
            name = label if baseline == "new" else f"{label}, {baseline}"
            (line,) = ax.plot(ratios, speedups, marker=marker, label=name)
            # Compacted above and to the left of its points, skipping below and to the
            # right; a single baseline is labelled point by point.
            above = way == "compacted"
            for f, r, s in zip(FRACTIONS, ratios, speedups):
                if f < 1 and len(baselines) == 1:
                    ax.annotate(f"{f:.0%}: {s:.2f}x", (r, s), textcoords="offset points",
                                xytext=(-6, 6) if above else (6, -12),
                                ha="right" if above else "left", fontsize=8,
                                color=line.get_color())
    ticks = [1, 2, 4, 8, 16]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("FLOP ratio (dense / kept)")
    ax.set_ylabel("measured speedup over keep 100%")
    ax.set_title("MnistNet inference, batch 64, 2 threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    out = pathlib.Path("docs/speedup.png")
    out.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}: FLOP ratios {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
