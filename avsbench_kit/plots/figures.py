"""The figures: matplotlib (Agg backend, imported here only), one function per kind of plot.

Each function takes the plain rows of :mod:`avsbench_kit.plots.data` and returns a Figure whose
title names what is shown and under which protocol (name and version), with axis labels (units:
metrics in %, as the leaderboard prints them) and a legend where there is more than one series.
"""

from __future__ import annotations

import math
from typing import Any

from avsbench_kit.plots.data import Bar, Curves, GalleryItem, JFprPoint, Pair

PERCENT = 100.0
_RAW = {"S"}  # metrics shown as fractions (Ref-AVS S), like the tables


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed; safe in CI and over SSH)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "font.size": 10, "axes.titlesize": 11,
                         "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "avskit",
                         "svg.fonttype": "none",
                         "text.parse_math": False})  # a "$" in a record's text is text, not TeX
    return plt


def _scale(metric: str) -> tuple[float, str]:
    return (1.0, "") if metric in _RAW else (PERCENT, " (%)")


def metric_bars(bars: list[Bar], title: str):
    """Grouped bars: one group per column (split + metric), one bar per method/config, seed error
    bars (± sample std over seeds; none for a single run); ``n`` is written on each bar."""
    plt = pyplot()
    columns = list(dict.fromkeys(b.column for b in bars))
    labels = list(dict.fromkeys(b.label for b in bars))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 1.1 * len(columns) * max(1, len(labels)) ** 0.6), 4.2))
    width = 0.8 / max(1, len(labels))
    cmap = plt.get_cmap("tab10")
    top = 0.0
    for j, label in enumerate(labels):
        xs, ys, errs = [], [], []
        for i, col in enumerate(columns):
            bar = next((b for b in bars if b.label == label and b.column == col), None)
            if bar is None:
                continue
            factor, _ = _scale(col.rsplit(" ", 1)[-1])
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(bar.mean * factor)
            errs.append((bar.std or 0.0) * factor)
            top = max(top, ys[-1] + errs[-1])
            ax.annotate(f"n={bar.n}", (xs[-1], ys[-1] + errs[-1]), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
        ax.bar(xs, ys, width=width * 0.95, yerr=errs, capsize=3, label=label, color=cmap(j % 10))
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns)
    units = {_scale(c.rsplit(" ", 1)[-1])[1] for c in columns}
    ax.set_ylabel("score" + (" (%)" if units == {" (%)"} else ""))
    ax.set_ylim(0, max(1.0, top * 1.15))
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="mean ± std over seeds")
    fig.tight_layout()
    return fig


def reproduced_vs_reported(pairs: list[Pair], title: str):
    """Scatter: x = reported (the paper's own code), y = reproduced (a toolkit protocol), with the
    y = x line. Marker = metric, colour = the reported row; the legend title names the reproduced rows."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 5.2), layout="constrained")
    cmap = plt.get_cmap("tab10")
    metrics = list(dict.fromkeys(p.metric for p in pairs))
    reported = list(dict.fromkeys(p.reported_label for p in pairs))
    markers = "os^Dv<>P*X"
    lo, hi = math.inf, -math.inf
    for p in pairs:
        factor, _ = _scale(p.metric)
        x, y = p.reported * factor, p.reproduced * factor
        lo, hi = min(lo, x, y), max(hi, x, y)
        ax.errorbar([x], [y], yerr=[(p.reproduced_std or 0.0) * factor], capsize=3, ms=7,
                    fmt=markers[metrics.index(p.metric) % len(markers)],
                    color=cmap(reported.index(p.reported_label) % 10))
    handles = []
    if pairs:
        pad = max(1.0, (hi - lo) * 0.1)
        handles += ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls="--", label="y = x")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], ls="", marker=markers[i % len(markers)], color="black", label=f"{m} ({p_split})")
                for i, (m, p_split) in enumerate((m, next(p.split for p in pairs if p.metric == m)) for m in metrics)]
    handles += [Line2D([], [], ls="", marker="s", color=cmap(i % 10), label=f"reported: {r}")
                for i, r in enumerate(reported)]
    units = {_scale(p.metric)[1] for p in pairs}
    unit = " (%)" if units == {" (%)"} else ""
    ax.set_xlabel(f"reported{unit}, the paper's own evaluation code")
    ax.set_ylabel(f"reproduced{unit}, mean ± std over seeds")
    ax.set_title(title)
    mine = "; ".join(dict.fromkeys(f"{p.reproduced_label} [{p.protocol}]" for p in pairs))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              title=_wrap(f"reproduced: {mine}", 48), title_fontsize=8)
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def j_vs_fpr(points: list[JFprPoint], title: str):
    """Probe results: J on the positive pairs (y) against the false-positive rate (x, predicted
    foreground on inputs whose correct answer is empty); up and left is better."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    cmap = plt.get_cmap("tab10")
    for i, p in enumerate(points):
        ax.scatter([p.fpr * PERCENT], [p.j * PERCENT], s=50, color=cmap(i % 10), label=f"{p.probe} ({p.where})")
    ax.set_xlabel("false-positive rate (% of pixels predicted foreground where GT is empty)")
    ax.set_ylabel("J on positive pairs (%)")
    ax.set_xlim(0, max([1.0] + [p.fpr * PERCENT * 1.15 for p in points]))
    ax.set_ylim(0, 100)
    ax.set_title(title)
    if points:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def per_category(table, title: str):
    """Horizontal bars: mean per-sample J per category (one panel per split), sample counts noted."""
    plt = pyplot()
    splits = list(dict.fromkeys(table["split"].tolist())) or [""]
    height = max(2.5, 0.35 * max((int((table["split"] == s).sum()) for s in splits), default=1) + 1.4)
    fig, axes = plt.subplots(1, len(splits), figsize=(6.5 * len(splits), height), squeeze=False, layout="constrained")
    for ax, split in zip(axes[0], splits):
        part = table[table["split"] == split].sort_values("J")
        ys = range(len(part))
        ax.barh(list(ys), (part["J"] * PERCENT).tolist(), color="#3b7dd8")
        ax.set_yticks(list(ys))
        ax.set_yticklabels([f"{c} (n={n})" for c, n in zip(part["category"], part["samples"])])
        ax.set_xlim(0, 100)
        ax.set_xlabel("J: mean per-sample IoU (%)")
        ax.set_title(f"{split}" if len(splits) > 1 else "")
    fig.suptitle(title, fontsize=10)
    return fig


def training_curves(c: Curves, title: str):
    """Train loss per epoch (left axis) and the validation metric that selected the checkpoint
    (right axis, %); loss components, when recorded, as thinner lines on the loss axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    lines = []
    if c.train_loss:
        lines += ax.plot(c.epochs, c.train_loss, marker="o", color="#c0392b", label="train loss (epoch mean)")
    for name, values in c.components.items():
        lines += ax.plot(list(range(1, len(values) + 1)), values, lw=1, ls="--", label=f"loss: {name}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    if c.val_values:
        ax2 = ax.twinx()
        lines += ax2.plot(c.val_epochs, [v * PERCENT for v in c.val_values], marker="s", color="#2471a3",
                          label=c.val_label)
        ax2.set_ylabel("validation score (%)")
        ax2.grid(False)
    if c.epochs or c.val_epochs:
        last = max(c.epochs + c.val_epochs)
        ax.set_xticks(list(range(1, last + 1, max(1, last // 10))))
    ax.set_title(title)
    if lines:
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _spotlight(image, mask, color: tuple[int, int, int]):
    """``image`` dimmed outside ``mask`` (resized to it, nearest) with the mask outlined in ``color``:
    the object keeps its own colours, so a tint cannot be mistaken for the object."""
    import numpy as np
    from PIL import Image

    h, w = image.shape[:2]
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    out = image.astype(np.float32) * np.where(mask, 1.0, 0.3)[..., None]
    inner = mask.copy()
    for axis in (0, 1):
        for shift in (1, -1, 2, -2):
            inner &= np.roll(mask, shift, axis=axis)
    out[mask & ~inner] = color
    return out.clip(0, 255).astype(np.uint8)


def gallery(items: list[GalleryItem], title: str):
    """Rows of (frame, GT, prediction): the mask is lit and outlined, the rest dimmed;
    prediction = logits > 0 (sigmoid > 0.5)."""
    plt = pyplot()
    fig, axes = plt.subplots(max(1, len(items)), 3, figsize=(7.5, 0.4 + 2.5 * max(1, len(items))), squeeze=False,
                             layout="constrained")
    for row, item in zip(axes, items):
        pred = item.pred > 0
        score = f", J {item.j * PERCENT:.1f}%" if item.j is not None else ""
        panels = ((item.image, f"{item.key} frame {item.frame}"),
                  (_spotlight(item.image, item.gt, (0, 230, 255)), f"GT ({item.category or 'no category'})"),
                  (_spotlight(item.image, pred, (255, 0, 200)), f"prediction{score}"))
        for ax, (img, label) in zip(row, panels):
            ax.imshow(img)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    if not items:
        axes[0][0].text(0.5, 0.5, "no saved predictions", ha="center")
    fig.suptitle(title, fontsize=10)
    return fig


def save(fig: Any, stem: str) -> tuple[str, str]:
    """Write ``stem.png`` and ``stem.svg`` atomically; return their paths."""
    from pathlib import Path

    from avsbench_kit.atomic import atomic_path

    plt = pyplot()
    paths = []
    for ext in ("png", "svg"):
        target = Path(f"{stem}.{ext}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(str(target))
    plt.close(fig)
    return paths[0], paths[1]
