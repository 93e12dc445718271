"""PNG plots of a benchmark run, from the results files (matplotlib, headless).

    python benchmarks/plots.py [--out DIR]    -> DIR/*.png

ops_speedup.png      per op: speed-up of each implementation over the eager baseline (log scale)
ops_memory.png       per op: peak memory of each implementation
train_tokens.png     training step tokens/s per configuration, per preset (HF baseline bars in grey)
flops_saved.png      early exit: discriminator FLOPs saved and step wall-clock saved, per configuration
quality_curves.png   fixed-set AUC (uniform, unigram) and MLM accuracy against FLOPs and wall-clock, seed bands
roofline.png         the H100 projection (labelled as such): projected time per implementation
A plot whose results file is missing is skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import OP_KEYS, OP_RESULTS, load  # noqa: E402


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: Dict[str, object], skip: Sequence[str] = ("op",)) -> str:
    return " ".join(str(row[k]) for k in OP_KEYS if k in row and k not in skip and row[k] not in ("", None))


def _speedup_key(rows: Sequence[Dict[str, object]]) -> Optional[str]:
    for key in ("speedup_vs_eager", "speedup_vs_reference", "speedup"):
        if any(key in r for r in rows):
            return key
    return next((k for r in rows for k in r if k.startswith("speedup")), None)


def _memory_key(rows: Sequence[Dict[str, object]]) -> Optional[str]:
    return next((k for k in ("peak_mib", "peak_mb", "peak_bytes") if any(k in r for r in rows)), None)


def _barh_panels(plt, panels, xlabel: str, path: Path, log: bool = False) -> Optional[Path]:
    panels = [(t, labels, values) for t, labels, values in panels if values]
    if not panels:
        return None
    height = sum(max(len(v), 1) for _, _, v in panels) * 0.28 + 1.2 * len(panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, max(height, 3)), squeeze=False)
    for ax, (title, labels, values) in zip(axes[:, 0], panels):
        ax.barh(range(len(values)), values, color="#4c72b0")
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_xscale("log")
            ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel(xlabel, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ops_plots(plt, out: Path) -> List[Path]:
    speed, memory = [], []
    for name in OP_RESULTS:
        data = load(out, name)
        if data is None:
            continue
        rows = data["rows"]
        key = _speedup_key(rows)
        if key:
            picked = [r for r in rows if isinstance(r.get(key), (int, float))]
            speed.append((f"{name}: {key}", [_label(r) for r in picked], [float(r[key]) for r in picked]))
        mkey = _memory_key(rows)
        if mkey:
            picked = [r for r in rows if isinstance(r.get(mkey), (int, float))]
            memory.append((f"{name}: {mkey}", [_label(r) for r in picked], [float(r[mkey]) for r in picked]))
    paths = [_barh_panels(plt, speed, "speed-up (x, log scale)", out / "ops_speedup.png", log=True),
             _barh_panels(plt, memory, "peak memory", out / "ops_memory.png")]
    return [p for p in paths if p]


def train_plots(plt, out: Path) -> List[Path]:
    data = load(out, "train_step")
    if data is None:
        return []
    rows = data["rows"]
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    fig, axes = plt.subplots(1, len(presets), figsize=(5 * len(presets), 4), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        sub = [r for r in rows if r["preset"] == preset]
        colors = ["#999999" if r["family"] == "hf" else "#4c72b0" for r in sub]
        ax.bar(range(len(sub)), [float(r["tokens_per_s"]) for r in sub], color=colors)
        ax.set_xticks(range(len(sub)), [r["config"] for r in sub], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{preset}: {sub[0]['batch']}x{sub[0]['seq_len']} training step", fontsize=9)
    fig.tight_layout()
    paths = [out / "train_tokens.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    exits = [r for r in rows if r.get("early_exit")]
    if exits:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{r['preset']} {r['early_exit']}" for r in exits]
        x = range(len(exits))
        ax.bar([i - 0.2 for i in x], [100 * float(r["disc_flops_saved"]) for r in exits], 0.4,
               label="discriminator FLOPs saved")
        ax.bar([i + 0.2 for i in x], [100 * float(r.get("wall_saved_vs_ours", 0.0)) for r in exits], 0.4,
               label="step wall-clock saved")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("% saved vs ours without early exit")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "flops_saved.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


QUALITY_PANELS = (("auc_uniform", "fixed-set AUC, uniform corruption (easy)"),
                  ("auc_unigram", "fixed-set AUC, unigram corruption (hard)"),
                  ("mlm_accuracy", "held-out MLM accuracy (network generators)"))


def quality_plots(plt, out: Path) -> List[Path]:
    """Each fixed-set metric against FLOPs spent and against training wall-clock: the seed mean per
    configuration with a band of +-1 seed std."""
    data = load(out, "quality_curves")
    if data is None:
        return []
    rows = data["rows"]
    fig, axes = plt.subplots(2, len(QUALITY_PANELS), figsize=(5 * len(QUALITY_PANELS), 8), squeeze=False)
    for config in dict.fromkeys(r["config"] for r in rows):
        sub = [r for r in rows if r["config"] == config]
        seeds = sorted({r["seed"] for r in sub})
        by_seed = [[r for r in sub if r["seed"] == s] for s in seeds]
        points = min(len(c) for c in by_seed)
        for col, (metric, _) in enumerate(QUALITY_PANELS):
            if not all(metric in c[i] and c[i][metric] not in ("", None) for c in by_seed for i in range(points)):
                continue
            values = [[float(c[i][metric]) for c in by_seed] for i in range(points)]
            mean = [sum(v) / len(v) for v in values]
            std = [(sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1)) ** 0.5 for v, m in zip(values, mean)]
            for row, key in enumerate(("flops", "seconds")):
                x = [sum(float(c[i][key]) for c in by_seed) / len(by_seed) for i in range(points)]
                ax = axes[row, col]
                line, = ax.plot(x, mean, "o-", ms=3, label=config)
                ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=line.get_color(), alpha=0.2)
    for col, (_, title) in enumerate(QUALITY_PANELS):
        for row, xlabel in enumerate(("training FLOPs spent", "training wall-clock (s)")):
            axes[row, col].set_title(title, fontsize=9)
            axes[row, col].set_xlabel(xlabel)
            if axes[row, col].get_legend_handles_labels()[0]:
                axes[row, col].legend(fontsize=7)
    fig.tight_layout()
    path = out / "quality_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def roofline_plot(plt, out: Path) -> List[Path]:
    data = load(out, "roofline")
    if data is None:
        return []
    rows = data["rows"]
    panels = []
    for key in dict.fromkeys((r["op"], r["case"]) for r in rows):
        sub = [r for r in rows if (r["op"], r["case"]) == key]
        panels.append((f"{key[0]} {key[1]}", [r["impl"] for r in sub], [float(r["projected_us"]) for r in sub]))
    path = _barh_panels(plt, panels, "projected us on an H100 (PROJECTION, not measured)", out / "roofline.png")
    return [path] if path else []


def write(out: Path) -> List[Path]:
    plt = _plt()
    out = Path(out)
    return ops_plots(plt, out) + train_plots(plt, out) + quality_plots(plt, out) + roofline_plot(plt, out)


def main(argv: Optional[Sequence[str]] = None) -> List[Path]:
    from common import RESULTS_DIR

    parser = argparse.ArgumentParser(description="PNG plots of the benchmark results")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    paths = write(Path(args.out))
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
