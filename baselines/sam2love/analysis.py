"""Seed-averaged SAM2-LOVE results on synth-refavs: splits, Mix, null S and J by expression kind;
and (``--prompts RUN``) whether a trained run's ``[seg]`` prompt carries the expression at all.

    python -m baselines.sam2love.analysis [--home DIR] [--baseline sam2love] [--dataset synth-refavs]
    python -m baselines.sam2love.analysis --prompts RUN_ID [--split test_s] [--home DIR]

Complete runs are grouped by :func:`variant_key` (overrides minus ``seed=``, preset, mode, warm start); each group prints
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


def variant_key(record: Any) -> tuple[str, ...]:
    """What makes runs one variant: their overrides minus ``seed=``, plus the preset when it is not
    ``cpu-small``, the mode when it is not ``train+eval`` and the preset of a warm start's source
    (so stage 1, stage 2 and a one-stage run with the same overrides never share a row)."""
    key = tuple(o for o in record.overrides if not o.startswith("seed="))
    if record.init_from:
        key = (f"init_from={record.init_from.get('config_name') or 'run'}",) + key
    if record.config_name and record.config_name != "cpu-small":
        key = (f"config={record.config_name}",) + key
    return key if record.mode == "train+eval" else (f"mode={record.mode}",) + key


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


def prompt_diagnostics(model: Any, batches: Any) -> dict[str, float]:
    """How much the prompt differs between expressions, and how much frame-0 masks follow it.

    ``cos``: mean pairwise cosine of the prompts of different samples; ``spread``: mean
    ``|p - mean(p)| / |p|``; ``logit``: mean |logit| of frame 0; ``roll_text`` / ``roll_audio``:
    mean |Δ logit| when that input is rolled by one sample within each batch (the shuffled-input
    probe at its smallest); ``random_prompt`` / ``zero_prompt``: mean |Δ logit| when the prompt is
    replaced by a random vector of the same norm / by zeros. A decoder that reads the prompt moves
    by a sizeable fraction of ``logit``; one that ignores it does not move at all.
    """
    import torch

    model.eval()
    prompts: list[Any] = []
    sums = {k: 0.0 for k in ("logit", "roll_text", "roll_audio", "random_prompt", "zero_prompt")}
    n = 0
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in batches:
            frame0 = model.image_features(batch, 1)
            p = model.prompt(batch)

            def frame0_logits(prompt):
                return model.sam.propagate(frame0, {0: prompt}, multimask=model.multimask,
                                           object_score=False, pad_point=True).masks[:, 0]
            base = frame0_logits(p)
            sums["logit"] += base.abs().mean().item()
            for kind in ("text", "audio"):
                name = model.names[kind]
                if name:
                    feats = {k: (v.roll(1, 0) if k in (name, f"{name}_mask") else v)
                             for k, v in batch["features"].items()}
                    rolled = model.prompt({**batch, "features": feats})
                    sums[f"roll_{kind}"] += (frame0_logits(rolled) - base).abs().mean().item()
            noise = torch.randn(p.shape, generator=gen)
            noise = noise * p.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
            sums["random_prompt"] += (frame0_logits(noise) - base).abs().mean().item()
            sums["zero_prompt"] += (frame0_logits(torch.zeros_like(p)) - base).abs().mean().item()
            prompts.append(p.flatten(1))
            n += 1
    if not n:
        raise ValueError("prompt_diagnostics got no batches")
    flat = torch.cat(prompts)
    unit = torch.nn.functional.normalize(flat, dim=1)
    off = ~torch.eye(len(flat), dtype=torch.bool)
    out = {k: v / n for k, v in sums.items()}
    out["cos"] = float((unit @ unit.T)[off].mean()) if len(flat) > 1 else float("nan")
    out["spread"] = float(((flat - flat.mean(0)).norm(dim=1) / flat.norm(dim=1).clamp_min(1e-12)).mean())
    out["samples"] = float(len(flat))
    return out


def print_prompt_diagnostics(run_id: str, split: str, home: str | None) -> None:
    from avsbench_kit.features.reader import feature_batches
    from avsbench_kit.probes.engine import load_run

    run = load_run(run_id, home)
    d = prompt_diagnostics(run.model, feature_batches(run.manifest, split, run.requests, batch_size=8,
                                                      shuffle=False, seed=0, home=home))
    print(f"run {run.record.run_id} ({' '.join(run.record.overrides)}) on {split}, {int(d['samples'])} samples: "
          f"prompt cos {d['cos']:.4f}, spread {d['spread']:.4f}; frame-0 mean |logit| {d['logit']:.3f}, "
          f"|Δ logit| roll text {d['roll_text']:.2e}, roll audio {d['roll_audio']:.2e}, "
          f"random prompt {d['random_prompt']:.2e}, zero prompt {d['zero_prompt']:.2e}")


def main(argv: list[str] | None = None) -> None:
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.data.synth_scenes import expression_kind
    from avsbench_kit.runs.store import RunStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=None)
    ap.add_argument("--baseline", default="sam2love")
    ap.add_argument("--dataset", default="synth-refavs")
    ap.add_argument("--prompts", metavar="RUN", help="diagnose one run's [seg] prompt instead")
    ap.add_argument("--split", default="test_s", help="split for --prompts")
    args = ap.parse_args(argv)
    if args.prompts:
        print_prompt_diagnostics(args.prompts, args.split, args.home)
        return
    store = RunStore(args.home)
    manifest = load_manifest(args.dataset, args.home)
    kinds = {r["sample_key"]: expression_kind(r["text"]) for s in ("test_s", "test_u")
             for r in manifest.rows(s)}
    groups: dict[tuple[str, ...], list[Any]] = {}
    for rec in store.records(lambda r: r.baseline == args.baseline and r.dataset == args.dataset
                             and r.status == "complete" and r.mode != "train"):  # train-only: no scores
        groups.setdefault(variant_key(rec), []).append(rec)
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
    from avsbench_kit.errors import run_script

    raise SystemExit(run_script(main))
