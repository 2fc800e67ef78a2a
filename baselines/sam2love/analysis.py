"""Seed-averaged SAM2-LOVE results on synth-refavs: splits, Mix, null S and J by expression kind;
(``--prompts RUN``) whether a trained run's ``[seg]`` prompt carries the expression at all; and
(``--categories RUN``, runs trained with ``loss.category_weight``) by expression kind, how often the
fused token names the target's category, with the clip's own audio and with another clip's; and
(``--paired``) the per-kind J gain of one variant over another on the same expressions, and whether
onset / sound expressions gain more than appearance ones (clip bootstrap).

    python -m baselines.sam2love.analysis [--home DIR] [--baseline sam2love] [--dataset synth-refavs]
    python -m baselines.sam2love.analysis --prompts RUN_ID [--split test_s] [--home DIR]
    python -m baselines.sam2love.analysis --categories RUN_ID [--split test_s] [--by-form] [--home DIR]
    python -m baselines.sam2love.analysis --paired A1,A2,A3 B1,B2,B3 [--split test_s] [--by-expression] [--by-look] [--by-form] [--home DIR]

Only runs scored on the dataset prepared in the home are read (:func:`scored_on`); a trained run
is scored on another preparation (e.g. a larger test split) by ``avskit run ... mode=eval from=RUN``.
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


def label_order(label: str) -> tuple[int, str]:
    """Sort key of an expression label (``first``, ``sound/look shared/longest``, ``other``): by the
    kind before the first slash in :data:`KINDS` order, anything else after; then by the label."""
    kind = label.split("/")[0]
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), label)


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


def scored_on(record: Any, manifest: Any) -> bool:
    """Whether a run was scored on this very prepared dataset. Per-sample keys only name this
    manifest's expressions then: a home can hold runs scored elsewhere (``from=`` sources copied
    in), and SynthAVS sample keys repeat across generator seeds with other texts."""
    return record.dataset == manifest.dataset and record.dataset_fingerprint == manifest.fingerprint


def run_summary(record: Any, samples: Any, kinds: dict[str, str], protocol: str) -> dict[str, float]:
    """One run's numbers: split metrics, Mix, null S, and mean per-sample J by kind (test_s+test_u,
    and each split alone)."""
    m = record.metrics
    out: dict[str, float] = {}
    for split in ("test_s", "test_u", "test_mix"):
        for metric in ("J", "F", "J&F"):
            out[f"{split}/{metric}"] = float(m.get(split, {}).get(protocol, {}).get(metric, float("nan")))
    out["test_n/S"] = float(m.get("test_n", {}).get(protocol, {}).get("S", float("nan")))
    for prefix, splits in (("kind", ["test_s", "test_u"]), ("test_s/kind", ["test_s"]), ("test_u/kind", ["test_u"])):
        scored = samples[samples["split"].isin(splits)]
        for kind in KINDS:
            rows = scored[scored["sample_key"].map(kinds).eq(kind)]
            out[f"{prefix}/{kind}"] = float(rows["J"].mean()) if len(rows) else float("nan")
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


def category_accuracy(model: Any, batches: Any, kinds: dict[str, str | None],
                      clips: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per expression kind (non-null rows): ``{kind: {"n", "own", "other_audio"}}`` — how often the
    category head's top bucket is the target's, with the clip's own audio and with the audio of
    another clip in the batch (the next row whose clip differs; rows with none are not scored
    there). Onset expressions ("heard first") name no look or sound, so only a fusion that reads the
    audio beats the majority class on them; another clip's audio shows how much the audio carries."""
    import torch

    from avsbench_kit.errors import DataError
    from baselines.sam2love.model import category_bucket

    if getattr(model, "category_head", None) is None:
        raise DataError("this run has no category head (it was trained with loss.category_weight=0)",
                        hint="train with loss.category_weight=1 to use --categories")
    audio = model.names["audio"]
    counts: dict[str, dict[str, float]] = {}
    model.eval()
    with torch.no_grad():
        for batch in batches:
            keys, n = batch["key"], len(batch["key"])
            target = [category_bucket(c, model.category_buckets) for c in batch["category"]]
            partner = [next((j % n for j in range(i + 1, i + n) if clips[keys[j % n]] != clips[keys[i]]), None)
                       for i in range(n)]
            variants = {"own": batch}
            if audio:
                idx = torch.tensor([i if p is None else p for i, p in enumerate(partner)])
                variants["other_audio"] = {**batch, "features": {
                    k: (v[idx] if k == audio else v) for k, v in batch["features"].items()}}
            for name, b in variants.items():
                pred = model.category_head(model.fuse(b)[0].mean(1)).argmax(1).tolist()
                for i, (null, p, t) in enumerate(zip(batch["is_null"].tolist(), pred, target)):
                    if null or (name == "other_audio" and partner[i] is None):
                        continue
                    cell = counts.setdefault(kinds.get(keys[i]) or "other", {})
                    cell[name] = cell.get(name, 0.0) + float(p == t)
                    cell[f"{name}_n"] = cell.get(f"{name}_n", 0.0) + 1
    return {k: {"n": c["own_n"], **{m: c[m] / c[f"{m}_n"] for m in ("own", "other_audio") if m in c}}
            for k, c in counts.items()}


def print_category_accuracy(run_id: str, split: str, home: str | None, by_form: bool = False) -> None:
    from avsbench_kit.data.synth_scenes import expression_kind
    from avsbench_kit.features.reader import feature_batches
    from avsbench_kit.probes.engine import load_run

    run = load_run(run_id, home)
    rows = run.manifest.rows(split)
    kinds = {r["sample_key"]: expression_kind(r["text"]) for r in rows}
    if by_form:
        kinds = form_labels(rows, kinds)
    clips = {r["sample_key"]: r["clip"] for r in rows}
    batches = feature_batches(run.manifest, split, run.requests, batch_size=16, shuffle=True, seed=0,
                              home=home, with_masks=False)  # shuffled: batch-mates are mostly other clips
    acc = category_accuracy(run.model, batches, kinds, clips)
    print(f"run {run.record.run_id} ({' '.join(run.record.overrides)}) on {split}: category accuracy by kind")
    for label in sorted(acc, key=label_order):
        c = acc[label]
        other = f", another clip's audio {c['other_audio']:.3f}" if "other_audio" in c else ""
        print(f"  {label:<16} n={int(c['n']):>3}  own audio {c['own']:.3f}{other}")


#: kind contrasts of the paired gains: does audio help these kinds more than appearance
#: (which the look named in the text already picks out)?
CONTRASTS = {"onset - appearance": (("first", "last"), ("appearance",)),
             "sound - appearance": (("sound",), ("appearance",))}


def paired_kind_gain(a: list[Any], b: list[Any], kinds: dict[str, str | None], split: str = "test_s",
                     resamples: int | None = None, seed: int = 0,
                     clips: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Per expression label: mean J of variant A minus variant B on the same expressions of
    ``split`` (each expression's J first averaged over the runs of each variant), and the
    :data:`CONTRASTS` between kinds, each with a 95 % percentile bootstrap interval and, when A
    and B have as many runs (paired in order: seed by seed), the gain of each pair.

    One resample serves every label and contrast (:func:`avsbench_kit.probes.stats.bootstrap_weights`);
    with ``clips`` (sample key -> clip) whole clips are drawn, since a clip's expressions share
    its scene. The interval is over the test expressions only; the per-seed gains show the
    training-seed spread it leaves out. A label is a kind (``first``) or a kind with a qualifier
    after a slash (``first/look shared``); contrasts read the kind part.

    ``a`` / ``b``: per-sample tables (``sample_key``, ``split``, ``J``) of each variant's runs."""
    import numpy as np

    from avsbench_kit.probes.stats import BOOTSTRAP, LEVEL, bootstrap_weights

    per_a, per_b = ([t[t["split"] == split].set_index("sample_key")["J"] for t in tables] for tables in (a, b))
    ja, jb = sum(per_a) / len(per_a), sum(per_b) / len(per_b)
    keys = [k for k in ja.index if kinds.get(k)]
    gain = ja[keys].to_numpy(np.float64) - jb.reindex(keys).to_numpy(np.float64)
    keep = np.isfinite(gain)
    keys, gain = [k for k, ok in zip(keys, keep) if ok], gain[keep]
    label = np.array([kinds[k] for k in keys])
    kind = np.array([str(v).split("/")[0] for v in label])
    per_seed = [pa.reindex(keys).to_numpy(np.float64) - pb.reindex(keys).to_numpy(np.float64)
                for pa, pb in zip(per_a, per_b)] if len(per_a) == len(per_b) else []
    weights = bootstrap_weights(len(keys), seed, resamples or BOOTSTRAP,
                                [clips[k] for k in keys] if clips is not None else None)

    def mean_of(m: Any) -> tuple[float, Any, list[float]]:
        w = weights[:, m]
        with np.errstate(invalid="ignore"):  # a resample without this label: NaN, left out below
            return float(gain[m].mean()), (w @ gain[m]) / w.sum(axis=1), [float(np.nanmean(g[m])) for g in per_seed]

    names = sorted(set(label.tolist()), key=label_order)
    groups = {**{v: (label == v, None) for v in names},
              **{c: (np.isin(kind, plus), np.isin(kind, minus)) for c, (plus, minus) in CONTRASTS.items()}}
    alpha = (1.0 - LEVEL) / 2.0
    out = {}
    for name, (plus, minus) in groups.items():
        if not plus.any() or (minus is not None and not minus.any()):
            continue
        value, boot, seeds = mean_of(plus)
        if minus is not None:
            value_minus, boot_minus, seeds_minus = mean_of(minus)
            value, boot, seeds = value - value_minus, boot - boot_minus, [x - y for x, y in zip(seeds, seeds_minus)]
        low, high = np.nanquantile(boot, [alpha, 1.0 - alpha])
        out[name] = {"n": float(plus.sum()), "gain": value, "low": float(low), "high": float(high), "per_seed": seeds}
    return out


def look_labels(manifest: Any, split: str, kinds: dict[str, str | None]) -> dict[str, str | None]:
    """``kind/look shared`` when the target looks like another object of its clip (SynthAVS
    look-alikes: only the audio can tell them apart, and with mono audio only by when each one
    sounds), else ``kind/look unique`` (the category the text or the audio names picks it out)."""
    from avsbench_kit.data.synth_world import BY_NAME
    from avsbench_kit.errors import DataError
    from avsbench_kit.probes.labels import SCENES_FILE, synth_scenes

    scenes = synth_scenes(manifest)
    if scenes is None:
        raise DataError(f"{manifest.dataset} has no {SCENES_FILE}: the looks of its objects are unknown",
                        hint="--by-look needs a SynthAVS dataset")
    out: dict[str, str | None] = {}
    for r in manifest.rows(split):
        if not kinds.get(r["sample_key"]):
            continue
        objects = scenes[r["clip"]]["objects"]
        look = BY_NAME[next(o["class"] for o in objects if o["fid"] == r["fid"])].appearance
        shared = sum(BY_NAME[o["class"]].appearance == look for o in objects) > 1
        out[r["sample_key"]] = f"{kinds[r['sample_key']]}/look {'shared' if shared else 'unique'}"
    return out


def form_labels(rows: list[dict[str, Any]], kinds: dict[str, str | None]) -> dict[str, str | None]:
    """Sound expressions qualified by how they refer (``sound/longest``, ``sound/named``, ...:
    :func:`avsbench_kit.data.synth_scenes.sound_form`); other labels unchanged."""
    from avsbench_kit.data.synth_scenes import sound_form

    out = dict(kinds)
    for r in rows:
        label = kinds.get(r["sample_key"])
        if label and label.split("/")[0] == "sound":
            out[r["sample_key"]] = f"{label}/{sound_form(r['text'])}"
    return out


def print_paired(runs_a: str, runs_b: str, split: str, home: str | None, by_clip: bool = True,
                 by_look: bool = False, by_form: bool = False) -> None:
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.data.synth_scenes import expression_kind
    from avsbench_kit.runs.store import RunStore

    store = RunStore(home)
    groups = [sorted((store.load(store.resolve(i)) for i in r.split(",") if i), key=lambda rec: rec.seed)
              for r in (runs_a, runs_b)]
    records = groups[0] + groups[1]
    manifest = load_manifest(records[0].dataset, home)
    elsewhere = [r.run_id for r in records if not scored_on(r, manifest)]
    if elsewhere:
        from avsbench_kit.errors import ConfigError

        raise ConfigError(f"--paired: run(s) {', '.join(elsewhere)} were not scored on the {manifest.dataset} "
                          f"prepared in this home (fingerprint {manifest.fingerprint[:12]})",
                          hint="compare runs scored on one prepared dataset (mode=eval from=RUN re-scores one here)")
    rows = manifest.rows(split)
    kinds = {r["sample_key"]: expression_kind(r["text"]) for r in rows}
    if by_look:
        kinds = look_labels(manifest, split, kinds)
    if by_form:
        kinds = form_labels(rows, kinds)
    clips = {r["sample_key"]: r["clip"] for r in rows} if by_clip else None
    seeds = [[r.seed for r in g] for g in groups]
    paired = seeds[0] == seeds[1]  # per-seed gains only for runs of the same seeds
    gains = paired_kind_gain(*([store.read_per_sample(r.run_id) for r in g] for g in groups), kinds, split, clips=clips)
    print(f"J of A ({len(groups[0])} runs) minus B ({len(groups[1])} runs) on {split}, ×100, "
          f"95 % bootstrap interval over {'clips' if by_clip else 'expressions'}"
          + (f"; per seed {', '.join(map(str, seeds[0]))}:" if paired else " (seeds differ: no per-seed gains):"))
    for name, g in gains.items():
        per = "  per seed " + " ".join(f"{100 * v:+.1f}" for v in g["per_seed"]) if paired else ""
        print(f"  {name:<24} n={int(g['n']):>3}  {100 * g['gain']:+.1f}  [{100 * g['low']:+.1f}, {100 * g['high']:+.1f}]{per}")


def main(argv: list[str] | None = None) -> None:
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.data.synth_scenes import expression_kind
    from avsbench_kit.runs.store import RunStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=None)
    ap.add_argument("--baseline", default="sam2love")
    ap.add_argument("--dataset", default="synth-refavs")
    ap.add_argument("--prompts", metavar="RUN", help="diagnose one run's [seg] prompt instead")
    ap.add_argument("--categories", metavar="RUN", help="category-head accuracy by expression kind instead")
    ap.add_argument("--paired", nargs=2, metavar=("RUNS_A", "RUNS_B"),
                    help="per-kind J gain of A over B, comma-separated run ids (seeds) each, instead")
    ap.add_argument("--by-expression", action="store_true",
                    help="--paired: resample expressions one by one (as in session 8) instead of whole clips")
    ap.add_argument("--by-look", action="store_true",
                    help="--paired: split each kind by whether the target looks like another object of its clip")
    ap.add_argument("--by-form", action="store_true",
                    help="--paired / --categories: split sound expressions by how they refer (named, sounding, longest, ...)")
    ap.add_argument("--split", default="test_s", help="split for --prompts / --categories / --paired")
    args = ap.parse_args(argv)
    if args.prompts:
        print_prompt_diagnostics(args.prompts, args.split, args.home)
        return
    if args.categories:
        print_category_accuracy(args.categories, args.split, args.home, by_form=args.by_form)
        return
    if args.paired:
        print_paired(*args.paired, args.split, args.home, by_clip=not args.by_expression, by_look=args.by_look,
                     by_form=args.by_form)
        return
    store = RunStore(args.home)
    manifest = load_manifest(args.dataset, args.home)
    test_rows = {split: manifest.rows(split) for split in ("test_s", "test_u")}
    kinds = {r["sample_key"]: expression_kind(r["text"]) for rows in test_rows.values() for r in rows}
    groups: dict[tuple[str, ...], list[Any]] = {}
    for rec in store.records(lambda r: r.baseline == args.baseline and scored_on(r, manifest)
                             and r.status == "complete" and r.mode != "train"):  # train-only: no scores
        groups.setdefault(variant_key(rec), []).append(rec)
    protocols = ("refavs-v1", "refavs-clip-v1")
    summary = {}
    for rec in (r for recs in groups.values() for r in recs):
        samples = store.read_per_sample(rec.run_id)  # once per run, for every table below
        for protocol in protocols:
            summary[rec.run_id, protocol] = run_summary(rec, samples, kinds, protocol)
    for protocol in protocols:
        print(f"\n## {args.baseline} on {args.dataset} — {protocol} (mean ± std over seeds, %)")
        cols = ["test_s/J&F", "test_u/J&F", "test_mix/J", "test_mix/F", "test_mix/J&F", "test_n/S"] + \
               [f"kind/{k}" for k in KINDS]
        print("| variant | seeds | " + " | ".join(c.replace("kind/", "J ") for c in cols) + " |")
        print("|---" * (len(cols) + 2) + "|")
        for key, recs in sorted(groups.items()):
            rows = [summary[r.run_id, protocol] for r in recs]
            seeds = ",".join(str(r.seed) for r in sorted(recs, key=lambda r: r.seed))
            cells = []
            for c in cols:
                vals = [row[c] for row in rows]
                cells.append(mean_std([v / 100 for v in vals]) if c == "test_n/S" else mean_std(vals))
            print(f"| {' '.join(key) or '(cpu-small)'} | {seeds} | " + " | ".join(cells) + " |")
    print("\n## J by kind on each split (refavs-v1; mean ± std over seeds, %)")
    cols = [f"{split}/kind/{k}" for split in ("test_s", "test_u") for k in KINDS]
    print("| variant | " + " | ".join(c.replace("/kind/", " ") for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for key, recs in sorted(groups.items()):
        rows = [summary[r.run_id, "refavs-v1"] for r in recs]
        print(f"| {' '.join(key) or '(cpu-small)'} | " + " | ".join(mean_std([row[c] for row in rows]) for c in cols) + " |")
    for split, rows in test_rows.items():
        split_kinds = [kinds[r["sample_key"]] for r in rows]
        print(f"\nexpressions per kind in {split}: { {k: split_kinds.count(k) for k in KINDS} }")


if __name__ == "__main__":
    from avsbench_kit.errors import run_script

    raise SystemExit(run_script(main))
