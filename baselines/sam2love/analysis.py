"""Seed-averaged SAM2-LOVE results on synth-refavs: splits, Mix, null S and J by expression kind.

    python -m baselines.sam2love.analysis [--home DIR] [--baseline sam2love] [--dataset synth-refavs]

Complete runs are grouped by their mode and command-line overrides minus ``seed=``; each group prints
mean ± sample std over its seeds. Mix (S+U) is the run's own ``test_mix`` score (test_s and
test_u scored together). The expression kind is read back from the SynthAVS template
(:func:`avsbench_kit.data.synth_scenes.expression_kind`).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

KINDS = ("appearance", "sound", "first", "last")


def mean_std(values: list[float]) -> str:
    """``mean ± std`` in percent (sample std; ``n=1`` prints no std)."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{100 * m:.2f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{100 * m:.2f} ± {100 * sd:.2f}"


def run_summary(record: Any, samples: Any, kinds: dict[str, str], protocol: str) -> dict[str, float]:
    """One run's numbers: split metrics, Mix, null S, and mean per-sample J by kind (test_s+test_u)."""
    m = record.metrics
    out: dict[str, float] = {}
    for split in ("test_s", "test_u", "test_mix"):
        for metric in ("J", "F", "J&F"):
            out[f"{split}/{metric}"] = float(m.get(split, {}).get(protocol, {}).get(metric, float("nan")))
    out["test_n/S"] = float(m.get("test_n", {}).get(protocol, {}).get("S", float("nan")))
    scored = samples[samples["split"].isin(["test_s", "test_u"])]
    for kind in KINDS:
        rows = scored[scored["sample_key"].map(kinds).eq(kind)]
        out[f"kind/{kind}"] = float(rows["J"].mean()) if len(rows) else float("nan")
    return out


def main(argv: list[str] | None = None) -> None:
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.data.synth_scenes import expression_kind
    from avsbench_kit.runs.store import RunStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=None)
    ap.add_argument("--baseline", default="sam2love")
    ap.add_argument("--dataset", default="synth-refavs")
    args = ap.parse_args(argv)
    store = RunStore(args.home)
    manifest = load_manifest(args.dataset, args.home)
    kinds = {r["sample_key"]: expression_kind(r["text"]) for s in ("test_s", "test_u")
             for r in manifest.rows(s)}
    groups: dict[tuple[str, ...], list[Any]] = {}
    for rec in store.records(lambda r: r.baseline == args.baseline and r.dataset == args.dataset
                             and r.status == "complete"):
        key = tuple(o for o in rec.overrides if not o.startswith("seed="))
        key = key if rec.mode == "train+eval" else (f"mode={rec.mode}",) + key
        groups.setdefault(key, []).append(rec)
    for protocol in ("refavs-v1", "refavs-clip-v1"):
        print(f"\n## {args.baseline} on {args.dataset} — {protocol} (mean ± std over seeds, %)")
        cols = ["test_s/J&F", "test_u/J&F", "test_mix/J", "test_mix/F", "test_mix/J&F", "test_n/S"] + \
               [f"kind/{k}" for k in KINDS]
        print("| variant | seeds | " + " | ".join(c.replace("kind/", "J ") for c in cols) + " |")
        print("|---" * (len(cols) + 2) + "|")
        for key, recs in sorted(groups.items()):
            rows = [run_summary(r, store.read_per_sample(r.run_id), kinds, protocol) for r in recs]
            seeds = ",".join(str(r.seed) for r in sorted(recs, key=lambda r: r.seed))
            cells = []
            for c in cols:
                vals = [row[c] for row in rows]
                cells.append(mean_std([v / 100 for v in vals]) if c == "test_n/S" else mean_std(vals))
            print(f"| {' '.join(key) or '(cpu-small)'} | {seeds} | " + " | ".join(cells) + " |")
    counts = {k: sum(v == k for v in kinds.values()) for k in KINDS}
    print(f"\nexpressions per kind in test_s+test_u: {counts}")


if __name__ == "__main__":
    main()
